"""The screening filter: keep (1) or drop (0) a scraped image, learned from hand-sorted folders.

Owns the `label` field (the class folder), the binary label, the head and loss, the evaluation
(the keep threshold chosen on validation for the user's goal and saved; ROC-AUC and PR-AUC beside
a constant score's), the rejection reason of an image outside the class folders, and the
hand-sorted sample layout.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v import metrics
from alti2v import models
from alti2v.data import features as features_lib
from alti2v.data import input_pipeline
from alti2v.data import samples
from alti2v.reporting import panels
from alti2v.tasks import base
from alti2v.training import model_card
from alti2v.training import run_dir

LABEL = "label"  # The class id: index into CLASS_NAMES.
CLASS_NAMES = ("negative", "positive")  # Index 1 = keep.
NO_CLASS_FOLDER = "no_class_folder"  # An image in neither class folder.
REJECTION_REASONS = (NO_CLASS_FOLDER,)
MOTIF = "red_circle"  # What the sample positives show.


def binary_features(class_names: Sequence[str] = CLASS_NAMES) -> tfds.features.FeaturesDict:
  """The features of a folder-labelled (keep/drop) dataset: the common ones and a class id.

  Args:
    class_names: [negative, positive] names; the label is the index (1 = positive).
  """
  return features_lib.features_dict({LABEL: tfds.features.ClassLabel(names=list(class_names))})


# Sample data: hand-sorted folders.


def write_folders(out_dir: str, num_images: int, seed: int = 0,
                  motif: str = MOTIF) -> dict[str, list[str]]:
  """Hand-sorted layout for the screening filter: positive/ shows the motif, negative/ not.

  Half of the images in each folder; the same arguments give the same files.

  Returns:
    {"positive": paths, "negative": paths}.
  """
  want = {"positive": (num_images + 1) // 2, "negative": num_images // 2}
  paths: dict[str, list[str]] = {"positive": [], "negative": []}
  for name in paths:
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
  index = 0
  while any(len(paths[k]) < want[k] for k in want):
    sample = samples.draw_sample(index, seed)
    folder = "positive" if motif in sample.tags else "negative"
    if len(paths[folder]) < want[folder]:
      path = os.path.join(out_dir, folder, f"{index:06d}{samples.image_extension(index)}")
      samples.save_image(sample.image, path)
      paths[folder].append(path)
    index += 1
  return paths


def _write_folders_layout(out_dir: str, num_images: int, seed: int) -> str:
  paths = write_folders(out_dir, num_images, seed)
  return (f"wrote {len(paths['positive'])} positive ({MOTIF}) and "
          f"{len(paths['negative'])} negative images under {out_dir}")


FOLDERS = samples.SampleLayout(
    "folders", f"positive/ (images with a {MOTIF}) and negative/ (screening filter)",
    _write_folders_layout)


class ScreenTask(base.Task):
  """One sigmoid output: the probability that an image is worth keeping."""
  name = "screen"
  description = "keep/drop filter"
  label_feature = LABEL
  rejection_reasons = REJECTION_REASONS
  sample_layouts = (FOLDERS,)
  card = model_card.CardText(
      intended_use=(
          "Sorting a scraped folder into what to keep and what to drop, as the person who "
          "sorted the training folders would, before tagging or training on it."),
      limits=(
          "It learnt one person's keep/drop choice on one kind of image; another source or "
          "another criterion needs new sorted folders. The keep threshold is chosen on the "
          "validation split for one goal (precision, recall or F1): at another threshold the "
          "figures differ. Check the ng/ folder by eye before deleting anything."),
      usage=("python -m alti2v.screen --model_dir RUN --input_dir SCRAPED --output_dir OUT",
             "python -m alti2v.evaluate --model_dir RUN --data_dir DATA --split test",
             "python -m alti2v.export --model_dir RUN --format onnx   # or tflite, saved_model"))

  def num_outputs(self, num_names):
    return 1

  def label_fn(self, num_outputs):
    @input_pipeline.batch_labels
    def label(batch: dict):  # [B] class ids → [B, 1]
      return tf.cast(batch[LABEL], tf.float32)[:, None]
    return label

  def head(self, features, num_outputs, config):
    return models.dense_head(features, 1, config.hidden_units)

  def default_loss(self):
    return keras.losses.BinaryCrossentropy()

  def metrics(self, num_outputs):
    return [
        keras.metrics.AUC(curve="ROC", name="roc_auc"),
        keras.metrics.AUC(curve="PR", name="pr_auc"),
        keras.metrics.Precision(thresholds=0.5, name="precision"),
        keras.metrics.Recall(thresholds=0.5, name="recall"),
    ]

  def evaluate(self, run, data_dir, options):
    """Chooses the keep threshold on validation for the goal, saves it, reports split at it.

    Returns:
      {"threshold", "goal", "validation_precision", "validation_recall", "roc_auc",
       "pr_auc", "confusion", "precision", "recall", "num_examples", "split",
       "baseline_roc_auc", "baseline_pr_auc"}.
    """
    split = options.split
    val_labels, val_scores = self.predict_split(run, data_dir, "validation",
                                                options.batch_size,
                                                progress=options.progress)
    chosen = metrics.choose_threshold(val_labels[:, 0], val_scores[:, 0],
                                      options.target_precision, options.target_recall)
    run_dir.write_keep_threshold(
        run.model_dir, chosen["threshold"], goal=chosen["goal"], calibrated_on="validation",
        validation_precision=chosen["precision"], validation_recall=chosen["recall"])
    labels, scores = (val_labels, val_scores) if split == "validation" else (
        self.predict_split(run, data_dir, split, options.batch_size,
                           progress=options.progress))
    labels, scores = labels[:, 0], scores[:, 0]
    confusion = metrics.confusion_matrix(labels, scores, chosen["threshold"])
    kept = confusion["true_positive"] + confusion["false_positive"]
    result = {
        "split": split, "num_examples": int(len(labels)), "threshold": chosen["threshold"],
        "goal": chosen["goal"], "validation_precision": chosen["precision"],
        "validation_recall": chosen["recall"], "roc_auc": metrics.roc_auc(labels, scores),
        "pr_auc": metrics.average_precision(labels, scores), "confusion": confusion,
        # A constant score (the prior): ROC-AUC 0.5, PR-AUC and precision = positive rate.
        "baseline_roc_auc": 0.5, "baseline_pr_auc": float(labels.mean()),
        "precision": confusion["true_positive"] / kept if kept else float("nan"),
        "recall": float(confusion["true_positive"] / max(1, labels.sum())),
    }
    logging.info("evaluation: %s", result)
    return result

  def report(self, result, model_dir):
    r, c = result, result["confusion"]
    return "\n".join([
        f"threshold {r['threshold']:.4f} ({r['goal']} on validation: precision "
        f"{r['validation_precision']:.3f}, recall {r['validation_recall']:.3f}); "
        f"saved to {os.path.join(model_dir, run_dir.KEEP_THRESHOLD_FILE)}",
        f"{r['split']} ({r['num_examples']} images): ROC-AUC {r['roc_auc']:.4f} "
        f"(baseline {r['baseline_roc_auc']:.2f})  PR-AUC {r['pr_auc']:.4f} (baseline = "
        f"the positive rate {r['baseline_pr_auc']:.4f})  precision {r['precision']:.3f}  "
        f"recall {r['recall']:.3f} at the threshold",
        "confusion matrix at the threshold:   kept(ok)  dropped(ng)",
        f"  positive (should keep)          {c['true_positive']:8d}  "
        f"{c['false_negative']:11d}",
        f"  negative (should drop)          {c['false_positive']:8d}  "
        f"{c['true_negative']:11d}"])

  def describe_example(self, example, names):
    return names[int(example[LABEL])]

  def report_panels(self, run, data_dir, options, max_examples):
    """Scores of positives and negatives with the keep threshold; the confusion matrix at it."""
    labels, scores = self.predict_split(run, data_dir, options.split, options.batch_size,
                                        max_examples=max_examples)
    labels, scores = labels[:, 0].astype(bool), scores[:, 0]
    threshold = run_dir.read_keep_threshold(run.model_dir)
    about = f"{options.split}, {len(labels)} images"
    found = [panels.Histogram(
        f"keep scores of positives and negatives ({about})", "score",
        {"positive (should keep)": scores[labels], "negative (should drop)": scores[~labels]},
        marks={} if threshold is None else {f"keep threshold {threshold:.3f}": threshold},
        bins=np.linspace(0, 1, 26).tolist(),
        note="" if threshold is not None else "no keep threshold yet: run evaluate")]
    if threshold is not None:
      c = metrics.confusion_matrix(labels, scores, threshold)
      found.append(panels.Matrix(
          f"confusion matrix at the keep threshold ({about})",
          ["positive (should keep)", "negative (should drop)"], ["kept (ok)", "dropped (ng)"],
          np.array([[c["true_positive"], c["false_negative"]],
                    [c["false_positive"], c["true_negative"]]])))
    return found


SCREEN = ScreenTask()
