"""Beam job: images hand-sorted into class folders (positive/ and negative/) → a keep/drop dataset.

  python -m beam_jobs.build_folder_dataset --input_dir SORTED --output_dir DATASET [Beam options]

Same stages as every builder (beam_jobs.stages); the label is the folder an image sits in
(at any depth below it). Class counts per split go to metadata.json.
"""
from __future__ import annotations

import argparse
import collections
from typing import Optional, Sequence

import apache_beam as beam

from alti2v.data import features as features_lib
from alti2v.data import imaging
from alti2v.tasks.screen import task as screen
from beam_jobs.stages import files
from beam_jobs.stages import job
from beam_jobs.stages import write
from beam_jobs.stages.elements import Candidate, ImageRecord


def class_names(args: argparse.Namespace) -> tuple[str, str]:
  """The class names in id order: 0 = the negative folder, 1 = the positive one."""
  return (args.negative_folder, args.positive_folder)


class FolderDatasetBuilder(job.DatasetBuilder):
  """Images in class folders → ImageRecord[int]: the class id, read and stored as it is."""
  module = "beam_jobs.build_folder_dataset"
  description = __doc__.split("\n\n")[0]
  default_dataset_name = "screening"
  input_help = ("Folder with one sub-folder per class (--positive_folder, "
                "--negative_folder), images at any depth below them; local or gs://.")
  dataset_description = ("Images sorted into keep/drop folders, built by alti2v's "
                         "build_folder_dataset.")

  def add_flags(self, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--positive_folder", default="positive",
                        help="Sub-folder of the images to keep (label 1).")
    parser.add_argument("--negative_folder", default="negative",
                        help="Sub-folder of the images to drop (label 0).")

  def validate(self, args: argparse.Namespace) -> None:
    if args.positive_folder == args.negative_folder or "/" in (
        args.positive_folder + args.negative_folder):
      raise ValueError("--positive_folder and --negative_folder must be two different "
                       "folder names directly under --input_dir")

  def read_label(self, candidate: Candidate, args: argparse.Namespace) -> int:
    """The class id from the top folder below --input_dir; raises imaging.Rejected outside them."""
    relative = files.relative_path(candidate.image_path, args.input_dir)
    top = relative.split("/", 1)[0] if "/" in relative else ""
    names = class_names(args)
    if top not in names:
      raise imaging.Rejected(screen.NO_CLASS_FOLDER, f"not under {args.positive_folder}/ "
                             f"or {args.negative_folder}/ of {args.input_dir}")
    return names.index(top)

  def label_examples(self, with_split: beam.PCollection,
                     args: argparse.Namespace) -> job.Labelled:
    class_counts = (
        with_split
        | "SplitClassPairs" >> beam.Map(lambda sr: (sr[0], sr[1].label))
        | "CountClasses" >> beam.combiners.Count.PerElement()
        | "GatherClassCounts" >> beam.combiners.ToList())
    return job.Labelled(with_split, class_names(args), class_counts)

  def features(self, names: Sequence[str]):
    return screen.binary_features(tuple(names))

  def to_example(self, record: ImageRecord[int]) -> dict:
    return {**write.example_fields(record), screen.LABEL: record.label}

  def describe(self, names: Sequence[str], class_counts) -> tuple[dict, None]:
    """The class counts per split."""
    counts = collections.defaultdict(lambda: {n: 0 for n in names})
    for (split, class_id), n in class_counts:
      counts[split][names[class_id]] = n
    return ({"class_counts": {s: counts[s] for s in features_lib.SPLITS if s in counts}},
            None)


BUILDER = FolderDatasetBuilder()


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return BUILDER.run(argv)


if __name__ == "__main__":
  BUILDER.main()
