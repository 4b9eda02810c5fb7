"""Evaluation of a trained tagger: mAP, micro/macro F1 at per-tag thresholds calibrated on validation.

  python -m alti2v.evaluate --model_dir RUN --data_dir DATASET --split test

Writes thresholds.json (used by predict) and per_tag_<split>.csv beside the model, and
prints the mAP next to the constant predictor's (every image scored with the tag's train
frequency), so a model that learned nothing cannot look good.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from typing import Optional, Sequence

import numpy as np

THRESHOLDS_FILE = "thresholds.json"
DEFAULT_THRESHOLD = 0.5
MIN_SUPPORT = 5  # Validation positives below which a tag's calibrated threshold is floored.
RARE_FLOOR = 0.5


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
  """AP of one tag: sum over score thresholds of (recall step) x precision.

  Tied scores form one threshold (as sklearn's average_precision_score), so a
  constant score gets AP = the positive rate. NaN when there is no positive.
  """
  labels = np.asarray(labels, bool)
  positives = labels.sum()
  if positives == 0:
    return float("nan")
  order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
  scores, labels = np.asarray(scores)[order], labels[order]
  # Last index of each run of equal scores = one threshold.
  last = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
  true_positives = np.cumsum(labels)[last]
  precision = true_positives / (last + 1)
  recall = true_positives / positives
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
  """(mAP over tags with at least one positive, AP per tag with NaN for no positive)."""
  aps = np.array([average_precision(labels[:, j], scores[:, j])
                  for j in range(labels.shape[1])])
  valid = ~np.isnan(aps)
  return (float(aps[valid].mean()) if valid.any() else float("nan")), aps


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
  """(threshold, F1) maximising F1 of `score >= threshold` for one tag; (0.5, 0) without positives."""
  labels = np.asarray(labels, bool)
  positives = labels.sum()
  if positives == 0:
    return DEFAULT_THRESHOLD, 0.0
  order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
  s, l = np.asarray(scores)[order], labels[order]
  last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
  tp = np.cumsum(l)[last]
  predicted = last + 1
  f1 = 2 * tp / (predicted + positives)
  best = int(np.argmax(f1))
  return float(s[last[best]]), float(f1[best])


def calibrate_thresholds(labels: np.ndarray, scores: np.ndarray,
                         min_support: int = MIN_SUPPORT,
                         rare_floor: float = RARE_FLOOR) -> np.ndarray:
  """Per-tag max-F1 thresholds; tags with fewer than min_support positives get at least rare_floor.

  A rare tag's max-F1 threshold is fit to a handful of images and tends to be far too
  low (it fires everywhere); the floor keeps it at least as strict as rare_floor.
  """
  thresholds = np.empty(labels.shape[1])
  for j in range(labels.shape[1]):
    threshold, _ = best_f1_threshold(labels[:, j], scores[:, j])
    if labels[:, j].sum() < min_support:
      threshold = max(threshold, rare_floor)
    thresholds[j] = threshold
  return thresholds


def f1_at(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> dict:
  """Micro and macro F1 (macro over tags with positives) and per-tag precision/recall/F1."""
  labels = np.asarray(labels, bool)
  predicted = scores >= thresholds[None, :]
  tp = (predicted & labels).sum(0).astype(float)
  fp = (predicted & ~labels).sum(0).astype(float)
  fn = (~predicted & labels).sum(0).astype(float)
  with np.errstate(invalid="ignore", divide="ignore"):
    precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
  micro = 2 * tp.sum() / max(1.0, 2 * tp.sum() + fp.sum() + fn.sum())
  support = labels.sum(0)
  macro = float(f1[support > 0].mean()) if (support > 0).any() else float("nan")
  return {"micro_f1": float(micro), "macro_f1": macro, "precision": precision,
          "recall": recall, "f1": f1, "support": support}


def predict_split(model, data_dir: str, split: str, image_size: int,
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """(labels, scores) of every example of a split, in the split's order."""
  from alti2v import input_pipeline  # pylint: disable=import-outside-toplevel
  labels, scores = [], []
  for images, y in input_pipeline.input_fn(data_dir, split, batch_size, training=False,
                                           image_size=image_size):
    scores.append(model.predict_on_batch(images))
    labels.append(y.numpy())
  return np.concatenate(labels), np.concatenate(scores)


def train_frequencies(data_dir: str, num_tags: int) -> np.ndarray:
  """Fraction of train images carrying each tag, from the builder's tag_counts.tsv."""
  from alti2v import dataset as dataset_lib  # pylint: disable=import-outside-toplevel
  from alti2v import features as features_lib  # pylint: disable=import-outside-toplevel
  num_train = dataset_lib.load_builder(data_dir).info.splits["train"].num_examples
  counts = np.zeros(num_tags)
  with open(os.path.join(data_dir, features_lib.TAG_COUNTS_FILE), encoding="utf-8") as f:
    next(f)
    for line in f:
      _, tag_id, train, *_ = line.rstrip("\n").split("\t")
      counts[int(tag_id)] = int(train)
  return counts / max(1, num_train)


def evaluate(model_dir: str, data_dir: str, split: str = "test",
             batch_size: int = 64, model=None) -> dict:
  """Calibrates thresholds on validation, evaluates split, writes thresholds and the per-tag CSV.

  Returns:
    {"map", "constant_map", "micro_f1", "macro_f1", "num_examples", ...}.
  """
  import keras  # pylint: disable=import-outside-toplevel
  from alti2v import training  # pylint: disable=import-outside-toplevel
  info = training.read_json(os.path.join(model_dir, training.MODEL_INFO_FILE))
  if info is None:
    raise FileNotFoundError(f"{model_dir} holds no finished training run "
                            f"({training.MODEL_INFO_FILE} is missing)")
  with open(os.path.join(model_dir, info["vocabulary_file"]), encoding="utf-8") as f:
    vocabulary = f.read().split("\n")[:-1]
  if model is None:
    model = keras.models.load_model(os.path.join(model_dir, info["model"]))
  image_size = info["image_size"]

  val_labels, val_scores = predict_split(model, data_dir, "validation", image_size,
                                         batch_size)
  thresholds = calibrate_thresholds(val_labels, val_scores)
  _write_thresholds(model_dir, vocabulary, thresholds, len(val_labels))

  labels, scores = (val_labels, val_scores) if split == "validation" else predict_split(
      model, data_dir, split, image_size, batch_size)
  map_, aps = mean_average_precision(labels, scores)
  constant = np.broadcast_to(train_frequencies(data_dir, len(vocabulary)), scores.shape)
  constant_map, _ = mean_average_precision(labels, constant)
  f1 = f1_at(labels, scores, thresholds)
  csv_path = os.path.join(model_dir, f"per_tag_{split}.csv")
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["tag", "support", "precision", "recall", "f1", "ap", "threshold"])
    for j, tag in enumerate(vocabulary):
      writer.writerow([tag, int(f1["support"][j]), f"{f1['precision'][j]:.4f}",
                       f"{f1['recall'][j]:.4f}", f"{f1['f1'][j]:.4f}",
                       "" if np.isnan(aps[j]) else f"{aps[j]:.4f}", f"{thresholds[j]:.4f}"])
  result = {"split": split, "num_examples": int(len(labels)), "map": map_,
            "constant_map": constant_map, "micro_f1": f1["micro_f1"],
            "macro_f1": f1["macro_f1"], "per_tag_csv": csv_path,
            "thresholds": os.path.join(model_dir, THRESHOLDS_FILE)}
  logging.info("evaluation: %s", result)
  return result


def _write_thresholds(model_dir: str, vocabulary: Sequence[str], thresholds: np.ndarray,
                      num_validation: int) -> None:
  from alti2v import training  # pylint: disable=import-outside-toplevel
  training.write_json(os.path.join(model_dir, THRESHOLDS_FILE), {
      "calibrated_on": "validation", "num_examples": num_validation,
      "min_support": MIN_SUPPORT, "rare_floor": RARE_FLOOR,
      "thresholds": {t: round(float(v), 6) for t, v in zip(vocabulary, thresholds)}})


def load_thresholds(model_dir: str, vocabulary: Sequence[str]) -> Optional[np.ndarray]:
  path = os.path.join(model_dir, THRESHOLDS_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    by_tag = json.load(f)["thresholds"]
  return np.array([by_tag.get(t, DEFAULT_THRESHOLD) for t in vocabulary])


def main(argv: Sequence[str]) -> None:
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  result = evaluate(f.model_dir, f.data_dir, f.split, f.batch_size)
  print(f"{result['split']} ({result['num_examples']} images): "
        f"mAP {result['map']:.4f}  (constant predictor: {result['constant_map']:.4f})  "
        f"micro-F1 {result['micro_f1']:.4f}  macro-F1 {result['macro_f1']:.4f}")
  print(f"per-tag metrics: {result['per_tag_csv']}; thresholds: {result['thresholds']}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=ungrouped-imports
  flags.DEFINE_string("model_dir", None, "A finished training run.")
  flags.DEFINE_string("data_dir", None, "The dataset directory.")
  flags.DEFINE_string("split", "test", "Split to evaluate.")
  flags.DEFINE_integer("batch_size", 64, "Batch size.")
  flags.mark_flags_as_required(["model_dir", "data_dir"])
  app.run(main)
