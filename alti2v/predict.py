"""Tags for image files with a trained tagger, as JSON lines; an unreadable file is reported, not fatal.

  python -m alti2v.predict --model_dir RUN PATHS...   (files, directories, globs)

Each file goes the training road: Pillow normalisation as in the builder (EXIF, modes,
resize to the stored size, JPEG), then the input pipeline's decode and pad-to-square,
batched through tf.data. Output: {"path", "tags": [{"tag", "score"}, ...]} (+ "vector").
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf

from alti2v import imaging
from alti2v import input_pipeline


def expand_paths(patterns: Iterable[str]) -> list[str]:
  """Files as given; directories searched recursively and globs expanded, keeping images.

  Raises:
    FileNotFoundError: a pattern matches nothing.
  """
  paths = []
  for pattern in patterns:
    if os.path.isfile(pattern):
      paths.append(pattern)
      continue
    if os.path.isdir(pattern):
      found = [os.path.join(root, name) for root, _, names in os.walk(pattern)
               for name in names]
    else:
      found = glob.glob(pattern, recursive=True)
    images = sorted(p for p in found if os.path.isfile(p) and imaging.is_image_path(p))
    if not images and not found:
      raise FileNotFoundError(f"no file matches {pattern!r}")
    paths.extend(images)
  return paths


def _normalize(path: bytes, stored_size: int) -> tuple[bytes, bytes]:
  """(stored-form JPEG, "") or (b"", "reason: detail") for one file."""
  try:
    with open(os.fsdecode(path), "rb") as f:
      data = f.read()
    return imaging.decode_and_resize(data, int(stored_size)).jpeg, b""
  except imaging.Rejected as e:
    return b"", str(e).encode()
  except OSError as e:
    return b"", f"{imaging.UNREADABLE}: {e}".encode()


def image_dataset(paths: Sequence[str], image_size: int, stored_size: int,
                  batch_size: int) -> tf.data.Dataset:
  """Batches of (uint8 images, error strings, paths); an image that failed is zeros with its error."""
  def load(path):
    jpeg, error = tf.numpy_function(_normalize, [path, stored_size],
                                    [tf.string, tf.string], stateful=False)
    jpeg.set_shape([])
    error.set_shape([])
    image = tf.cond(tf.equal(error, ""),
                    lambda: input_pipeline.to_model_input(jpeg, image_size),
                    lambda: tf.zeros([image_size, image_size, 3], tf.uint8))
    return image, error, path

  # Paths as bytes: a scraped name need not be valid UTF-8.
  ds = tf.data.Dataset.from_tensor_slices(
      tf.constant([os.fsencode(p) for p in paths], tf.string))
  # Pillow releases the GIL, so parallel calls of the numpy_function overlap.
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class Progress:
  """A one-line progress bar on stderr (stdout may carry the JSON lines): done/total, images/s."""

  def __init__(self, total: int, stream=None):
    self._total = total
    self._stream = stream or sys.stderr
    self._start = time.perf_counter()

  def update(self, done: int) -> None:
    elapsed = max(1e-9, time.perf_counter() - self._start)
    width = 30
    filled = int(width * done / max(1, self._total))
    self._stream.write(f"\r[{'=' * filled}{'.' * (width - filled)}] {done}/{self._total} "
                       f"images, {done / elapsed:.1f} images/s")
    if done >= self._total:
      self._stream.write("\n")
    self._stream.flush()


class TrainedModel:
  """A trained model loaded from its model_dir, with its output names and tagger thresholds."""

  def __init__(self, model_dir: str):
    import keras  # pylint: disable=import-outside-toplevel
    from alti2v import evaluate, training  # pylint: disable=import-outside-toplevel
    info = training.read_json(os.path.join(model_dir, training.MODEL_INFO_FILE))
    if info is None:
      raise FileNotFoundError(f"{model_dir} holds no finished training run")
    self.info = info
    self.model = keras.models.load_model(os.path.join(model_dir, info["model"]))
    with open(os.path.join(model_dir, info["vocabulary_file"]), encoding="utf-8") as f:
      self.vocabulary = f.read().split("\n")[:-1]
    self.thresholds = evaluate.load_thresholds(model_dir, self.vocabulary)
    self.image_size = info["image_size"]
    self.stored_size = info.get("stored_image_size") or info["image_size"]

  def score_files(self, paths: Sequence[str], batch_size: int = 32,
                  progress: bool = False) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """(path, probabilities or None, error) per file, in order."""
    bar = Progress(len(paths)) if progress else None
    done = 0
    for images, errors, batch_paths in image_dataset(paths, self.image_size,
                                                     self.stored_size, batch_size):
      scores = np.asarray(self.model.predict_on_batch(images), np.float32)
      for path, error, row in zip(batch_paths.numpy(), errors.numpy(), scores):
        error = error.decode()
        yield os.fsdecode(path), None if error else row, error
      done += len(scores)
      if bar is not None:
        bar.update(done)


def tag_lines(tagger: TrainedModel, paths: Sequence[str], *, top_k: int = 0,
              threshold: Optional[float] = None, vector: bool = False,
              batch_size: int = 32, progress: bool = False) -> Iterator[dict]:
  """One dict per file: tags scoring at or above their threshold, best first.

  Args:
    threshold: one threshold for every tag; None = the calibrated per-tag thresholds
      (thresholds.json, written by evaluate), or 0.5 where there are none.
    top_k: keep at most k tags (0 = no cap); with threshold=0, exactly the top k.
    vector: add the whole tag-probability vector (not Illustration2Vec's feature vector,
      which is a hidden layer's activations).
  """
  if threshold is not None:
    thresholds = np.full(len(tagger.vocabulary), threshold)
  elif tagger.thresholds is not None:
    thresholds = tagger.thresholds
  else:
    thresholds = np.full(len(tagger.vocabulary), 0.5)
  for path, scores, error in tagger.score_files(paths, batch_size, progress):
    if scores is None:
      yield {"path": path, "error": error}
      continue
    order = [j for j in np.argsort(-scores, kind="stable") if scores[j] >= thresholds[j]]
    if top_k:
      order = order[:top_k]
    line = {"path": path, "tags": [{"tag": tagger.vocabulary[j],
                                    "score": round(float(scores[j]), 4)} for j in order]}
    if vector:
      line["vector"] = [round(float(v), 6) for v in scores]
    yield line


def main(argv: Sequence[str]) -> None:
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  paths = expand_paths(argv[1:])
  if not paths:
    raise SystemExit("no image files given")
  tagger = TrainedModel(f.model_dir)
  threshold = None if f.threshold < 0 else f.threshold
  out = open(f.output, "w", encoding="utf-8") if f.output else sys.stdout
  try:
    for line in tag_lines(tagger, paths, top_k=f.top_k, threshold=threshold,
                          vector=f.vector, batch_size=f.batch_size,
                          progress=f.progress):
      out.write(json.dumps(line, ensure_ascii=False) + "\n")
  finally:
    if out is not sys.stdout:
      out.close()


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=ungrouped-imports
  flags.DEFINE_string("model_dir", None, "A finished training run.")
  flags.DEFINE_integer("top_k", 0, "Keep at most K tags per image (0 = no cap).")
  flags.DEFINE_float("threshold", -1.0,
                     "One threshold for every tag; -1 = calibrated per-tag thresholds "
                     "(thresholds.json from evaluate), else 0.5.")
  flags.DEFINE_bool("vector", False, "Add the tag-probability vector to each line.")
  flags.DEFINE_integer("batch_size", 32, "Images per batch.")
  flags.DEFINE_string("output", None, "Write JSON lines here instead of stdout.")
  flags.DEFINE_bool("progress", True, "Show a progress bar (images/s) on stderr.")
  flags.mark_flag_as_required("model_dir")
  app.run(main)
