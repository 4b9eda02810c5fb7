"""Image files on disk → batches of model input, the road a file takes at prediction time.

Each file goes the training road: Pillow normalisation as in the builder (EXIF, modes, resize
to the stored size, JPEG), then the input pipeline's decode and pad-to-square, batched through
tf.data; a file (or a folder) that cannot be read is reported beside its path, not fatal. Used by predict,
screen and caption (through training/run_dir.py's TrainedRun.score_files), which write one
JSON line per file with json_line.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
import time
from typing import Iterable, Sequence

import tensorflow as tf

from alti2v.data import features
from alti2v.data import imaging
from alti2v.data import input_pipeline


def walk_images(directory: str) -> tuple[list[str], list[OSError]]:
  """(every image file under directory, sorted; the errors of the folders that could not be
  listed). os.walk skips such a folder silently unless asked for its error, as here."""
  errors: list[OSError] = []
  found = [os.path.join(root, name) for root, _, names in os.walk(directory,
                                                                   onerror=errors.append)
           for name in names]
  return sorted(p for p in found if imaging.is_image_path(p)), errors


def expand_paths(patterns: Iterable[str]) -> list[str]:
  """Files as given; directories searched recursively and globs expanded, keeping images.

  A folder that cannot be listed is kept as a path of its own: the road gives it an
  error (unreadable_folder), as it does an unreadable file, so that it is never
  silently left out.

  Raises:
    FileNotFoundError: a pattern matches nothing.
  """
  paths = []
  for pattern in patterns:
    if os.path.isfile(pattern):
      paths.append(pattern)
      continue
    if os.path.isdir(pattern):
      images, errors = walk_images(pattern)
      paths.extend(sorted(images + [e.filename for e in errors]))
      continue
    found = glob.glob(pattern, recursive=True)
    images = sorted(p for p in found if os.path.isfile(p) and imaging.is_image_path(p))
    if not images and not found:
      raise FileNotFoundError(f"no file matches {pattern!r}")
    paths.extend(images)
  return paths


def _folder_error(directory: str) -> str:
  """The error of a folder expand_paths could not list, as it stands now."""
  try:
    with os.scandir(directory):
      detail = "could not be listed"
  except OSError as e:
    detail = f"{type(e).__name__}: {e.strerror}"
  return f"{features.UNREADABLE_FOLDER}: {detail}; its files were not read"


def _normalize(path: bytes, stored_size: int) -> tuple[bytes, bytes]:
  """(stored-form JPEG, "") or (b"", "reason: detail") for one file."""
  if os.path.isdir(os.fsdecode(path)):
    return b"", _folder_error(os.fsdecode(path)).encode("utf-8", "backslashreplace")
  try:
    with open(os.fsdecode(path), "rb") as f:
      data = f.read()
    return imaging.decode_and_resize(data, int(stored_size)).jpeg, b""
  except imaging.Rejected as e:
    return b"", str(e).encode("utf-8", "backslashreplace")
  except OSError as e:
    return b"", f"{imaging.UNREADABLE}: {e}".encode("utf-8", "backslashreplace")


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def json_line(result: dict) -> str:
  """One file's result as a line of JSON (no newline), readable text and valid UTF-8.

  A scraped name that is not UTF-8 reaches Python surrogate-escaped (b"bad\\xff.jpg" is
  "bad\\udcff.jpg"), which no UTF-8 writer accepts. Those characters are written as JSON's
  own \\u escapes ("bad\\udcff.jpg", as ensure_ascii would), and every other character as
  itself: json.loads gives back the very name that opens the file.
  """
  text = json.dumps(result, ensure_ascii=False)
  return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
