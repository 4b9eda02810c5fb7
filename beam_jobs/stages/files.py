"""Paths through Beam's FileSystems (local or gs://): reading, checks, and the output directory.

A build owns only the files it writes: prepare_output_dir removes those (dataset_info.json
first) and keeps any other file a user put there.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Callable, Optional, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from alti2v.data import features as features_lib


def join(directory: str, name: str) -> str:
  return FileSystems.join(directory, name)


def printable(text: str) -> str:
  """text with the bytes of a file name that are not UTF-8 written as \\xNN (backslashreplace).

  Python hands over such a name surrogate-escaped (b"bad\\xff.jpg" → "bad\\udcff.jpg"), and
  every UTF-8 encoder refuses that: Beam's str coder, rejected.jsonl, TFDS' Text. For text
  meant to be read (a rejection's path and detail); the path itself still opens the file.
  """
  try:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
  except UnicodeEncodeError:  # A surrogate that no file name gives.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def relative_path(path: str, directory: str) -> str:
  """path below directory ("a/b.jpg"); the base name when path is not under it."""
  root = directory.rstrip("/") + "/"
  return path[len(root):] if path.startswith(root) else os.path.basename(path)


def mirrored_path(path: str, directory: str, other_dir: str, suffix: str = "") -> str:
  """The file at path's place below directory, in other_dir: IN/a/b.jpg → OUT/a/b.jpg<suffix>."""
  return join(other_dir, relative_path(path, directory) + suffix)


def read_bytes(path: str) -> bytes:
  with FileSystems.open(path) as f:
    return f.read()


def write_text(path: str, text: str) -> None:
  with FileSystems.create(path) as f:
    f.write(text.encode("utf-8"))


def delete_paths(paths: Sequence[str]) -> None:
  """FileSystems.delete (which matches its paths as patterns: see check_no_glob)."""
  FileSystems.delete(list(paths))


def check_filesystem(path: str) -> None:
  """Raises a ValueError that says what to install when Beam has no filesystem for path."""
  try:
    FileSystems.get_filesystem(path)
  except ValueError as e:
    scheme = path.split("://", 1)[0] if "://" in path else "local"
    hint = (" Install the gcp extra: pip install -e '.[gcp]' (apache-beam[gcp])."
            if scheme == "gs" else "")
    raise ValueError(f"{e} for {path}.{hint}") from None


def is_local(path: str) -> bool:
  return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def check_input_dir(flag: str, path: str) -> None:
  """Raises FileNotFoundError, before anything is written, when the input folder is missing.

  A bucket has no folders: there, a path under which no file is listed is missing.
  """
  if is_local(path):
    found = os.path.isdir(path)
  else:
    found = bool(FileSystems.match([join(path, "**")], limits=[1])[0].metadata_list)
  if not found:
    raise FileNotFoundError(f"{flag} {path} does not exist; nothing was written")


def check_no_glob(flag: str, path: str) -> None:
  """Beam matches, lists and deletes by pattern, and cannot escape *, ? or [ in a path."""
  if re.search(r"[*?\[\]]", path):
    raise ValueError(f"{flag} {path!r} contains *, ? or [ ]: Beam reads those as a file "
                     "pattern; rename the folder")


def make_dir(directory: str) -> None:
  """Creates directory if it does not exist; what is in it stays."""
  if not FileSystems.exists(directory):
    FileSystems.mkdirs(directory)


def _list_dir(directory: str) -> list[str]:
  """Paths of all files under directory (recursively); [] if it does not exist."""
  result = FileSystems.match([join(directory, "**")])[0]
  return sorted(m.path for m in result.metadata_list)


def _is_build_output(name: str, dataset_name: str) -> bool:
  """Whether a top-level name in an output directory is one a build of dataset_name writes."""
  return (name in (features_lib.DATASET_INFO_FILE, features_lib.FEATURES_FILE,
                   features_lib.METADATA_FILE, features_lib.REJECTED_FILE,
                   features_lib.TAG_COUNTS_FILE, features_lib.TMP_DIR)
          or features_lib.REJECTED_SHARD.fullmatch(name) is not None
          or name.endswith(".labels.txt")
          or (name.startswith(f"{dataset_name}-") and f".{features_lib.FILE_FORMAT}-" in name)
          or name.startswith("beam-temp-"))


def prepare_output_dir(output_dir: str, overwrite: bool, dataset_name: str = "", *,
                       marker: str = features_lib.DATASET_INFO_FILE,
                       is_output: Optional[Callable[[str], bool]] = None) -> None:
  """Refuses a non-empty output directory unless overwrite; with it, removes the old build.

  The marker (dataset_info.json) goes first, so that a failed overwrite never leaves old
  metadata describing new shards. Files that a build never writes are kept.

  Args:
    dataset_name: of a dataset build (its shard names).
    marker: the file a finished output has, written last by the job.
    is_output: whether a top-level name is one the job writes; default: a dataset build's.

  Raises:
    FileExistsError: output_dir holds files and overwrite is False.
  """
  if is_output is None:
    is_output = lambda name: _is_build_output(name, dataset_name)
  existing = _list_dir(output_dir)
  info = join(output_dir, marker)
  if not existing and FileSystems.exists(info):  # The listing failed to see it: be safe.
    existing = [info]
  if not existing:
    make_dir(output_dir)
    return
  if not overwrite:
    raise FileExistsError(
        f"output directory {output_dir} is not empty ({len(existing)} files, "
        f"e.g. {existing[0]}); pass --overwrite to replace the output in it")
  if FileSystems.exists(info):
    delete_paths([info])
  prefix = output_dir.rstrip("/") + "/"
  ours, kept = [], []
  for path in existing:
    if path == info:
      continue
    top = path[len(prefix):].split("/", 1)[0]
    (ours if is_output(top) else kept).append(path)
  if ours:
    delete_paths(ours)
  for path in kept:
    logging.warning("--overwrite keeps %s: this job never writes it", path)
