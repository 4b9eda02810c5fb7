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


def evaluate_distill(model_dir: str, data_dir: str, split: str = "test",
                     batch_size: int = 64) -> dict:
  """The student against the teacher's scores on a split (distillation_metrics)."""
  import keras  # pylint: disable=import-outside-toplevel
  from alti2v import tasks, training  # pylint: disable=import-outside-toplevel
  info = training.read_json(os.path.join(model_dir, training.MODEL_INFO_FILE))
  model = keras.models.load_model(os.path.join(model_dir, info["model"]))
  teacher, student = predict_split(model, data_dir, split, info["image_size"], batch_size,
                                   task=tasks.get_task("distill"))
  result = {"split": split, "num_examples": int(len(teacher)),
            **distillation_metrics(teacher, student)}
  logging.info("evaluation: %s", result)
  return result


def edit_distance(a: str, b: str) -> int:
  """Levenshtein distance between two strings (characters)."""
  previous = list(range(len(b) + 1))
  for i, ca in enumerate(a, 1):
    current = [i]
    for j, cb in enumerate(b, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
    previous = current
  return previous[-1]


def character_error_rate(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
  """Mean over images of min over its references of edit distance / reference length."""
  rates = [min(edit_distance(h, r) / max(1, len(r)) for r in refs)
           for h, refs in zip(hypotheses, references)]
  return float(np.mean(rates)) if rates else float("nan")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                max_n: int = 4) -> float:
  """Character-level corpus BLEU-4 against every reference of each image (Papineni et al.).

  n-gram counts are clipped by their maximum count in any one reference; the brevity
  penalty uses, per image, the reference length closest to the hypothesis's.
  """
  import collections  # pylint: disable=import-outside-toplevel
  import math  # pylint: disable=import-outside-toplevel
  matches, totals = [0] * max_n, [0] * max_n
  hyp_length = ref_length = 0
  for hyp, refs in zip(hypotheses, references):
    hyp_length += len(hyp)
    ref_length += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    for n in range(1, max_n + 1):
      grams = collections.Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
      best: collections.Counter = collections.Counter()
      for r in refs:
        best |= collections.Counter(r[i:i + n] for i in range(len(r) - n + 1))
      matches[n - 1] += sum(min(c, best[g]) for g, c in grams.items())
      totals[n - 1] += max(0, len(hyp) - n + 1)
  if hyp_length == 0 or min(matches) == 0:
    return 0.0
  log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
  brevity = 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)
  return float(brevity * math.exp(log_precision))


def best_constant_caption(candidates: Sequence[str],
                          references: Sequence[Sequence[str]]) -> tuple[str, float]:
  """The one candidate caption that, said for every image, scores the best BLEU-4."""
  scored = [(corpus_bleu([c] * len(references), references), c) for c in candidates]
  score, caption = max(scored)
  return caption, score


def evaluate_captions(model_dir: str, data_dir: str, split: str = "test",
                      beam_size: int = 1, batch_size: int = 32,
                      max_constant_candidates: int = 300) -> dict:
  """CER and character BLEU-4 against all references, next to the best constant caption's."""
  import collections  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from alti2v import caption as caption_lib  # pylint: disable=import-outside-toplevel
  from alti2v import captions as caption_ids  # pylint: disable=import-outside-toplevel
  from alti2v import dataset as dataset_lib  # pylint: disable=import-outside-toplevel
  from alti2v import features as features_lib  # pylint: disable=import-outside-toplevel
  from alti2v import input_pipeline, predict  # pylint: disable=import-outside-toplevel
  trained = predict.TrainedModel(model_dir)
  builder = dataset_lib.load_builder(data_dir)

  def records(name):
    ds = builder.as_dataset(split=name, decoders=tfds.decode.PartialDecoding(
        {features_lib.IMAGE: True, features_lib.CAPTIONS: True},
        decoders={features_lib.IMAGE: tfds.decode.SkipDecoding()}))
    return ds.map(lambda ex: (input_pipeline.to_model_input(ex[features_lib.IMAGE],
                                                             trained.image_size),
                              ex[features_lib.CAPTIONS]))

  hypotheses, references = [], []
  for images, refs in tfds.as_numpy(records(split).padded_batch(batch_size)):
    for ids in caption_lib.generate(trained.model, images, beam_size):
      hypotheses.append(caption_ids.decode(ids, trained.vocabulary))
    references += [[r.decode() for r in rs if r] for rs in refs]
  train_captions = collections.Counter(
      c.decode() for _, cs in tfds.as_numpy(records("train").take(5000)) for c in cs)
  candidates = [c for c, _ in train_captions.most_common(max_constant_candidates)]
  constant, constant_bleu = best_constant_caption(candidates, references)
  result = {
      "split": split, "num_examples": len(hypotheses), "beam_size": beam_size,
      "bleu4": corpus_bleu(hypotheses, references),
      "cer": character_error_rate(hypotheses, references),
      "constant_caption": constant, "constant_bleu4": constant_bleu,
      "constant_cer": character_error_rate([constant] * len(references), references),
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


def main(argv: Sequence[str]) -> None:
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  from alti2v import training  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  info = training.read_json(os.path.join(f.model_dir, training.MODEL_INFO_FILE)) or {}
  if info.get("task") in ("caption", "caption_ar"):
    r = evaluate_captions(f.model_dir, f.data_dir, f.split, f.beam_size, f.batch_size)
    print(f"{r['split']} ({r['num_examples']} images, beam {r['beam_size']}): "
          f"character BLEU-4 {r['bleu4']:.4f}  CER {r['cer']:.4f}")
    print(f"best constant caption 「{r['constant_caption']}」: BLEU-4 "
          f"{r['constant_bleu4']:.4f}  CER {r['constant_cer']:.4f}")
    for hypothesis, reference in r["examples"]:
      print(f"  model: 「{hypothesis}」  reference: 「{reference}」")
    return
  if info.get("task") == "distill":
    r = evaluate_distill(f.model_dir, f.data_dir, f.split, f.batch_size)
    print(f"{r['split']} ({r['num_examples']} images) against the teacher's scores: "
          f"MAE {r['mae']:.4f}  MSE {r['mse']:.4f}  teacher's top label in the student's "
          f"top 5: {r['top1_in_top5']:.1%}  Spearman per label: {r['spearman']:.3f} "
          f"(mean over {r['spearman_labels']} labels)")
    return
  if info.get("task") == "screen":
    r = evaluate_screen(f.model_dir, f.data_dir, f.split, f.batch_size,
                        f.target_precision, f.target_recall)
    c = r["confusion"]
    print(f"threshold {r['threshold']:.4f} ({r['goal']} on validation: precision "
          f"{r['validation_precision']:.3f}, recall {r['validation_recall']:.3f}); "
          f"saved to {os.path.join(f.model_dir, THRESHOLD_FILE)}")
    print(f"{r['split']} ({r['num_examples']} images): ROC-AUC {r['roc_auc']:.4f}  "
          f"PR-AUC {r['pr_auc']:.4f}  precision {r['precision']:.3f}  "
          f"recall {r['recall']:.3f} at the threshold")
    print("confusion matrix at the threshold:   kept(ok)  dropped(ng)")
    print(f"  positive (should keep)          {c['true_positive']:8d}  {c['false_negative']:11d}")
    print(f"  negative (should drop)          {c['false_positive']:8d}  {c['true_negative']:11d}")
    return
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
  flags.DEFINE_integer("beam_size", 1, "Captioners: beam width (1 = greedy).")
  flags.DEFINE_float("target_precision", None,
                     "screen: the keep threshold is the lowest with this precision "
                     "on validation.")
  flags.DEFINE_float("target_recall", None,
                     "screen: the keep threshold is the highest with this recall on "
                     "validation. Neither: max F1.")
  flags.mark_flags_as_required(["model_dir", "data_dir"])
  app.run(main)
