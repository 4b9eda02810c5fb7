"""Vision API distillation: a student fits the Cloud Vision API's label scores (soft targets).

Owns the `labels`/`label_scores` fields, the dense score label, the head and losses (BCE on the
soft targets, or KL between the score distributions), the evaluation (MAE, MSE, top-label hits,
Spearman per label, beside a predictor that says each label's mean train score), the rejection
reasons of a labelling reply, and the sample layout of images with Vision JSON.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v import metrics
from alti2v import models
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import input_pipeline
from alti2v.data import samples
from alti2v.reporting import panels
from alti2v.tasks import base
from alti2v.training import model_card

LABELS = "labels"  # Label ids into the vocabulary (labels.labels.txt)...
LABEL_SCORES = "label_scores"  # ...and the teacher's score of each, in the same order.
MALFORMED_LABEL_FILE = "malformed_label_file"  # A reply that is no AnnotateImageResponse.
API_ERROR = "api_error"  # The API answered with an error for this image.
REJECTION_REASONS = (MALFORMED_LABEL_FILE, API_ERROR)


def scored_features(vocabulary: Sequence[str]) -> tfds.features.FeaturesDict:
  """The features of a dataset with soft labels: the common ones, label ids and their scores."""
  return features_lib.features_dict({
      LABELS: tfds.features.Sequence(tfds.features.ClassLabel(names=list(vocabulary))),
      LABEL_SCORES: tfds.features.Sequence(tfds.features.Scalar(np.float32)),
  })


@keras.saving.register_keras_serializable(package="alti2v")
def normalized_kl(y_true, y_pred):
  """KL(teacher || student) between the score vectors normalised to sum 1 over labels.

  Unlike BCE, which fits every label's score on its own, this fits the distribution of
  score mass over labels (their ranking), whatever the absolute level.
  """
  ops = keras.ops
  eps = 1e-7
  t = y_true / (ops.sum(y_true, axis=-1, keepdims=True) + eps)
  p = ops.cast(y_pred, "float32")
  p = p / (ops.sum(p, axis=-1, keepdims=True) + eps)
  return ops.sum(t * ops.log((t + eps) / (p + eps)), axis=-1)


def distillation_metrics(teacher: np.ndarray, student: np.ndarray) -> dict:
  """MAE and MSE against the teacher's scores; how often the teacher's top label is in the
  student's top 5; Spearman correlation per label (over images), averaged over labels
  where both vary."""
  teacher, student = np.asarray(teacher, np.float64), np.asarray(student, np.float64)
  has_label = teacher.max(axis=1) > 0
  top = teacher.argmax(axis=1)
  top5 = np.argsort(-student, axis=1, kind="stable")[:, :5]
  hits = (top5 == top[:, None]).any(axis=1)[has_label]
  rhos = np.array([metrics.spearman(teacher[:, j], student[:, j])
                   for j in range(teacher.shape[1])])
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
  builder = dataset_lib.load_builder(data_dir)
  ds = builder.as_dataset(split="train", decoders=tfds.decode.PartialDecoding(
      {LABELS: True, LABEL_SCORES: True}))
  total, count = np.zeros(num_labels), 0
  for example in tfds.as_numpy(ds):
    np.add.at(total, example[LABELS], example[LABEL_SCORES])
    count += 1
  return total / max(1, count)


# Sample data: images with the Vision API's replies.

# Cloud Vision-style labels of what is drawn: (description, mid).
_VISION_LABELS = {
    "red": ("Red", "/m/06fvc"), "green": ("Green", "/m/038hg"), "blue": ("Blue", "/m/01g5v"),
    "yellow": ("Yellow", "/m/088fh"), "circle": ("Circle", "/m/01jddz"),
    "square": ("Square", "/m/01j61q"), "triangle": ("Triangle", "/m/0dlpqg"),
}


def vision_response(tags: Sequence[str], rng: np.random.Generator) -> dict:
  """An AnnotateImageResponse for a drawn image: scores from its content, with noise."""
  labels = [("Illustration", "/m/01kr8f", rng.uniform(0.80, 0.95)),
            ("Shape", "/m/02csf", rng.uniform(0.70, 0.92))]
  for tag in tags:
    if tag in _VISION_LABELS:
      description, mid = _VISION_LABELS[tag]
      labels.append((description, mid, rng.uniform(0.62, 0.97)))
  if "plain_background" not in tags:
    labels.append(("Pattern", "/m/0hcr", rng.uniform(0.55, 0.85)))
  if rng.random() < 0.3:  # Labels a teacher gives that the drawing does not explain.
    labels.append(("Art", "/m/0jjw", rng.uniform(0.5, 0.7)))
  labels.sort(key=lambda label: -label[2])
  return {"labelAnnotations": [
      {"mid": mid, "description": d, "score": round(float(s), 6),
       "topicality": round(float(s), 6)} for d, mid, s in labels]}


def write_vision(out_dir: str, num_images: int, seed: int = 0) -> list[str]:
  """Images in out_dir/images and their Vision JSON (as vision_labels writes it) in out_dir/vision.

  Returns:
    The image paths.
  """
  images, vision = os.path.join(out_dir, "images"), os.path.join(out_dir, "vision")
  os.makedirs(images, exist_ok=True)
  os.makedirs(vision, exist_ok=True)
  paths = []
  for index in range(num_images):
    sample = samples.draw_sample(index, seed)
    path = os.path.join(images, f"{index:06d}.jpg")
    samples.save_image(sample.image, path)
    response = vision_response(sample.tags, np.random.default_rng([seed, index, 1]))
    with open(os.path.join(vision, f"{index:06d}.jpg.json"), "w", encoding="utf-8") as f:
      json.dump(response, f)
    paths.append(path)
  return paths


def _write_vision_layout(out_dir: str, num_images: int, seed: int) -> str:
  paths = write_vision(out_dir, num_images, seed)
  return f"wrote {len(paths)} images with Vision JSON under {out_dir}"


VISION = samples.SampleLayout(
    "vision", "images/ and their Cloud Vision JSON in vision/ (distillation)",
    _write_vision_layout)


class DistillTask(base.Task):
  """A sigmoid per label fitted to the teacher's scores."""
  name = "distill"
  description = "a student of the Cloud Vision API's label scores"
  label_feature = LABELS
  extra_features = (LABEL_SCORES,)
  losses = {"bce": keras.losses.BinaryCrossentropy, "kl": lambda: normalized_kl}
  rejection_reasons = REJECTION_REASONS
  sample_layouts = (VISION,)
  card = model_card.CardText(
      intended_use=(
          "A cheap local stand-in for the Cloud Vision API's label detection on images like "
          "its training set: the same labels, scores close to the teacher's."),
      limits=(
          "It imitates the teacher, errors included, and only for the labels the teacher gave "
          "on the training images; a label it rarely saw is scored near its mean. Its scores "
          "are not calibrated probabilities of anything but the teacher's score."),
      usage=("python -m alti2v.predict --model_dir RUN IMAGES...",
             "python -m alti2v.evaluate --model_dir RUN --data_dir DATA --split test",
             "python -m alti2v.export --model_dir RUN --format onnx   # or tflite, saved_model"))

  def label_fn(self, num_outputs) -> Callable:
    """Each record's label ids and teacher scores → dense float32 [B, num_outputs]."""
    @input_pipeline.batch_labels
    def label(batch: dict):
      ids, scores = batch[LABELS], batch[LABEL_SCORES]  # RaggedTensors [B, None]
      # Paired by position across the batch: a record with unequal lists would shift
      # every later record's scores (the builder writes them in pairs).
      tf.debugging.assert_equal(ids.row_lengths(), scores.row_lengths(),
                                message="a record's label ids and scores differ in number")
      return input_pipeline.scatter_rows(ids, tf.cast(scores.values, tf.float32),
                                         num_outputs)
    return label

  def head(self, features, num_outputs, config):
    return models.dense_head(features, num_outputs, config.hidden_units, config.dropout)

  def default_loss(self):
    return keras.losses.BinaryCrossentropy()

  def metrics(self, num_outputs):
    return [keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.MeanSquaredError(name="mse")]

  def evaluate(self, run, data_dir, options):
    """The student against the teacher's scores on a split (distillation_metrics), beside the
    baseline that says each label's mean train score for every image ("baseline")."""
    teacher, student = self.predict_split(run, data_dir, options.split,
                                          options.batch_size, progress=options.progress)
    baseline = np.broadcast_to(mean_train_scores(data_dir, teacher.shape[1]), teacher.shape)
    result = {"split": options.split, "num_examples": int(len(teacher)),
              **distillation_metrics(teacher, student),
              "baseline": distillation_metrics(teacher, baseline)}
    logging.info("evaluation: %s", result)
    return result

  def report(self, result, model_dir):
    r, b = result, result["baseline"]
    return "\n".join([
        f"{r['split']} ({r['num_examples']} images) against the teacher's scores "
        "(baseline: each label's mean train score for every image):",
        f"  MAE {r['mae']:.4f}  (baseline {b['mae']:.4f}, {r['mae'] / b['mae']:.2f}x)",
        f"  MSE {r['mse']:.4f}  (baseline {b['mse']:.4f}, {r['mse'] / b['mse']:.2f}x)",
        f"  teacher's top label in the student's top 5: {r['top1_in_top5']:.1%}  "
        f"(baseline {b['top1_in_top5']:.1%})",
        f"  Spearman per label: {r['spearman']:.3f} over {r['spearman_labels']} labels  "
        f"(baseline: constant scores have no rank correlation)"])

  def describe_example(self, example, names):
    pairs = sorted(zip(example[LABEL_SCORES], example[LABELS]), reverse=True)
    return ", ".join(f"{names[i]} {score:.2f}" for score, i in pairs)

  def report_panels(self, run, data_dir, options, max_examples):
    """The student's score against the teacher's, every (image, label) pair."""
    teacher, student = self.predict_split(run, data_dir, options.split, options.batch_size,
                                          max_examples=max_examples)
    return [panels.Scatter(
        f"student against teacher scores ({options.split}, {len(teacher)} images x "
        f"{teacher.shape[1]} labels)", "teacher (Vision API) score", "student score",
        teacher.ravel(), student.ravel(),
        note=f"MAE {np.abs(teacher - student).mean():.4f}; on the diagonal the student "
             "says what the teacher says")]


DISTILL = DistillTask()
