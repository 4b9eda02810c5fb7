"""Beam job: a folder tree of images beside Safebooru-style tag files → a tensorflow-datasets dataset.

  python -m beam_jobs.build_tagged_dataset --input_dir IMAGES --output_dir DATASET [Beam options]

The stages are beam_jobs.stages; this module owns only what is particular to tags: reading
and normalising a tag file, the tag vocabulary, and the per-tag counts. BUILD.md has every flag.
"""
from __future__ import annotations

import argparse
import re
from typing import Optional, Sequence

import apache_beam as beam

from alti2v import features as features_lib
from alti2v import imaging
from beam_jobs import stages

DEFAULT_DATASET_NAME = "tagged_images"
TAG_FILE_EXTENSION = ".txt"


def normalize_tag(tag: str) -> str:
  """Trimmed, lower-case, inner whitespace runs → "_" (" Long  Hair" → "long_hair")."""
  return re.sub(r"\s+", "_", tag.strip().lower())


def parse_tags(text: str) -> tuple[str, ...]:
  """The tags of a tag file, normalised, deduplicated, in first-seen order.

  A file with commas or newlines is split on those (a tag may then hold spaces:
  "long hair, blue eyes"); otherwise on whitespace ("long_hair blue_eyes").
  """
  if "," in text or "\n" in text.strip():
    parts = re.split(r"[,\n]", text)
  else:
    parts = text.split()
  tags = (normalize_tag(p) for p in parts)
  return tuple(dict.fromkeys(t for t in tags if t))


def read_tags(candidate: stages.Candidate) -> tuple[str, ...]:
  """The normalised tags of a candidate's tag file.

  Raises:
    imaging.Rejected: no tag file, an unreadable one, or one with no tags.
  """
  if candidate.label_path is None:
    raise imaging.Rejected(imaging.NO_TAG_FILE,
                           f"no {TAG_FILE_EXTENSION} file with the same name")
  try:
    data = stages.read_bytes(candidate.label_path)
  except (OSError, IOError) as e:
    raise imaging.Rejected(imaging.UNREADABLE,
                           f"tag file {candidate.label_path}: {e}") from None
  tags = parse_tags(data.decode("utf-8", errors="replace"))
  if not tags:
    raise imaging.Rejected(imaging.NO_TAGS, f"{candidate.label_path} has no tags")
  return tags


def to_example(record: stages.ImageRecord) -> dict:
  """An ImageRecord (tags as ids) → the feature dict of features.tagged_features."""
  return {**stages.example_fields(record), features_lib.TAGS: list(record.label)}


def build_parser() -> argparse.ArgumentParser:
  parser = stages.base_parser(
      "python -m beam_jobs.build_tagged_dataset", __doc__.split("\n\n")[0],
      input_help="Folder tree of images (jpg/jpeg/png/gif/webp/bmp, any case) each "
      "beside a .txt tag file of the same name; local or gs://.",
      default_name=DEFAULT_DATASET_NAME)
  stages.add_vocabulary_args(parser, "tag")
  return parser


def validate_args(args: argparse.Namespace) -> None:
  """Raises ValueError naming the first flag whose value cannot work."""
  stages.validate_vocabulary_args(args, "tag")
  stages.validate_common_args(args)


def build_pipeline(p: beam.Pipeline, args: argparse.Namespace) -> None:
  """Adds the whole build to pipeline p; the dataset is complete when p has run."""
  with_split, rejected = p | "Images" >> stages.ImagesBySplit(
      args, TAG_FILE_EXTENSION, read_tags)
  # (split, ImageRecord with tag names)
  examples, vocabulary, label_counts, unknown = with_split | "Vocabulary" >> (
      stages.LabelVocabulary(args.num_tags, args.min_tag_count))
  # (split, ImageRecord with tag ids)
  _ = examples | "WriteDataset" >> stages.WriteDataset(
      args, (*rejected, unknown), features_lib.tagged_features,
      to_example, vocabulary, label_counts, describe,
      "Images with their tags, built by alti2v's build_tagged_dataset.")


def describe(vocabulary: Sequence[str], tag_counts) -> tuple[dict, str]:
  """metadata.json entries and tag_counts.tsv of a tagged dataset."""
  return ({"builder": "beam_jobs.build_tagged_dataset",
           "vocabulary_size": len(vocabulary)},
          stages.label_counts_tsv(tag_counts, vocabulary))


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return stages.run_job(argv, build_parser(), validate_args, build_pipeline)


if __name__ == "__main__":
  stages.main(run, build_parser())
