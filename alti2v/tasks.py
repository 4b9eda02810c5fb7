"""Tasks: what differs between the models alti2v trains — label, head, loss, metrics, augmentation.

Everything else (builder, input pipeline, training loop) is shared. A task is a small description.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import keras

from alti2v import captions as caption_ids
from alti2v import features as features_lib
from alti2v import input_pipeline
from alti2v import models
from alti2v.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Task:
  """Attributes:
    name: the --task name.
    label_fn: (num_outputs) → record dict → label tensor, for input_fn.
    extra_features: other record features label_fn reads.
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
  extra_features: Sequence[str] = ()
  augmentations: Sequence[str] = ("flip",)
  losses: Optional[dict] = None  # --loss name → loss factory; default = loss.
  # (images, labels) → (model inputs, targets), for models with more than the image in.
  pack: Optional[Callable] = None

  @property
  def label_features(self) -> tuple[str, ...]:
    return (self.label_feature, *self.extra_features)

  def make_loss(self, name: str = ""):
    if not name:
      return self.loss()
    if not self.losses or name not in self.losses:
      raise ValueError(f"task {self.name} has no loss {name!r}; "
                       f"known: {sorted(self.losses or {})}")
    return self.losses[name]()


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


def _soft_scores(num_labels: int) -> Callable:
  """Label function: a record's label ids and teacher scores → dense float32 [num_labels]."""
  def label(example: dict):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    ids = tf.cast(example[features_lib.LABELS], tf.int64)
    scores = tf.cast(example[features_lib.LABEL_SCORES], tf.float32)
    return tf.scatter_nd(ids[:, None], scores, [num_labels])
  return label


def _distill_metrics(_: int) -> list:
  return [keras.metrics.MeanAbsoluteError(name="mae"),
          keras.metrics.MeanSquaredError(name="mse")]


def _one_caption(_: int) -> Callable:
  """Label function: one of a record's captions (ids), drawn at random at each visit."""
  def label(example: dict):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    ids = tf.cast(example[features_lib.CAPTION_IDS], tf.int32)
    pick = tf.random.uniform([], 0, tf.shape(ids)[0], dtype=tf.int32)
    return ids[pick]
  return label


def _canonical_caption(_: int) -> Callable:
  """Label function: a record's first (canonical) caption, ids.

  The original captioner predicts every position from the image alone; trained on a
  caption drawn among several phrasings it learns their per-position blend (garbled
  text), so it learns one caption per image.
  """
  def label(example: dict):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.cast(example[features_lib.CAPTION_IDS], tf.int32)[0]
  return label


def _teacher_forcing(images, captions):
  """caption_in = START followed by the target shifted right (its last id dropped)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  start = tf.fill([tf.shape(captions)[0], 1], tf.constant(caption_ids.START, tf.int32))
  caption_in = tf.concat([start, captions[:, :-1]], axis=1)
  return {"image": images, "caption_in": caption_in}, captions


def _caption_loss():
  # PAD (id 0) positions do not count.
  return keras.losses.SparseCategoricalCrossentropy(ignore_class=caption_ids.PAD)


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
    # Vision API distillation: a student fits the teacher's label scores (soft targets).
    "distill": Task(
        name="distill",
        label_feature=features_lib.LABELS,
        extra_features=(features_lib.LABEL_SCORES,),
        num_outputs=lambda names: names,
        label_fn=_soft_scores,
        head=lambda x, n, c: models.tagger_head(x, n, c.hidden_units, c.dropout),
        loss=keras.losses.BinaryCrossentropy,
        losses={"bce": keras.losses.BinaryCrossentropy, "kl": lambda: normalized_kl},
        metrics=_distill_metrics,
    ),
    # The original katakana captioner: every character from the image alone.
    "caption": Task(
        name="caption",
        label_feature=features_lib.CAPTION_IDS,
        num_outputs=lambda names: names,
        label_fn=_canonical_caption,
        head=lambda x, n, c: models.caption_original_head(
            x, n, c.hidden_units, caption_ids.CAPTION_LENGTH),
        loss=_caption_loss,
        metrics=lambda _: [],
    ),
    # Show and Tell: autoregressive, teacher forcing; greedy or beam-search decoding.
    "caption_ar": Task(
        name="caption_ar",
        label_feature=features_lib.CAPTION_IDS,
        num_outputs=lambda names: names,
        label_fn=_one_caption,
        head=lambda x, n, c: models.show_and_tell_head(
            x, n, c.hidden_units, caption_ids.CAPTION_LENGTH),
        loss=_caption_loss,
        metrics=lambda _: [],
        pack=_teacher_forcing,
    ),
}


def get_task(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
  return TASKS[name]


def output_names(builder, task: Task) -> list[str]:
  """The names of the task's outputs: tags, [negative, positive], labels, or characters."""
  if task.label_feature == features_lib.CAPTION_IDS:
    return list(builder.info.metadata["caption_vocabulary"])
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
  if isinstance(outputs, tuple):  # A head with inputs of its own (Show and Tell).
    outputs, extra_inputs = outputs
    return keras.Model({"image": inputs, **{i.name: i for i in extra_inputs}}, outputs,
                       name=f"{config.task}_{config.backbone}")
  return keras.Model(inputs, outputs, name=f"{config.task}_{config.backbone}")
