"""Katakana captions for image files with a trained captioner (greedy or beam search).

  python -m alti2v.caption --model_dir RUN [--beam_size 3] PATHS...   (files, directories, globs)

Prints `path<TAB>caption` per file (`path<TAB># error: reason` for an unreadable one). Files go
predict's road (the builder's Pillow normalisation, the input pipeline's pad-to-square).
The original captioner predicts every position at once (argmax; --beam_size has nothing to
search); the Show-and-Tell decoder (task caption_ar) is decoded step by step.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from alti2v import captions as caption_ids


def is_autoregressive(model) -> bool:
  return isinstance(model.input, dict) and "caption_in" in model.input


def _step_probabilities(model, images, caption_in, t: int) -> np.ndarray:
  out = model.predict_on_batch({"image": images, "caption_in": caption_in})
  return np.asarray(out)[:, t]


def greedy(model, images) -> np.ndarray:
  """int32 [B, CAPTION_LENGTH] ids: argmax at each position (step by step for Show and Tell)."""
  images = np.asarray(images)
  if not is_autoregressive(model):
    return np.asarray(model.predict_on_batch(images)).argmax(-1).astype(np.int32)
  batch, length = len(images), caption_ids.CAPTION_LENGTH
  caption_in = np.zeros((batch, length), np.int32)
  caption_in[:, 0] = caption_ids.START
  out = np.zeros((batch, length), np.int32)
  done = np.zeros(batch, bool)
  for t in range(length):
    chosen = _step_probabilities(model, images, caption_in, t).argmax(-1)
    chosen[done] = caption_ids.PAD
    out[:, t] = chosen
    done |= chosen == caption_ids.END
    if done.all():
      break
    if t + 1 < length:
      caption_in[:, t + 1] = chosen
  return out


def beam_search(model, image, beam_size: int) -> np.ndarray:
  """int32 [CAPTION_LENGTH] ids of the best beam (mean log-probability per character)."""
  if not is_autoregressive(model) or beam_size <= 1:
    return greedy(model, np.asarray(image)[None])[0]
  length = caption_ids.CAPTION_LENGTH
  beams = [((), 0.0)]  # (ids so far, log-probability)
  finished = []
  for t in range(length):
    caption_in = np.zeros((len(beams), length), np.int32)
    caption_in[:, 0] = caption_ids.START
    for b, (ids, _) in enumerate(beams):
      caption_in[b, 1:t + 1] = ids
    images = np.repeat(np.asarray(image)[None], len(beams), axis=0)
    logp = np.log(np.maximum(_step_probabilities(model, images, caption_in, t), 1e-12))
    candidates = []
    for b, (ids, score) in enumerate(beams):
      for token in np.argsort(-logp[b])[:beam_size]:
        candidates.append((ids + (int(token),), score + float(logp[b, token])))
    candidates.sort(key=lambda c: -c[1])
    beams = []
    for ids, score in candidates:
      if ids[-1] == caption_ids.END or len(ids) == length:
        finished.append((ids, score / len(ids)))
      else:
        beams.append((ids, score))
      if len(beams) == beam_size:
        break
    if not beams or len(finished) >= beam_size:
      break
  if not finished:
    finished = [(ids, score / len(ids)) for ids, score in beams]
  best = max(finished, key=lambda f: f[1])[0]
  return np.array(list(best) + [caption_ids.PAD] * (length - len(best)), np.int32)


def generate(model, images, beam_size: int = 1) -> np.ndarray:
  if beam_size <= 1 or not is_autoregressive(model):
    return greedy(model, images)
  return np.stack([beam_search(model, image, beam_size) for image in np.asarray(images)])


def caption_files(model_dir: str, paths: Sequence[str], beam_size: int = 1,
                  batch_size: int = 16):
  """(path, caption or None, error) per file, in order."""
  from alti2v import predict  # pylint: disable=import-outside-toplevel
  trained = predict.TrainedModel(model_dir)
  if trained.info["task"] not in ("caption", "caption_ar"):
    raise ValueError(f"{model_dir} holds a {trained.info['task']} model, not a captioner")
  for images, errors, batch_paths in predict.image_dataset(
      paths, trained.image_size, trained.stored_size, batch_size):
    ids = generate(trained.model, images.numpy(), beam_size)
    for path, error, row in zip(batch_paths.numpy(), errors.numpy(), ids):
      error = error.decode()
      yield (os.fsdecode(path),
             None if error else caption_ids.decode(row, trained.vocabulary), error)


def main(argv: Sequence[str]) -> None:
  from absl import flags  # pylint: disable=import-outside-toplevel
  from alti2v import predict  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  paths = predict.expand_paths(argv[1:])
  if not paths:
    raise SystemExit("no image files given")
  for path, text, error in caption_files(f.model_dir, paths, f.beam_size, f.batch_size):
    print(f"{path}\t{text}" if text is not None else f"{path}\t# error: {error}", flush=True)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=ungrouped-imports
  flags.DEFINE_string("model_dir", None, "A finished captioner run (task caption or caption_ar).")
  flags.DEFINE_integer("beam_size", 1, "Beam width for the Show-and-Tell decoder; 1 = greedy.")
  flags.DEFINE_integer("batch_size", 16, "Images per batch.")
  flags.mark_flag_as_required("model_dir")
  app.run(main)
