"""Beam job: a folder tree of images beside Safebooru-style tag files → a tensorflow-datasets dataset.

  python -m beam_jobs.build_tagged_dataset --input_dir IMAGES --output_dir DATASET [Beam options]

The stages are beam_jobs.stages; this module owns only what is particular to tags: reading
and normalising a tag file, the tag vocabulary, and the per-tag counts. BUILD.md has every flag.
"""
from __future__ import annotations

import argparse
import codecs
import logging
import re
import unicodedata
from typing import Optional, Sequence

import apache_beam as beam

from alti2v.data import features as features_lib
from alti2v.data import imaging
from alti2v.tasks import tagger
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages import job
from beam_jobs.stages import vocabulary
from beam_jobs.stages import write
from beam_jobs.stages.elements import Candidate, ImageRecord

TAG_FILE_EXTENSION = ".txt"
DEFAULT_MAX_TAGS_PER_IMAGE = 200
TAGS_CAPPED = "tags_capped"  # The counter of images whose tag file held more tags.
# Without a byte-order mark a tag file must be UTF-8. (UTF-32's LE mark starts as UTF-16's,
# and its NULs then reject it.)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
         (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"))
# NUL, the other controls but whitespace, and U+FFFD: a binary file, UTF-16 without a BOM,
# or text damaged by an earlier conversion; never part of a tag.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")


def decode_tag_file(data: bytes) -> str:
  """The text of a tag file: UTF-8, or UTF-8 or UTF-16 after a byte-order mark.

  Raises:
    imaging.Rejected (bad_tag_encoding): other bytes (Latin-1, UTF-16 without a BOM,
      binary), or text holding NUL, control characters or U+FFFD.
  """
  encoding, name = next(((e, n) for bom, e, n in _BOMS if data.startswith(bom)),
                        ("utf-8", "UTF-8"))
  try:
    text = data.decode(encoding)
  except UnicodeDecodeError as e:
    raise imaging.Rejected(tagger.BAD_TAG_ENCODING,
                           f"not {name}: {e.reason} at byte {e.start}") from None
  bad = _NOT_TEXT.search(text)
  if bad:
    raise imaging.Rejected(tagger.BAD_TAG_ENCODING,
                           f"{name} text holding U+{ord(bad.group()):04X} at character "
                           f"{bad.start()}: binary, or another encoding")
  return text


def parse_tags(text: str) -> tuple[str, ...]:
  """The tags of a tag file, NFKC-normalised, deduplicated, in first-seen order.

  A file with commas or newlines is split on those (a tag may then hold spaces:
  "long hair, blue eyes"); otherwise on whitespace ("long_hair blue_eyes"). NFKC comes
  first, so that a full-width comma or space separates too.
  """
  text = unicodedata.normalize("NFKC", text)
  if "," in text or "\n" in text.strip():
    parts = re.split(r"[,\n]", text)
  else:
    parts = text.split()
  tags = (vocabulary.normalize_name(p) for p in parts)
  return tuple(dict.fromkeys(t for t in tags if t))


def read_tag_categories(path: str) -> dict[str, str]:
  """{tag: category} of a --tag_categories file (local or gs://), names as written.

  Raises:
    ValueError: the file cannot be read, is not UTF-8, or has a bad line (its number).
  """
  try:
    text = files.read_bytes(path).decode("utf-8")
  except (OSError, IOError) as e:
    raise ValueError(f"--tag_categories: cannot read {path}: {e}") from None
  except UnicodeDecodeError as e:
    raise ValueError(f"--tag_categories: {path} is not UTF-8 ({e.reason} at byte "
                     f"{e.start})") from None
  return tagger.parse_categories_csv(text, f"--tag_categories {path}")


class TaggedDatasetBuilder(job.DatasetBuilder):
  """Images beside .txt tag files → ImageRecord[NamedLabels] → ImageRecord[LabelIds] (tag ids)."""
  module = "beam_jobs.build_tagged_dataset"
  description = __doc__.split("\n\n")[0]
  default_dataset_name = "tagged_images"
  input_help = ("Folder tree of images (jpg/jpeg/png/gif/webp/bmp, any case) each "
                "beside a .txt tag file of the same name; local or gs://.")
  label_extension = TAG_FILE_EXTENSION
  dataset_description = "Images with their tags, built by alti2v's build_tagged_dataset."

  def add_flags(self, parser: argparse.ArgumentParser) -> None:
    vocabulary.add_flags(parser, "tag")
    parser.add_argument("--max_tags_per_image", type=int, default=DEFAULT_MAX_TAGS_PER_IMAGE,
                        help="Tags kept from one tag file: the first in it; a file with more "
                        f"is cut (counted as {TAGS_CAPPED}), so that no one file can fill "
                        "the vocabulary.")
    parser.add_argument("--tag_categories", default=None, metavar="CSV",
                        help="Each tag's category, stored beside the vocabulary "
                        f"({features_lib.categories_file(tagger.TAGS)}) for evaluate and "
                        "predict: CSV name,category (optional header), or WD14's "
                        "selected_tags.csv; a category is general, character, copyright, "
                        "artist, meta, rating or Danbooru's number (0, 4, 3, 1, 5; 9 = "
                        "rating). Tags it does not name are general (rating:… are rating).")

  def validate(self, args: argparse.Namespace) -> None:
    vocabulary.validate_flags(args, "tag")
    if args.max_tags_per_image < 1:
      raise ValueError(f"--max_tags_per_image must be >= 1, got {args.max_tags_per_image}")
    if args.tag_categories:
      read_tag_categories(args.tag_categories)  # A bad file is refused before the build.

  def label_files(self, names: Sequence[str], args: argparse.Namespace) -> dict[str, str]:
    """tags.categories.txt when --tag_categories is given: one category per vocabulary tag."""
    if not args.tag_categories:
      return {}
    found = tagger.vocabulary_categories(names, read_tag_categories(args.tag_categories),
                                         vocabulary.normalize_name)
    return {features_lib.categories_file(tagger.TAGS): tagger.categories_text(found)}

  def read_label(self, candidate: Candidate, args: argparse.Namespace
                 ) -> vocabulary.NamedLabels:
    """The normalised tags of a candidate's tag file, at most --max_tags_per_image of them.

    Raises:
      imaging.Rejected: no tag file, an unreadable one, one in another encoding
        (decode_tag_file), or one with no tags.
    """
    if candidate.label_path is None:
      raise imaging.Rejected(tagger.NO_TAG_FILE,
                             f"no {TAG_FILE_EXTENSION} file with the same name")
    try:
      data = files.read_bytes(candidate.label_path)
    except (OSError, IOError) as e:
      raise imaging.Rejected(imaging.UNREADABLE,
                             f"tag file {candidate.label_path}: {e}") from None
    try:
      tags = parse_tags(decode_tag_file(data))
    except imaging.Rejected as e:
      raise imaging.Rejected(e.reason, f"tag file {candidate.label_path}: {e.detail}") from None
    if not tags:
      raise imaging.Rejected(features_lib.NO_TAGS, f"{candidate.label_path} has no tags")
    if len(tags) > args.max_tags_per_image:
      elements.counter(TAGS_CAPPED).inc()
      logging.warning("%s holds %d tags: kept the first %d (--max_tags_per_image)",
                      files.printable(candidate.label_path), len(tags),
                      args.max_tags_per_image)
      tags = tags[:args.max_tags_per_image]
    return vocabulary.NamedLabels(tags)

  def label_examples(self, with_split: beam.PCollection,
                     args: argparse.Namespace) -> job.Labelled:
    examples, names, tag_counts, unknown = with_split | "Vocabulary" >> (
        vocabulary.LabelVocabulary(args.num_tags, args.min_tag_count))
    return job.Labelled(examples, names, tag_counts, (unknown,))

  def features(self, names: Sequence[str]):
    return tagger.tagged_features(names)

  def to_example(self, record: ImageRecord[vocabulary.LabelIds]) -> dict:
    """The feature dict of features.tagged_features."""
    return {**write.example_fields(record), tagger.TAGS: list(record.label.ids)}

  def describe(self, names: Sequence[str], tag_counts) -> tuple[dict, str]:
    """The vocabulary size, and tag_counts.tsv."""
    return ({"vocabulary_size": len(names)}, vocabulary.label_counts_tsv(tag_counts, names))


BUILDER = TaggedDatasetBuilder()


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return BUILDER.run(argv)


if __name__ == "__main__":
  BUILDER.main()
