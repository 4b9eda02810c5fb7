"""Tasks: what differs between the models alti2v trains — label, head, loss, metrics, augmentation.

Everything else (builder, input pipeline, training loop) is shared. A task is a small description.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import keras

from alti2v import features as features_lib
from alti2v import input_pipeline
from alti2v import models
from alti2v.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Task:
  """Attributes:
    name: the --task name.
    label_fn: (num_outputs) → record dict → label tensor, for input_fn.
    head: (features, num_outputs, config) → output tensor.
    loss: a Keras loss.
    metrics: (num_outputs) → list of Keras metrics.
    augmentations: the default training augmentations.
  """
  name: str
  label_feature: str
  num_outputs: Callable[[int], int]
  label_fn: Callable
  head: Callable
  loss: Callable[[], keras.losses.Loss]
  metrics: Callable[[int], list]
  augmentations: Sequence[str] = ("flip",)


def _tagger_metrics(num_tags: int) -> list:
  return [
      keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_tags, name="pr_auc"),
      keras.metrics.Precision(thresholds=0.5, name="precision"),
      keras.metrics.Recall(thresholds=0.5, name="recall"),
  ]


def _screen_metrics(_: int) -> list:
  return [
      keras.metrics.AUC(curve="ROC", name="roc_auc"),
      keras.metrics.AUC(curve="PR", name="pr_auc"),
      keras.metrics.Precision(thresholds=0.5, name="precision"),
      keras.metrics.Recall(thresholds=0.5, name="recall"),
  ]


def _binary_label(_: int) -> Callable:
  def label(example: dict):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.cast(example[features_lib.LABEL], tf.float32)[None]
  return label


TASKS = {
    "tagger": Task(
        name="tagger",
        label_feature=features_lib.TAGS,
        num_outputs=lambda names: names,
        label_fn=input_pipeline.multi_hot_tags,
        head=lambda x, n, c: models.tagger_head(x, n, c.hidden_units, c.dropout),
        loss=keras.losses.BinaryCrossentropy,
        metrics=_tagger_metrics,
    ),
    # The screening filter: keep (1) or drop (0), from hand-sorted folders.
    "screen": Task(
        name="screen",
        label_feature=features_lib.LABEL,
        num_outputs=lambda names: 1,
        label_fn=_binary_label,
        head=lambda x, n, c: models.screen_head(x, c.hidden_units),
        loss=keras.losses.BinaryCrossentropy,
        metrics=_screen_metrics,
    ),
}


def get_task(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
  return TASKS[name]


def output_names(builder, task: Task) -> list[str]:
  """The names of the task's label feature in a dataset (tags, or [negative, positive])."""
  feature = builder.info.features[task.label_feature]
  feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) → ClassLabel
  return list(feature.names)


def build_model(config: TrainConfig, num_outputs: int) -> keras.Model:
  """uint8 images → VGG preprocessing → backbone → the task's head."""
  task = get_task(config.task)
  inputs = keras.Input((config.image_size, config.image_size, 3), dtype="uint8",
                       name="image")
  x = models.VGGPreprocess(name="vgg_preprocess")(inputs)
  backbone = models.build_backbone(config.backbone, config.image_size, config.weights_arg)
  models.freeze_layers(backbone, config.frozen_layers, config.weights_arg)
  outputs = task.head(backbone(x), num_outputs, config)
  return keras.Model(inputs, outputs, name=f"{config.task}_{config.backbone}")
