"""The front of every builder: discover → read+decode → dedupe → split by content hash.

  Candidate → ImageRecord[raw label] → (split, ImageRecord[raw label])
The builder supplies read_label (Candidate → its raw label; raises imaging.Rejected); what
is read, decoded and hashed, and which split an image lands in, is the same for every task.
Paths stay as Python lists them (a name that is not UTF-8 surrogate-escaped), and so open;
they cross Beam's coders, which encode a bare str as strict UTF-8, inside the (pickled)
element dataclasses or as os.fsencode bytes, and rejections carry them escaped (files.printable).
"""
from __future__ import annotations

import argparse
import hashlib
import os
from typing import Callable, Iterable, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from alti2v.data import features as features_lib
from alti2v.data import imaging
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages.elements import REJECTED, Candidate, ImageRecord

ReadLabel = Callable[[Candidate], object]  # Returns the raw label; raises imaging.Rejected.


def _rejected(path: str, reason: str, detail: str = "") -> beam.pvalue.TaggedOutput:
  """elements.rejected, with a name that is not UTF-8 escaped (files.printable)."""
  return elements.rejected(files.printable(path), reason, files.printable(detail))


# ---------------------------------------------------------------------------
# discover

def _stem(path: str) -> str:
  return os.path.splitext(path)[0]


def _key_by_stem(path: str) -> tuple[bytes, bytes]:
  # As bytes (os.fsencode): Beam encodes a str as strict UTF-8, and a scraped name that is
  # not UTF-8 reaches Python surrogate-escaped ("bad\udcff.jpg"), which that refuses.
  return os.fsencode(_stem(path)), os.fsencode(path)


def list_files(input_dir: str) -> Iterable[bytes]:
  """Every file under input_dir (any depth), os.fsencode'd; a folder that cannot be listed
  is rejected (unreadable_folder), not skipped: Beam's own local listing (os.walk without
  onerror, under fileio.MatchFiles) drops it without a word."""
  if not files.is_local(input_dir):  # A bucket has no folder permissions to fail on.
    for metadata in FileSystems.match([files.join(input_dir, "**")])[0].metadata_list:
      yield os.fsencode(metadata.path)
    return
  errors: list[OSError] = []
  for root, dirs, names in os.walk(input_dir, onerror=errors.append):
    dirs.sort()
    for name in sorted(names):
      yield os.fsencode(os.path.join(root, name))
  for error in errors:
    yield _rejected(error.filename, features_lib.UNREADABLE_FOLDER,
                    f"{type(error).__name__}: {error.strerror}; its files were not listed")


def _pair_with_label(stem_and_paths: tuple[bytes, Iterable[bytes]],
                     label_extension: str) -> Iterable[Candidate]:
  _, paths = stem_and_paths
  paths = sorted(os.fsdecode(p) for p in paths)
  labels = [p for p in paths if p.endswith(label_extension)]
  images = [p for p in paths if imaging.is_image_path(p)]
  label_path = labels[0] if labels else None
  for image_path in images:
    yield Candidate(image_path, label_path)
  if label_path and not images:
    yield _rejected(label_path, features_lib.NO_IMAGE_FILE,
                    "label file without an image beside it")


def _route(element) -> Iterable:
  """Candidates to the main output, rejection dicts (elements.rejection) to REJECTED."""
  yield beam.pvalue.TaggedOutput(REJECTED, element) if isinstance(element, dict) else element


@beam.ptransform_fn
def DiscoverImages(pbegin, input_dir: str,  # pylint: disable=invalid-name
                   label_extension: Optional[str]):
  """Every image under input_dir (any depth) paired with the label file of the same stem.

  A local folder is walked here (one that cannot be listed is rejected as unreadable_folder),
  anything else listed through Beam's FileSystems, so gs:// works like a local path. With
  label_extension=None (labels from folders or another tree), every image is a
  Candidate without a label file.

  Returns:
    A DoOutputsTuple: candidates = Candidate, REJECTED = rejection dicts (unreadable
    folders among them).
  """
  def keep(path: bytes) -> bool:
    name = os.path.basename(os.fsdecode(path))
    wanted = imaging.is_image_path(name) or bool(
        label_extension and name.endswith(label_extension))
    if not wanted:
      elements.counter("files_ignored").inc()
    return wanted and not name.startswith(".")

  listed = (
      pbegin
      | "InputDir" >> beam.Create([input_dir])
      | "ListFiles" >> beam.FlatMap(list_files).with_outputs(REJECTED, main="paths"))
  # path of every file, os.fsencode'd; unreadable folders on REJECTED
  wanted = listed.paths | "KeepImagesAndLabels" >> beam.Filter(keep)

  if label_extension is None:  # Labels come from folders or another tree.
    candidates = (
        wanted
        | "ToCandidate" >> beam.Map(lambda p: Candidate(os.fsdecode(p)))
        # Spread the listing over workers before the decoding.
        | "Spread" >> beam.Reshuffle())
    found = (candidates, listed[REJECTED])
  else:
    paired = (
        wanted
        | "KeyByStem" >> beam.Map(lambda p: _key_by_stem(os.fsdecode(p)))
        # (stem, path), both os.fsencode'd
        | "GroupByStem" >> beam.GroupByKey()
        # (stem, [paths])
        | "PairWithLabel" >> beam.FlatMap(
            _pair_with_label, label_extension).with_outputs(REJECTED, main="candidates"))
    found = (paired.candidates, listed[REJECTED], paired[REJECTED])
  return (
      found
      | "Gather" >> beam.Flatten()
      # Candidate or rejection dict
      | "Route" >> beam.FlatMap(_route).with_outputs(REJECTED, main="candidates"))



# ---------------------------------------------------------------------------
# read+decode

def read_image_bytes(path: str) -> bytes:
  """A file's bytes (local or gs://).

  Raises:
    imaging.Rejected: UNREADABLE, with the error, when the file cannot be read.
  """
  try:
    return files.read_bytes(path)
  except (OSError, IOError) as e:
    raise imaging.Rejected(imaging.UNREADABLE, f"{type(e).__name__}: {e}") from None


class ReadAndDecode(beam.DoFn):
  """Candidate → ImageRecord[raw label]: reads the label and the image, hashes and decodes once."""

  def __init__(self, read_label: ReadLabel, max_side: int, max_pixels: int):
    self._read_label = read_label
    self._max_side = max_side
    self._max_pixels = max_pixels

  def setup(self):
    self._images_read = elements.counter("images_read")

  def process(self, candidate: Candidate):
    self._images_read.inc()
    path = candidate.image_path
    try:
      label = self._read_label(candidate)
      data = read_image_bytes(path)
      encoded = imaging.decode_and_resize(data, self._max_side, self._max_pixels)
    except imaging.Rejected as e:
      yield _rejected(path, e.reason, e.detail)
      return
    yield ImageRecord(path=path, content_hash=hashlib.sha256(data).hexdigest(),
                      jpeg=encoded.jpeg, height=encoded.height, width=encoded.width,
                      label=label)


# ---------------------------------------------------------------------------
# dedupe → split

def _keep_first_of_duplicates(hash_and_records: tuple[str, Iterable[ImageRecord]]):
  _, records = hash_and_records
  records = sorted(records, key=lambda r: r.path)
  kept = records[0]
  yield kept
  for duplicate in records[1:]:
    elements.counter("duplicates").inc()
    yield _rejected(duplicate.path, features_lib.DUPLICATE, f"duplicate of {kept.path}")


@beam.ptransform_fn
def DropDuplicates(records):  # pylint: disable=invalid-name
  """Keeps one image per content hash (the first path in sort order); the others are rejected."""
  return (
      records
      | "KeyByHash" >> beam.Map(lambda r: (r.content_hash, r))
      # (content_hash, ImageRecord)
      | "GroupByHash" >> beam.GroupByKey()
      | "KeepFirst" >> beam.FlatMap(_keep_first_of_duplicates).with_outputs(
          REJECTED, main="unique"))


def split_of(content_hash: str, val_fraction: float, test_fraction: float) -> str:
  """The split of an image, from its content hash: the same on every run and runner."""
  position = int(content_hash[:16], 16) / 2.0**64  # Uniform in [0, 1).
  if position < test_fraction:
    return "test"
  if position < test_fraction + val_fraction:
    return "validation"
  return "train"


@beam.ptransform_fn
def DecodeAndSplit(candidates, args: argparse.Namespace,  # pylint: disable=invalid-name
                   read_label: ReadLabel):
  """Candidate → read+decode → dedupe → (split, ImageRecord[raw label]), and the rejections.

  Args:
    args: the common flags (--image_size, --max_pixels, --val_fraction, --test_fraction).
    read_label: Candidate → its raw label; raises imaging.Rejected.

  Returns:
    ((split, ImageRecord) PCollection, tuple of rejection PCollections).
  """
  decoded = (
      candidates
      # Candidate
      | "ReadAndDecode" >> beam.ParDo(ReadAndDecode(
          read_label, args.image_size, args.max_pixels)).with_outputs(
              REJECTED, main="records"))
  # ImageRecord[raw label]
  unique = decoded.records | "DropDuplicates" >> DropDuplicates()
  with_split = unique.unique | "AssignSplit" >> beam.Map(
      lambda r: (split_of(r.content_hash, args.val_fraction, args.test_fraction), r))
  # (split, ImageRecord[raw label])
  return with_split, (decoded[REJECTED], unique[REJECTED])
