"""Evaluation: a tagger's mAP and F1 at calibrated per-tag thresholds; a screening filter's threshold.

  python -m alti2v.evaluate --model_dir RUN --data_dir DATASET --split test
      [--target_precision P | --target_recall R]      (screening filter)

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

from alti2v.metrics import (best_constant_caption, best_constant_caption_by_cer,
                            character_error_rate, corpus_bleu, edit_distance)

THRESHOLDS_FILE = "thresholds.json"
DEFAULT_THRESHOLD = 0.5
MIN_SUPPORT = 5  # Validation positives below which a tag's calibrated threshold is floored.
RARE_FLOOR = 0.5


def threshold_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
  """(thresholds, precision, recall, F1) of `score >= t` at each distinct score, highest first.

  Tied scores form one threshold (as sklearn's curves do). labels needs a positive.
  """
  labels = np.asarray(labels, bool)
  order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
  s, l = np.asarray(scores)[order], labels[order]
  last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # Last index of each tie run.
  true_positives = np.cumsum(l)[last]
  positives = labels.sum()
  return (s[last], true_positives / (last + 1), true_positives / positives,
          2 * true_positives / (last + 1 + positives))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
  """AP of one tag: sum over score thresholds of (recall step) x precision.

  Tied scores form one threshold (as sklearn's average_precision_score), so a
  constant score gets AP = the positive rate. NaN when there is no positive.
  """
  if not np.asarray(labels, bool).any():
    return float("nan")
  _, precision, recall, _ = threshold_curve(labels, scores)
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
  """(mAP over tags with at least one positive, AP per tag with NaN for no positive)."""
  aps = np.array([average_precision(labels[:, j], scores[:, j])
                  for j in range(labels.shape[1])])
  valid = ~np.isnan(aps)
  return (float(aps[valid].mean()) if valid.any() else float("nan")), aps


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
  """(threshold, F1) maximising F1 of `score >= threshold` for one tag; (0.5, 0) without positives."""
  if not np.asarray(labels, bool).any():
    return DEFAULT_THRESHOLD, 0.0
  thresholds, _, _, f1 = threshold_curve(labels, scores)
  best = int(np.argmax(f1))
  return float(thresholds[best]), float(f1[best])


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


def average_ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks, ties sharing their average rank."""
  values = np.asarray(values)
  order = np.argsort(values, kind="mergesort")
  ranks = np.empty(len(values))
  sorted_values = values[order]
  starts = np.r_[0, np.nonzero(np.diff(sorted_values))[0] + 1]
  ends = np.r_[starts[1:], len(values)]
  for a, b in zip(starts, ends):
    ranks[order[a:b]] = (a + b + 1) / 2.0
  return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rank correlation (Pearson on average ranks); NaN if either is constant."""
  ra, rb = average_ranks(a), average_ranks(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denominator = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
  return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def distillation_metrics(teacher: np.ndarray, student: np.ndarray) -> dict:
  """MAE and MSE against the teacher's scores; how often the teacher's top label is in the
  student's top 5; Spearman correlation per label (over images), averaged over labels
  where both vary."""
  teacher, student = np.asarray(teacher, np.float64), np.asarray(student, np.float64)
  has_label = teacher.max(axis=1) > 0
  top = teacher.argmax(axis=1)
  top5 = np.argsort(-student, axis=1, kind="stable")[:, :5]
  hits = (top5 == top[:, None]).any(axis=1)[has_label]
  rhos = np.array([spearman(teacher[:, j], student[:, j]) for j in range(teacher.shape[1])])
  valid = ~np.isnan(rhos)
  return {"mae": float(np.abs(teacher - student).mean()),
          "mse": float(((teacher - student) ** 2).mean()),
          "top1_in_top5": float(hits.mean()) if len(hits) else float("nan"),
          "spearman": float(rhos[valid].mean()) if valid.any() else float("nan"),
          "spearman_labels": int(valid.sum())}


def mean_train_scores(data_dir: str, num_labels: int) -> np.ndarray:
  """Each label's mean teacher score over the train split (0 where the teacher gave none).

  Said for every image, it is the distillation baseline: a student must beat it.
  Reads only the labels and scores of each record (no image is decoded).
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from alti2v import dataset as dataset_lib  # pylint: disable=import-outside-toplevel
  from alti2v import features as features_lib  # pylint: disable=import-outside-toplevel
  builder = dataset_lib.load_builder(data_dir)
  ds = builder.as_dataset(split="train", decoders=tfds.decode.PartialDecoding(
      {features_lib.LABELS: True, features_lib.LABEL_SCORES: True}))
  total, count = np.zeros(num_labels), 0
  for example in tfds.as_numpy(ds):
    np.add.at(total, example[features_lib.LABELS], example[features_lib.LABEL_SCORES])
    count += 1
  return total / max(1, count)


def evaluate_distill(model_dir: str, data_dir: str, split: str = "test",
                     batch_size: int = 64) -> dict:
  """The student against the teacher's scores on a split (distillation_metrics), beside the
  baseline that says each label's mean train score for every image ("baseline")."""
  import keras  # pylint: disable=import-outside-toplevel
  from alti2v import tasks, training  # pylint: disable=import-outside-toplevel
  info = training.read_json(os.path.join(model_dir, training.MODEL_INFO_FILE))
  model = keras.models.load_model(os.path.join(model_dir, info["model"]))
  teacher, student = predict_split(model, data_dir, split, info["image_size"], batch_size,
                                   task=tasks.get_task("distill"))
  baseline = np.broadcast_to(mean_train_scores(data_dir, teacher.shape[1]), teacher.shape)
  result = {"split": split, "num_examples": int(len(teacher)),
            **distillation_metrics(teacher, student),
            "baseline": distillation_metrics(teacher, baseline)}
  logging.info("evaluation: %s", result)
  return result


def evaluate_captions(model_dir: str, data_dir: str, split: str = "test",
                      beam_size: int = 1, batch_size: int = 64,
                      max_constant_candidates: int = 300) -> dict:
  """CER and character BLEU-4 against every reference, beside the best constant captions'.

  The baselines are the train captions (the max_constant_candidates commonest) that, said
  for every image of the split, score the lowest CER ("constant_cer") and the highest
  BLEU-4 ("constant_bleu4"): a model that ignores the image can at best tie them.
  """
  import collections  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from alti2v import caption as caption_lib  # pylint: disable=import-outside-toplevel
  from alti2v import captions as caption_ids  # pylint: disable=import-outside-toplevel
  from alti2v import dataset as dataset_lib  # pylint: disable=import-outside-toplevel
  from alti2v import features as features_lib  # pylint: disable=import-outside-toplevel
  from alti2v import input_pipeline, predict  # pylint: disable=import-outside-toplevel
  trained = predict.TrainedModel(model_dir)
  builder = dataset_lib.load_builder(data_dir)

  def records(name, with_image=True):
    wanted = {features_lib.CAPTIONS: True}
    if with_image:
      wanted[features_lib.IMAGE] = True
    ds = builder.as_dataset(split=name, decoders=tfds.decode.PartialDecoding(
        wanted, decoders={features_lib.IMAGE: tfds.decode.SkipDecoding()} if with_image
        else None))
    if not with_image:
      return ds.map(lambda ex: ex[features_lib.CAPTIONS])
    return ds.map(lambda ex: (input_pipeline.to_model_input(ex[features_lib.IMAGE],
                                                             trained.image_size),
                              ex[features_lib.CAPTIONS]))

  decoder = caption_lib.Decoder(trained.model)
  hypotheses, references = [], []
  for images, refs in tfds.as_numpy(records(split).padded_batch(batch_size)):
    for ids in decoder.generate(images, beam_size):
      hypotheses.append(caption_ids.decode(ids, trained.vocabulary))
    references += [[r.decode() for r in rs if r] for rs in refs]
  train_captions = collections.Counter(
      c.decode() for cs in tfds.as_numpy(records("train", with_image=False)) for c in cs)
  candidates = [c for c, _ in train_captions.most_common(max_constant_candidates)]
  constant, constant_cer = best_constant_caption_by_cer(candidates, references)
  bleu_constant, constant_bleu = best_constant_caption(candidates, references)
  result = {
      "split": split, "num_examples": len(hypotheses), "beam_size": beam_size,
      "cer": character_error_rate(hypotheses, references),
      "bleu4": corpus_bleu(hypotheses, references),
      "constant_caption": constant, "constant_cer": constant_cer,
      "constant_bleu_caption": bleu_constant, "constant_bleu4": constant_bleu,
      "examples": list(zip(hypotheses[:3], [r[0] for r in references[:3]])),
  }
  logging.info("evaluation: %s", result)
  return result


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2."""
  labels = np.asarray(labels, bool)
  positives, negatives = labels.sum(), (~labels).sum()
  if positives == 0 or negatives == 0:
    return float("nan")
  ranks = average_ranks(scores)
  return float((ranks[labels].sum() - positives * (positives + 1) / 2) /
               (positives * negatives))


def choose_threshold(labels: np.ndarray, scores: np.ndarray,
                     target_precision: Optional[float] = None,
                     target_recall: Optional[float] = None) -> dict:
  """The keep threshold (keep = score >= threshold) for the user's goal, on labelled scores.

  target_precision: the lowest threshold whose precision reaches it (the most kept at
  that precision); target_recall: the highest threshold whose recall reaches it (the
  fewest kept); neither: maximum F1.

  Returns:
    {"threshold", "goal", "precision", "recall", "f1"}; raises ValueError when no
    threshold reaches the target.
  """
  labels = np.asarray(labels, bool)
  if labels.sum() == 0:
    raise ValueError("no positive example to choose a threshold on")
  for name, target in (("target_precision", target_precision),
                       ("target_recall", target_recall)):
    if target is not None and not 0.0 < target <= 1.0:
      raise ValueError(f"{name} must be in (0, 1], got {target}")
  thresholds, precision, recall, f1 = threshold_curve(labels, scores)
  if target_precision is not None:
    ok = np.nonzero(precision >= target_precision)[0]
    if not len(ok):
      raise ValueError(f"no threshold reaches precision {target_precision} "
                       f"(best: {precision.max():.3f})")
    i, goal = ok[-1], f"precision >= {target_precision}"
  elif target_recall is not None:
    ok = np.nonzero(recall >= target_recall)[0]
    i, goal = ok[0], f"recall >= {target_recall}"
  else:
    i, goal = int(np.argmax(f1)), "max F1"
  return {"threshold": float(thresholds[i]), "goal": goal, "precision": float(precision[i]),
          "recall": float(recall[i]), "f1": float(f1[i])}


def confusion_matrix(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
  labels = np.asarray(labels, bool)
  keep = np.asarray(scores) >= threshold
  return {"true_positive": int((keep & labels).sum()), "false_positive": int((keep & ~labels).sum()),
          "false_negative": int((~keep & labels).sum()), "true_negative": int((~keep & ~labels).sum())}


THRESHOLD_FILE = "threshold.json"  # The screening filter's one keep threshold.


def evaluate_screen(model_dir: str, data_dir: str, split: str = "test",
                    batch_size: int = 64, target_precision: Optional[float] = None,
                    target_recall: Optional[float] = None) -> dict:
  """Chooses the keep threshold on validation for the goal, saves it, reports split at it.

  Returns:
    {"threshold", "goal", "validation_precision", "validation_recall", "roc_auc",
     "pr_auc", "confusion", "precision", "recall", "num_examples"}.
  """
  import keras  # pylint: disable=import-outside-toplevel
  from alti2v import tasks, training  # pylint: disable=import-outside-toplevel
  info = training.read_json(os.path.join(model_dir, training.MODEL_INFO_FILE))
  model = keras.models.load_model(os.path.join(model_dir, info["model"]))
  task = tasks.get_task("screen")

  def labelled_scores(name):
    return predict_split(model, data_dir, name, info["image_size"], batch_size,
                         task=task)
  val_labels, val_scores = labelled_scores("validation")
  chosen = choose_threshold(val_labels[:, 0], val_scores[:, 0], target_precision,
                            target_recall)
  training.write_json(os.path.join(model_dir, THRESHOLD_FILE), {
      "threshold": chosen["threshold"], "goal": chosen["goal"], "calibrated_on": "validation",
      "validation_precision": chosen["precision"], "validation_recall": chosen["recall"]})
  labels, scores = (val_labels, val_scores) if split == "validation" else labelled_scores(split)
  labels, scores = labels[:, 0], scores[:, 0]
  confusion = confusion_matrix(labels, scores, chosen["threshold"])
  kept = confusion["true_positive"] + confusion["false_positive"]
  result = {
      "split": split, "num_examples": int(len(labels)), "threshold": chosen["threshold"],
      "goal": chosen["goal"], "validation_precision": chosen["precision"],
      "validation_recall": chosen["recall"], "roc_auc": roc_auc(labels, scores),
      "pr_auc": average_precision(labels, scores), "confusion": confusion,
      # A constant score (the prior): ROC-AUC 0.5, PR-AUC and precision = positive rate.
      "baseline_roc_auc": 0.5, "baseline_pr_auc": float(labels.mean()),
      "precision": confusion["true_positive"] / kept if kept else float("nan"),
      "recall": float(confusion["true_positive"] / max(1, labels.sum())),
  }
  logging.info("evaluation: %s", result)
  return result


def predict_split(model, data_dir: str, split: str, image_size: int,
                  batch_size: int = 64, task=None) -> tuple[np.ndarray, np.ndarray]:
  """(labels, scores) of every example of a split, in the split's order."""
  from alti2v import input_pipeline  # pylint: disable=import-outside-toplevel
  labels, scores = [], []
  kwargs = {}
  if task is not None:
    kwargs = {"label_fn": task.label_fn(int(model.output.shape[-1])),
              "label_features": task.label_features}
  for images, y in input_pipeline.input_fn(data_dir, split, batch_size, training=False,
                                           image_size=image_size, **kwargs):
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
      "thresholds": {t: float(v) for t, v in zip(vocabulary, thresholds)}})


def load_thresholds(model_dir: str, vocabulary: Sequence[str]) -> Optional[np.ndarray]:
  path = os.path.join(model_dir, THRESHOLDS_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    by_tag = json.load(f)["thresholds"]
  return np.array([by_tag.get(t, DEFAULT_THRESHOLD) for t in vocabulary])


def run_evaluation(model_dir: str, data_dir: str, split: str = "test",
                   batch_size: int = 64, beam_size: int = 1,
                   target_precision: Optional[float] = None,
                   target_recall: Optional[float] = None) -> tuple[str, dict]:
  """(task, result) of the evaluation that fits the finished run in model_dir.

  Every result holds the model's figures and its naive baseline's (see each evaluate_*).
  """
  from alti2v import training  # pylint: disable=import-outside-toplevel
  info = training.read_json(os.path.join(model_dir, training.MODEL_INFO_FILE))
  if info is None:
    raise FileNotFoundError(f"{model_dir} holds no finished training run "
                            f"({training.MODEL_INFO_FILE} is missing)")
  task = info["task"]
  if task in ("caption", "caption_ar"):
    return task, evaluate_captions(model_dir, data_dir, split, beam_size, batch_size)
  if task == "distill":
    return task, evaluate_distill(model_dir, data_dir, split, batch_size)
  if task == "screen":
    return task, evaluate_screen(model_dir, data_dir, split, batch_size, target_precision,
                                 target_recall)
  return task, evaluate(model_dir, data_dir, split, batch_size)


def print_report(task: str, r: dict, model_dir: str) -> None:
  """The result of run_evaluation as a person reads it: each figure beside its baseline."""
  if task in ("caption", "caption_ar"):
    print(f"{r['split']} ({r['num_examples']} images, beam {r['beam_size']}): "
          f"CER {r['cer']:.4f}  character BLEU-4 {r['bleu4']:.4f}")
    print(f"baseline, the best constant caption by CER 「{r['constant_caption']}」: "
          f"CER {r['constant_cer']:.4f} (the model: {r['cer'] / r['constant_cer']:.2f}x)")
    print(f"baseline, the best constant caption by BLEU-4 「{r['constant_bleu_caption']}」: "
          f"BLEU-4 {r['constant_bleu4']:.4f}")
    for hypothesis, reference in r["examples"]:
      print(f"  model: 「{hypothesis}」  reference: 「{reference}」")
  elif task == "distill":
    b = r["baseline"]
    print(f"{r['split']} ({r['num_examples']} images) against the teacher's scores "
          "(baseline: each label's mean train score for every image):")
    print(f"  MAE {r['mae']:.4f}  (baseline {b['mae']:.4f}, {r['mae'] / b['mae']:.2f}x)")
    print(f"  MSE {r['mse']:.4f}  (baseline {b['mse']:.4f}, {r['mse'] / b['mse']:.2f}x)")
    print(f"  teacher's top label in the student's top 5: {r['top1_in_top5']:.1%}  "
          f"(baseline {b['top1_in_top5']:.1%})")
    print(f"  Spearman per label: {r['spearman']:.3f} over {r['spearman_labels']} labels  "
          f"(baseline: constant scores have no rank correlation)")
  elif task == "screen":
    c = r["confusion"]
    print(f"threshold {r['threshold']:.4f} ({r['goal']} on validation: precision "
          f"{r['validation_precision']:.3f}, recall {r['validation_recall']:.3f}); "
          f"saved to {os.path.join(model_dir, THRESHOLD_FILE)}")
    print(f"{r['split']} ({r['num_examples']} images): ROC-AUC {r['roc_auc']:.4f} "
          f"(baseline {r['baseline_roc_auc']:.2f})  PR-AUC {r['pr_auc']:.4f} (baseline = "
          f"the positive rate {r['baseline_pr_auc']:.4f})  precision {r['precision']:.3f}  "
          f"recall {r['recall']:.3f} at the threshold")
    print("confusion matrix at the threshold:   kept(ok)  dropped(ng)")
    print(f"  positive (should keep)          {c['true_positive']:8d}  {c['false_negative']:11d}")
    print(f"  negative (should drop)          {c['false_positive']:8d}  {c['true_negative']:11d}")
  else:
    print(f"{r['split']} ({r['num_examples']} images): "
          f"mAP {r['map']:.4f}  (baseline, each tag's train frequency: "
          f"{r['constant_map']:.4f}, {r['map'] / r['constant_map']:.2f}x)  "
          f"micro-F1 {r['micro_f1']:.4f}  macro-F1 {r['macro_f1']:.4f}")
    print(f"per-tag metrics: {r['per_tag_csv']}; thresholds: {r['thresholds']}")


def main(argv: Sequence[str]) -> None:
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  from alti2v import training  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  task, result = run_evaluation(f.model_dir, f.data_dir, f.split, f.batch_size, f.beam_size,
                                f.target_precision, f.target_recall)
  print_report(task, result, f.model_dir)
  if f.output_json:
    training.write_json(f.output_json, {"task": task, **result})


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=ungrouped-imports
  flags.DEFINE_string("model_dir", None, "A finished training run.")
  flags.DEFINE_string("data_dir", None, "The dataset directory.")
  flags.DEFINE_string("split", "test", "Split to evaluate.")
  flags.DEFINE_integer("batch_size", 64, "Batch size.")
  flags.DEFINE_integer("beam_size", 1, "Captioners: beam width (1 = greedy).")
  flags.DEFINE_float("target_precision", None,
                     "screen: the keep threshold is the lowest with this precision "
                     "on validation.")
  flags.DEFINE_float("target_recall", None,
                     "screen: the keep threshold is the highest with this recall on "
                     "validation. Neither: max F1.")
  flags.DEFINE_string("output_json", None,
                      "Also write the result (every figure and its baseline) to this file.")
  flags.mark_flags_as_required(["model_dir", "data_dir"])
  app.run(main)
