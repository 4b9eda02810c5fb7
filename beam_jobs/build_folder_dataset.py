"""Beam job: images hand-sorted into class folders (positive/ and negative/) → a keep/drop dataset.

  python -m beam_jobs.build_folder_dataset --input_dir SORTED --output_dir DATASET [Beam options]

Same stages as the tagged builder (beam_jobs.stages); the label is the folder an image sits in
(at any depth below it). Class counts per split go to metadata.json.
"""
from __future__ import annotations

import argparse
import collections
import os
from typing import Optional, Sequence

import apache_beam as beam

from alti2v import features as features_lib
from alti2v import imaging
from beam_jobs import stages

DEFAULT_DATASET_NAME = "screening"


def class_reader(input_dir: str, positive: str, negative: str):
  """A read_label for ReadAndDecode: the class id from the top folder below input_dir."""
  root = input_dir.rstrip("/") + "/"
  ids = {negative: 0, positive: 1}

  def read_label(candidate: stages.Candidate) -> int:
    relative = candidate.image_path[len(root):] if candidate.image_path.startswith(
        root) else os.path.basename(candidate.image_path)
    top = relative.split("/", 1)[0] if "/" in relative else ""
    if top not in ids:
      raise imaging.Rejected(imaging.NO_CLASS_FOLDER,
                             f"not under {positive}/ or {negative}/ of {input_dir}")
    return ids[top]
  return read_label


def to_example(record: stages.ImageRecord) -> dict:
  return {**stages.example_fields(record), features_lib.LABEL: record.label}


def build_parser() -> argparse.ArgumentParser:
  parser = stages.base_parser(
      "python -m beam_jobs.build_folder_dataset", __doc__.split("\n\n")[0],
      input_help="Folder with one sub-folder per class (--positive_folder, "
      "--negative_folder), images at any depth below them; local or gs://.",
      default_name=DEFAULT_DATASET_NAME)
  parser.add_argument("--positive_folder", default="positive",
                      help="Sub-folder of the images to keep (label 1).")
  parser.add_argument("--negative_folder", default="negative",
                      help="Sub-folder of the images to drop (label 0).")
  return parser


def validate_args(args: argparse.Namespace) -> None:
  if args.positive_folder == args.negative_folder or "/" in (
      args.positive_folder + args.negative_folder):
    raise ValueError("--positive_folder and --negative_folder must be two different "
                     "folder names directly under --input_dir")
  stages.validate_common_args(args)


def class_names(args: argparse.Namespace) -> tuple[str, str]:
  return (args.negative_folder, args.positive_folder)


def build_pipeline(p: beam.Pipeline, args: argparse.Namespace) -> None:
  """Adds the whole build to pipeline p; the dataset is complete when p has run."""
  with_split, rejected = p | "Images" >> stages.ImagesBySplit(
      args, None, class_reader(args.input_dir, args.positive_folder, args.negative_folder))
  # (split, ImageRecord with class id)
  class_counts = (
      with_split
      | "SplitClassPairs" >> beam.Map(lambda sr: (sr[0], sr[1].label))
      | "CountClasses" >> beam.combiners.Count.PerElement()
      | "GatherClassCounts" >> beam.combiners.ToList())
  names = class_names(args)
  _ = with_split | "WriteDataset" >> stages.WriteDataset(
      args, rejected, lambda _: features_lib.binary_features(names), to_example, names,
      class_counts, describe,
      "Images sorted into keep/drop folders, built by alti2v's build_folder_dataset.")


def describe(names: Sequence[str], class_counts) -> tuple[dict, None]:
  """metadata.json entries of a folder dataset: the class counts per split."""
  counts = collections.defaultdict(lambda: {n: 0 for n in names})
  for (split, class_id), n in class_counts:
    counts[split][names[class_id]] = n
  return ({"builder": "beam_jobs.build_folder_dataset",
           "class_counts": {s: counts[s] for s in features_lib.SPLITS if s in counts}},
          None)


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return stages.run_job(argv, build_parser(), validate_args, build_pipeline)


if __name__ == "__main__":
  stages.main(run, build_parser())
