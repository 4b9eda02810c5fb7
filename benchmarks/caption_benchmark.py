"""Decoding at volume: captions/s of the batched decoders beside the model's own forward pass.

  python benchmarks/caption_benchmark.py [--model_dir RUN] [--batch_size 64] [--batches 4]

With --model_dir, a trained Show-and-Tell run (task caption_ar) decodes test-like images;
without, a model with configs/caption_demo.flags' shape and random weights, which rarely
says END early, so every caption runs all 51 steps (the worst case). Printed, each at batch
--batch_size on this machine's CPU:

  ceiling   the teacher-forcing forward pass (all 51 positions of a batch in one call:
            what training computes; a decoder cannot be faster, it needs 51 dependent steps)
  greedy    Decoder.generate(beam_size=1): one LSTM-cell step per character for the batch
  beam 3    Decoder.generate(beam_size=3): every image's 3 beams in one step call
  before    greedy as it was decoded before: batched, the whole model re-run per character
  one-image the reference decoder (the whole model re-run at every step, one image at a
            time), the way beam search ran before
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from alti2v import tasks  # noqa: E402
from alti2v.tasks.caption import decode as caption_lib  # noqa: E402
from alti2v.tasks.caption import vocabulary as captions  # noqa: E402
from alti2v.training.config import TrainConfig  # noqa: E402


def _greedy_rerunning_the_model(model, images) -> np.ndarray:
  """The decoder before Decoder: batched, but the whole model re-run for every character."""
  batch, length = len(images), captions.CAPTION_LENGTH
  caption_in = np.zeros((batch, length), np.int32)
  caption_in[:, 0] = captions.START
  out = np.zeros((batch, length), np.int32)
  done = np.zeros(batch, bool)
  for t in range(length):
    chosen = np.asarray(model.predict_on_batch(
        {"image": images, "caption_in": caption_in}))[:, t].argmax(-1)
    chosen[done] = captions.PAD
    out[:, t] = chosen
    done |= chosen == captions.END
    if done.all():
      break
    if t + 1 < length:
      caption_in[:, t + 1] = chosen
  return out


def _rate(fn, images_per_call: int, repeats: int) -> float:
  fn()  # Warm-up: tracing, allocation.
  started = time.perf_counter()
  for _ in range(repeats):
    fn()
  return images_per_call * repeats / (time.perf_counter() - started)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", default=None, help="a finished caption_ar run")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--batches", type=int, default=4, help="timed batches per figure")
  parser.add_argument("--vocabulary", type=int, default=40, help="without --model_dir")
  args = parser.parse_args()
  if args.model_dir:
    model = keras.models.load_model(os.path.join(args.model_dir, "model.keras"))
  else:
    config = TrainConfig(task="caption_ar", data_dir="-", model_dir=tempfile.mkdtemp(),
                         backbone="small", weights="none", image_size=64,
                         hidden_units=256, mixed_precision="float32")
    model = tasks.get_task(config.task).build_model(config, args.vocabulary)
  size = model.input["image"].shape[1]
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (args.batch_size, size, size, 3), dtype=np.uint8)
  caption_in = np.zeros((args.batch_size, captions.CAPTION_LENGTH), np.int32)
  caption_in[:, 0] = captions.START
  decoder = caption_lib.Decoder(model)
  rows = [
      ("ceiling: forward pass, 51 positions at once",
       _rate(lambda: model.predict_on_batch({"image": images, "caption_in": caption_in}),
             args.batch_size, args.batches)),
      ("greedy, batched", _rate(lambda: decoder.generate(images, 1), args.batch_size,
                                args.batches)),
      ("beam 3, batched", _rate(lambda: decoder.generate(images, 3), args.batch_size,
                                args.batches)),
      ("greedy, batched, the whole model re-run per character (before)",
       _rate(lambda: _greedy_rerunning_the_model(model, images), args.batch_size, 1)),
      ("greedy, one image at a time (reference)",
       _rate(lambda: caption_lib.beam_search_reference(model, images[0], 1), 1, 2)),
      ("beam 3, one image at a time (reference)",
       _rate(lambda: caption_lib.beam_search_reference(model, images[0], 3), 1, 1)),
  ]
  lengths = (decoder.generate(images, 1) != captions.PAD).sum(1)
  print(f"batch {args.batch_size}, {size} px, "
        f"{'trained' if args.model_dir else 'random-weight (worst case)'} model; greedy "
        f"captions average {lengths.mean():.1f} steps")
  print("| decoding | captions/s | vs forward pass |")
  print("|---|---:|---:|")
  for name, rate in rows:
    print(f"| {name} | {rate:.1f} | {rate / rows[0][1]:.2f}× |")


if __name__ == "__main__":
  main()
