"""Beam job: a folder tree of images beside Safebooru-style tag files → a tensorflow-datasets dataset.

  python -m beam_jobs.build_tagged_dataset --input_dir IMAGES --output_dir DATASET [Beam options]

The stages are beam_jobs.stages; this module owns only what is particular to tags: reading
and normalising a tag file, the tag vocabulary, and the per-tag counts. BUILD.md has every flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
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


class ApplyVocabulary(beam.DoFn):
  """(split, record with tag names) → (split, record with sorted tag ids); no tag left → rejected."""

  def __init__(self):
    self._cache = None  # (vocabulary, {tag: id}); the side input is one object per bundle.

  def process(self, split_and_record, vocabulary: Sequence[str]):
    split, record = split_and_record
    if self._cache is None or self._cache[0] is not vocabulary:
      self._cache = (vocabulary, {t: i for i, t in enumerate(vocabulary)})
    index = self._cache[1]
    ids = sorted(index[t] for t in record.label if t in index)
    if not ids:
      yield beam.pvalue.TaggedOutput(stages.REJECTED, stages.rejection(
          record.path, imaging.NO_TAGS_IN_VOCABULARY,
          f"none of its {len(record.label)} tags is in the vocabulary"))
      return
    yield split, dataclasses.replace(record, label=tuple(ids))


def to_example(record: stages.ImageRecord) -> dict:
  """An ImageRecord (tags as ids) → the feature dict of features.tagged_features."""
  return {
      features_lib.IMAGE: record.jpeg,
      features_lib.TAGS: list(record.label),
      features_lib.PATH: record.path,
      features_lib.CONTENT_HASH: record.content_hash,
      features_lib.HEIGHT: record.height,
      features_lib.WIDTH: record.width,
  }


def tag_counts_tsv(counts: Sequence[tuple[tuple[str, int], int]],
                   vocabulary: Sequence[str]) -> str:
  """tag, id and images per split for every tag of the vocabulary, in id order."""
  per_tag = {}
  for (split, tag_id), n in counts:
    per_tag.setdefault(tag_id, {})[split] = n
  lines = ["tag\tid\t" + "\t".join(features_lib.SPLITS)]
  for tag_id, tag in enumerate(vocabulary):
    row = per_tag.get(tag_id, {})
    lines.append(f"{tag}\t{tag_id}\t" + "\t".join(
        str(row.get(s, 0)) for s in features_lib.SPLITS))
  return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m beam_jobs.build_tagged_dataset",
      description=__doc__.split("\n\n")[0] + " Other flags go to Beam "
      "(e.g. --runner=DataflowRunner --project ... --region ...).",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--input_dir", required=True,
                      help="Folder tree of images (jpg/jpeg/png/gif/webp/bmp, any case) "
                      "each beside a .txt tag file of the same name; local or gs://.")
  parser.add_argument("--output_dir", required=True,
                      help="Dataset directory to create; local or gs://.")
  parser.add_argument("--dataset_name", default=DEFAULT_DATASET_NAME,
                      help="Name in the shard file names and dataset_info.json.")
  parser.add_argument("--num_tags", type=int, default=5000,
                      help="Vocabulary size: the most frequent tags of the train split.")
  parser.add_argument("--min_tag_count", type=int, default=1,
                      help="A tag needs at least this many train images to enter "
                      "the vocabulary.")
  parser.add_argument("--image_size", type=int, default=256,
                      help="Longer side of the stored images, in pixels (never upscaled).")
  parser.add_argument("--max_pixels", type=int, default=imaging.DEFAULT_MAX_PIXELS,
                      help="Images with more pixels are rejected (too_many_pixels).")
  parser.add_argument("--val_fraction", type=float, default=0.1,
                      help="Share of images in the validation split.")
  parser.add_argument("--test_fraction", type=float, default=0.1,
                      help="Share of images in the test split.")
  parser.add_argument("--num_shards", type=int, default=0,
                      help="Shards per split (capped at its example count); 0 = "
                      "automatic, shards of about 150 MB.")
  parser.add_argument("--overwrite", action="store_true",
                      help="Replace the dataset in a non-empty output directory.")
  return parser


def validate_args(args: argparse.Namespace) -> None:
  """Raises ValueError naming the first flag whose value cannot work."""
  if args.num_tags < 1:
    raise ValueError(f"--num_tags must be >= 1, got {args.num_tags}")
  if args.min_tag_count < 1:
    raise ValueError(f"--min_tag_count must be >= 1, got {args.min_tag_count}")
  if args.image_size < 8:
    raise ValueError(f"--image_size must be >= 8, got {args.image_size}")
  if args.num_shards < 0:
    raise ValueError(f"--num_shards must be >= 0, got {args.num_shards}")
  for name in ("val_fraction", "test_fraction"):
    value = getattr(args, name)
    if not 0.0 <= value < 1.0:
      raise ValueError(f"--{name} must be in [0, 1), got {value}")
  if args.val_fraction + args.test_fraction >= 1.0:
    raise ValueError("--val_fraction + --test_fraction must be < 1 (no train split left)")
  if not re.fullmatch(r"[a-z][a-z0-9_]*", args.dataset_name):
    raise ValueError(f"--dataset_name must be snake_case, got {args.dataset_name!r}")


def build_pipeline(p: beam.Pipeline, args: argparse.Namespace) -> None:
  """Adds the whole build to pipeline p; the dataset is complete when p has run."""
  discovered = p | "Discover" >> stages.DiscoverImages(args.input_dir, TAG_FILE_EXTENSION)
  decoded = (
      discovered.candidates
      # Candidate
      | "ReadAndDecode" >> beam.ParDo(stages.ReadAndDecode(
          read_tags, args.image_size, args.max_pixels)).with_outputs(
              stages.REJECTED, main="records"))
  # ImageRecord with tag names
  unique = decoded.records | "DropDuplicates" >> stages.DropDuplicates()
  with_split = unique.unique | "AssignSplit" >> beam.Map(
      lambda r: (stages.split_of(r.content_hash, args.val_fraction,
                                 args.test_fraction), r))
  # (split, ImageRecord with tag names)
  vocabulary = (
      with_split
      | "TrainTags" >> beam.FlatMap(lambda sr: sr[1].label if sr[0] == "train" else ())
      | "BuildVocabulary" >> stages.BuildVocabulary(args.num_tags, args.min_tag_count))
  vocabulary_side = beam.pvalue.AsSingleton(vocabulary)
  labelled = with_split | "ApplyVocabulary" >> beam.ParDo(
      ApplyVocabulary(), vocabulary_side).with_outputs(
          stages.REJECTED, main="examples")
  # (split, ImageRecord with tag ids)
  tag_counts = (
      labelled.examples
      | "SplitTagPairs" >> beam.FlatMap(lambda sr: [(sr[0], t) for t in sr[1].label])
      | "CountTags" >> beam.combiners.Count.PerElement()
      | "GatherTagCounts" >> beam.combiners.ToList())
  serialized = labelled.examples | "Serialize" >> beam.ParDo(
      stages.Serialize(features_lib.tagged_features, to_example), vocabulary_side)
  # (split, content_hash, serialized tf.train.Example)
  shard_infos, split_sizes = serialized | "WriteShards" >> stages.WriteShards(
      args.output_dir, args.dataset_name, args.num_shards)
  rejections = (
      (discovered[stages.REJECTED], decoded[stages.REJECTED],
       unique[stages.REJECTED], labelled[stages.REJECTED])
      | "AllRejections" >> beam.Flatten()
      | "CountRejections" >> beam.Map(stages.count_rejection))
  build_args = {k: v for k, v in vars(args).items() if k != "overwrite"}
  _ = (
      shard_infos
      | "GatherShardInfos" >> beam.combiners.ToList()
      | "FinalizeDataset" >> beam.Map(
          _finalize, args=args, build_args=build_args,
          vocabulary=vocabulary_side,
          split_sizes=beam.pvalue.AsDict(split_sizes),
          rejections=beam.pvalue.AsList(rejections),
          tag_counts=beam.pvalue.AsSingleton(tag_counts)))


def _finalize(shard_infos, *, args, build_args, vocabulary, split_sizes, rejections,
              tag_counts):
  return stages.finalize_dataset(
      shard_infos, output_dir=args.output_dir, dataset_name=args.dataset_name,
      features=features_lib.tagged_features(vocabulary), split_sizes=split_sizes,
      rejections=rejections, label_counts_tsv=tag_counts_tsv(tag_counts, vocabulary),
      metadata={"builder": "beam_jobs.build_tagged_dataset", "build_args": build_args,
                "vocabulary_size": len(vocabulary)},
      description="Images with their tags, built by alti2v's build_tagged_dataset.")


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  args, beam_args = build_parser().parse_known_args(argv)
  validate_args(args)
  for path in (args.input_dir, args.output_dir):
    stages.check_filesystem(path)
  stages.prepare_output_dir(args.output_dir, args.overwrite)
  p = beam.Pipeline(options=stages.pipeline_options(beam_args))
  build_pipeline(p, args)
  result = p.run()
  result.wait_until_finish()
  return result


def main(argv: Optional[Sequence[str]] = None) -> None:
  logging.getLogger().setLevel(logging.INFO)
  args, _ = build_parser().parse_known_args(argv)
  run(argv)
  print(json.dumps(stages.summarize(args.output_dir), indent=2))


if __name__ == "__main__":
  main()
