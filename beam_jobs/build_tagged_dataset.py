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

from alti2v.data import features as features_lib
from alti2v.data import imaging
from alti2v.tasks import tagger
from beam_jobs.stages import files
from beam_jobs.stages import job
from beam_jobs.stages import vocabulary
from beam_jobs.stages import write
from beam_jobs.stages.elements import Candidate, ImageRecord

TAG_FILE_EXTENSION = ".txt"


def parse_tags(text: str) -> tuple[str, ...]:
  """The tags of a tag file, normalised, deduplicated, in first-seen order.

  A file with commas or newlines is split on those (a tag may then hold spaces:
  "long hair, blue eyes"); otherwise on whitespace ("long_hair blue_eyes").
  """
  if "," in text or "\n" in text.strip():
    parts = re.split(r"[,\n]", text)
  else:
    parts = text.split()
  tags = (vocabulary.normalize_name(p) for p in parts)
  return tuple(dict.fromkeys(t for t in tags if t))


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

  def validate(self, args: argparse.Namespace) -> None:
    vocabulary.validate_flags(args, "tag")

  def read_label(self, candidate: Candidate, args: argparse.Namespace
                 ) -> vocabulary.NamedLabels:
    """The normalised tags of a candidate's tag file.

    Raises:
      imaging.Rejected: no tag file, an unreadable one, or one with no tags.
    """
    if candidate.label_path is None:
      raise imaging.Rejected(tagger.NO_TAG_FILE,
                             f"no {TAG_FILE_EXTENSION} file with the same name")
    try:
      data = files.read_bytes(candidate.label_path)
    except (OSError, IOError) as e:
      raise imaging.Rejected(imaging.UNREADABLE,
                             f"tag file {candidate.label_path}: {e}") from None
    tags = parse_tags(data.decode("utf-8", errors="replace"))
    if not tags:
      raise imaging.Rejected(features_lib.NO_TAGS, f"{candidate.label_path} has no tags")
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
