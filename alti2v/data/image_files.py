"""Image files on disk → batches of model input, the road a file takes at prediction time.

Each file goes the training road: Pillow normalisation as in the builder (EXIF, modes, resize
to the stored size, JPEG), then the input pipeline's decode and pad-to-square, batched through
tf.data; a file (or a folder) that cannot be read is reported beside its path, not fatal. Used by predict,
screen and caption (through training/run_dir.py's TrainedRun.score_files), which write one
JSON line per file with json_line. beam_jobs.tag_images takes the same road in Beam
(stored_form, then model_inputs for a batch); model_input takes an upload's bytes the same
road (serve).
"""
from __future__ import annotations

import functools
import glob
import json
import os
import re
from typing import Iterable, Sequence

import numpy as np
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


def stored_form(data: bytes, stored_size: int,
                max_pixels: int = imaging.DEFAULT_MAX_PIXELS) -> bytes:
  """A file's bytes → the JPEG its dataset would hold: the first half of the road.

  The builder's Pillow normalisation (EXIF, modes, first frame, longer side at most
  stored_size); input_pipeline.to_model_input is the second half (model_inputs for a batch).

  Args:
    max_pixels: larger images are rejected before they are decoded (decompression bombs).

  Raises:
    imaging.Rejected: the bytes are no usable image.
  """
  return imaging.decode_and_resize(data, int(stored_size), max_pixels).jpeg


@functools.lru_cache(maxsize=None)
def _batch_to_model_input(image_size: int):
  return tf.function(
      lambda jpegs: tf.map_fn(lambda j: input_pipeline.to_model_input(j, image_size), jpegs,
                              fn_output_signature=tf.uint8),
      input_signature=[tf.TensorSpec([None], tf.string)])


def model_inputs(jpegs: Sequence[bytes], image_size: int) -> np.ndarray:
  """Stored-form JPEGs (stored_form) → uint8 [N, image_size, image_size, 3], as image_dataset
  makes them (input_pipeline.to_model_input), for a caller that batches itself (Beam)."""
  return _batch_to_model_input(int(image_size))(tf.constant(list(jpegs), tf.string)).numpy()


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
    return stored_form(data, stored_size), b""
  except imaging.Rejected as e:
    return b"", str(e).encode("utf-8", "backslashreplace")
  except OSError as e:
    return b"", f"{imaging.UNREADABLE}: {e}".encode("utf-8", "backslashreplace")


def model_input(data: bytes, image_size: int, stored_size: int,
                max_pixels: int = imaging.DEFAULT_MAX_PIXELS) -> np.ndarray:
  """One image file's bytes → uint8 [image_size, image_size, 3]: the road a file on disk takes.

  Used for uploads (alti2v/serving), which arrive as bytes rather than paths.

  Args:
    data: the file's bytes.
    image_size: the model's input side.
    stored_size: the side the run's dataset stored images at (the builder's normalisation).
    max_pixels: larger images are rejected before they are decoded (decompression bombs).

  Raises:
    imaging.Rejected: the bytes are empty, not an image, truncated, corrupt or too large.
  """
  return model_inputs([stored_form(data, stored_size, max_pixels)], image_size)[0]


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


def resume_json_lines(path: str) -> set[str]:
  """The paths an earlier run already wrote to a JSON-lines output, made ready to append to.

  A run killed mid-write leaves a torn last line (no newline, or not JSON): it is cut
  off, so that the file can be appended to and its path is done again. Paths compare as
  json_line wrote them: a name that is not UTF-8 reads back as the path that opens it.

  Args:
    path: the output file; a missing or empty one gives an empty set.

  Raises:
    ValueError: a line before the last is not a JSON object with a "path" (not an output
      of this command).
  """
  if not os.path.exists(path):
    return set()
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  keep = len(data) - len(lines[-1])  # A last line without its newline is torn.
  lines = lines[:-1]
  done = set()
  for number, line in enumerate(lines, 1):
    try:
      value = json.loads(line.decode("utf-8"))
      done.add(value["path"])
    except (ValueError, KeyError, TypeError):
      if number < len(lines):
        raise ValueError(f"{path} line {number} is not a JSON line with a path: not an "
                         "output of this command?") from None
      keep -= len(line) + 1  # The last complete line is torn too.
  if keep < len(data):
    with open(path, "r+b") as f:
      f.truncate(keep)
  return done
