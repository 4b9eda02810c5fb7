"""Beam job: images + their Cloud Vision JSON (from vision_labels) → a soft-label dataset for distillation.

  python -m beam_jobs.build_vision_dataset --input_dir IMAGES --labels_dir JSON_DIR --output_dir DATASET

Same stages as the other builders (beam_jobs.stages). The label of IMAGES/a/b.jpg is
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

from alti2v import features as features_lib
from alti2v import imaging
from beam_jobs import build_tagged_dataset
from beam_jobs import stages
from beam_jobs import vision_labels

DEFAULT_DATASET_NAME = "vision_labels"


def parse_response(text: str, source: str) -> tuple[tuple[str, float], ...]:
  """(name, score) pairs of an AnnotateImageResponse, best score kept per name.

  Raises:
    imaging.Rejected: malformed JSON, an error response, or no labels.
  """
  try:
    response = json.loads(text)
  except ValueError as e:
    raise imaging.Rejected(imaging.MALFORMED_LABEL_FILE, f"{source}: {e}") from None
  if not isinstance(response, dict):
    raise imaging.Rejected(imaging.MALFORMED_LABEL_FILE, f"{source}: not a JSON object")
  if "error" in response:
    error = response["error"] if isinstance(response["error"], dict) else {}
    raise imaging.Rejected(imaging.API_ERROR, f"{source}: code {error.get('code')}: "
                           f"{error.get('message')}")
  best: dict[str, float] = {}
  try:
    for annotation in response.get("labelAnnotations", []):
      name = build_tagged_dataset.normalize_tag(annotation["description"])
      score = float(annotation["score"])
      if not 0.0 <= score <= 1.0:
        raise ValueError(f"score {score} outside [0, 1]")
      if name:
        best[name] = max(score, best.get(name, 0.0))
  except (KeyError, TypeError, ValueError) as e:
    raise imaging.Rejected(imaging.MALFORMED_LABEL_FILE,
                           f"{source}: bad labelAnnotations: {e}") from None
  if not best:
    raise imaging.Rejected(imaging.NO_TAGS, f"{source}: no labelAnnotations")
  return tuple(sorted(best.items()))


def label_reader(input_dir: str, labels_dir: str):
  def read_label(candidate: stages.Candidate):
    path = vision_labels.json_path(candidate.image_path, input_dir, labels_dir)
    try:
      text = stages.read_bytes(path).decode("utf-8", errors="replace")
    except (OSError, IOError):
      raise imaging.Rejected(imaging.NO_LABEL_FILE, f"no {path}") from None
    return parse_response(text, path)
  return read_label


def to_example(record: stages.ImageRecord) -> dict:
  ids, scores = record.label
  return {**stages.example_fields(record), features_lib.LABELS: list(ids),
          features_lib.LABEL_SCORES: [float(s) for s in scores]}


def build_parser() -> argparse.ArgumentParser:
  parser = stages.base_parser(
      "python -m beam_jobs.build_vision_dataset", __doc__.split("\n\n")[0],
      input_help="Folder tree of images; local or gs://.", default_name=DEFAULT_DATASET_NAME)
  parser.add_argument("--labels_dir", required=True,
                      help="The JSON files of vision_labels (same tree, .json).")
  stages.add_vocabulary_args(parser, "label")
  return parser


def validate_args(args: argparse.Namespace) -> None:
  stages.validate_vocabulary_args(args, "label")
  stages.validate_common_args(args)


def build_pipeline(p: beam.Pipeline, args: argparse.Namespace) -> None:
  with_split, rejected = p | "Images" >> stages.ImagesBySplit(
      args, None, label_reader(args.input_dir, args.labels_dir))
  # (split, ImageRecord with ((name, score), ...))
  examples, vocabulary, label_counts, unknown = with_split | "Vocabulary" >> (
      stages.LabelVocabulary(args.num_labels, args.min_label_count))
  # (split, ImageRecord with label ids)
  _ = examples | "WriteDataset" >> stages.WriteDataset(
      args, (*rejected, unknown), features_lib.scored_features,
      to_example, vocabulary, label_counts, describe,
      "Images with Cloud Vision label scores, built by alti2v's build_vision_dataset.")


def describe(vocabulary: Sequence[str], label_counts) -> tuple[dict, str]:
  return ({"builder": "beam_jobs.build_vision_dataset", "vocabulary_size": len(vocabulary)},
          stages.label_counts_tsv(label_counts, vocabulary))


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return stages.run_job(argv, build_parser(), validate_args, build_pipeline)


if __name__ == "__main__":
  stages.main(run, build_parser())
