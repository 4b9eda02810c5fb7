"""Beam job: images + their Cloud Vision JSON (from vision_labels) → a soft-label dataset for distillation.

  python -m beam_jobs.build_vision_dataset --input_dir IMAGES --labels_dir JSON_DIR --output_dir DATASET

Same stages as every builder (beam_jobs.stages). The label of IMAGES/a/b.jpg is
JSON_DIR/a/b.jpg.json: its labelAnnotations (description → normalised name, score). The
vocabulary is the --num_labels most frequent names of the train split; each record stores
label ids and the teacher's scores. Malformed JSON and responses carrying an "error" are
quarantined in rejected.jsonl with the reason.
"""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

import apache_beam as beam

from alti2v.data import features as features_lib
from alti2v.data import imaging
from alti2v.tasks import distill
from beam_jobs import vision_client
from beam_jobs.stages import files
from beam_jobs.stages import job
from beam_jobs.stages import vocabulary
from beam_jobs.stages import write
from beam_jobs.stages.elements import Candidate, ImageRecord


def parse_response(text: str, source: str) -> vocabulary.NamedLabels:
  """The names and scores of an AnnotateImageResponse, by name, best score kept per name.

  Raises:
    imaging.Rejected: malformed JSON, an error response, or no labels.
  """
  try:
    response = json.loads(text)
  except ValueError as e:
    raise imaging.Rejected(distill.MALFORMED_LABEL_FILE, f"{source}: {e}") from None
  if not isinstance(response, dict):
    raise imaging.Rejected(distill.MALFORMED_LABEL_FILE, f"{source}: not a JSON object")
  if "error" in response:
    error = response["error"] if isinstance(response["error"], dict) else {}
    raise imaging.Rejected(distill.API_ERROR, f"{source}: code {error.get('code')}: "
                           f"{error.get('message')}")
  best: dict[str, float] = {}
  try:
    for annotation in response.get("labelAnnotations", []):
      name = vocabulary.normalize_name(annotation["description"])
      score = float(annotation["score"])
      if not 0.0 <= score <= 1.0:
        raise ValueError(f"score {score} outside [0, 1]")
      if name:
        best[name] = max(score, best.get(name, 0.0))
  except (KeyError, TypeError, ValueError) as e:
    raise imaging.Rejected(distill.MALFORMED_LABEL_FILE,
                           f"{source}: bad labelAnnotations: {e}") from None
  if not best:
    raise imaging.Rejected(features_lib.NO_TAGS, f"{source}: no labelAnnotations")
  names = sorted(best)
  return vocabulary.NamedLabels(tuple(names), tuple(best[n] for n in names))


class VisionDatasetBuilder(job.DatasetBuilder):
  """Images + Vision JSON → ImageRecord[NamedLabels] (with scores) → ImageRecord[LabelIds]."""
  module = "beam_jobs.build_vision_dataset"
  description = __doc__.split("\n\n")[0]
  default_dataset_name = "vision_labels"
  input_help = "Folder tree of images; local or gs://."
  dataset_description = ("Images with Cloud Vision label scores, built by alti2v's "
                         "build_vision_dataset.")

  def add_flags(self, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels_dir", required=True,
                        help="The JSON files of vision_labels (same tree, .json).")
    vocabulary.add_flags(parser, "label")

  def validate(self, args: argparse.Namespace) -> None:
    vocabulary.validate_flags(args, "label")

  def read_label(self, candidate: Candidate, args: argparse.Namespace
                 ) -> vocabulary.NamedLabels:
    """The labels of the image's JSON in --labels_dir; raises imaging.Rejected."""
    path = files.mirrored_path(candidate.image_path, args.input_dir, args.labels_dir,
                               vision_client.RESPONSE_SUFFIX)
    try:
      text = files.read_bytes(path).decode("utf-8", errors="replace")
    except (OSError, IOError):
      raise imaging.Rejected(features_lib.NO_LABEL_FILE, f"no {path}") from None
    return parse_response(text, path)

  def label_examples(self, with_split: beam.PCollection,
                     args: argparse.Namespace) -> job.Labelled:
    examples, names, label_counts, unknown = with_split | "Vocabulary" >> (
        vocabulary.LabelVocabulary(args.num_labels, args.min_label_count))
    return job.Labelled(examples, names, label_counts, (unknown,))

  def features(self, names: Sequence[str]):
    return distill.scored_features(names)

  def to_example(self, record: ImageRecord[vocabulary.LabelIds]) -> dict:
    return {**write.example_fields(record), distill.LABELS: list(record.label.ids),
            distill.LABEL_SCORES: [float(s) for s in record.label.scores]}

  def describe(self, names: Sequence[str], label_counts) -> tuple[dict, str]:
    """The vocabulary size, and tag_counts.tsv (per label)."""
    return ({"vocabulary_size": len(names)},
            vocabulary.label_counts_tsv(label_counts, names))


BUILDER = VisionDatasetBuilder()


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return BUILDER.run(argv)


if __name__ == "__main__":
  BUILDER.main()
