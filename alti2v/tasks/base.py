"""The Task interface (what differs between the models alti2v trains) and the registry of tasks.

A task owns its label, its own dataset fields, head, loss, metrics, evaluation and printout,
rejection reasons and sample data; the training loop, evaluate and the commands only ask a Task
object for them, found here by name. Adding a task: README, "Adding a task".
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow_datasets as tfds

from alti2v import models
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import imaging
from alti2v.data import input_pipeline
from alti2v.data import progress as progress_lib
from alti2v.data import samples
from alti2v.reporting import panels
from alti2v.training import loop
from alti2v.training import model_card
from alti2v.training import run_dir
from alti2v.training.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How to evaluate a run (`python -m alti2v.evaluate`'s flags); a task reads what concerns it.

  Attributes:
    split: the split the figures are computed on (thresholds are calibrated on validation).
    batch_size: images per batch.
    beam_size: captioners: beam width (1 = greedy).
    target_precision: screening filter: the keep threshold is the lowest with this
      precision on validation.
    target_recall: screening filter: the highest with this recall. Neither: max F1.
  """
  split: str = "test"
  batch_size: int = 64
  beam_size: int = 1
  target_precision: Optional[float] = None
  target_recall: Optional[float] = None
  progress: bool = False


class Task:
  """A task: subclasses set the attributes and implement label_fn, head, default_loss, evaluate
  and report; the rest has defaults.

  Attributes:
    name: the --task name, stored in a run's model_info.json.
    description: one line for --help.
    label_feature: the record feature the model's outputs are named after (its names are
      the run's vocabulary file, features.vocabulary_file(label_feature)).
    extra_features: other record features label_fn reads.
    losses: --loss name → loss factory (besides "", the default_loss).
    rejection_reasons: reasons in rejected.jsonl only this task's builder gives.
    sample_layouts: the sample corpora it draws (python -m alti2v.sample_data --layout).
    card: what the model card (RUN/README.md) says of its runs: intended use, limits, usage.
  """
  name: str = ""
  description: str = ""
  label_feature: str = ""
  extra_features: tuple[str, ...] = ()
  losses: Mapping[str, Callable[[], Any]] = {}
  rejection_reasons: tuple[str, ...] = ()
  sample_layouts: tuple[samples.SampleLayout, ...] = ()
  card: model_card.CardText = model_card.CardText()
  # (images, labels) → (model inputs, targets) after batching, for a model with more than
  # the image in (a method in such a task); None = the batches as they are.
  pack: Optional[Callable] = None

  @property
  def label_features(self) -> tuple[str, ...]:
    """The record features input_fn parses for label_fn (besides the image)."""
    return (self.label_feature, *self.extra_features)

  # The data.

  def output_names(self, builder: tfds.core.DatasetBuilder) -> list[str]:
    """The names of the outputs: by default the label feature's class names."""
    return dataset_lib.class_names(builder, self.label_feature)

  def num_outputs(self, num_names: int) -> int:
    """The model's outputs for this many names: one each by default."""
    return num_names

  def label_fn(self, num_outputs: int) -> Callable[[dict], Any]:
    """(record dict of label_features → label tensor), for input_fn; or, marked with
    input_pipeline.batch_labels, (parsed batch → labels [B, ...]), faster."""
    raise NotImplementedError

  # The model.

  def head(self, features, num_outputs: int, config: TrainConfig):
    """Backbone features → outputs (or (outputs, [extra keras.Input])); see models.build_model."""
    raise NotImplementedError

  def build_model(self, config: TrainConfig, num_outputs: int) -> keras.Model:
    """uint8 images → VGG preprocessing → config's backbone → this task's head."""
    return models.build_model(
        lambda features: self.head(features, num_outputs, config),
        image_size=config.image_size, backbone=config.backbone,
        weights=config.weights_arg, frozen_layers=config.frozen_layers,
        name=f"{self.name}_{config.backbone}")

  def default_loss(self) -> Any:
    raise NotImplementedError

  def make_loss(self, name: str = "") -> Any:
    """The loss --loss names ("" = default_loss)."""
    if not name:
      return self.default_loss()
    if name not in self.losses:
      raise ValueError(f"task {self.name} has no loss {name!r}; known: {sorted(self.losses)}")
    return self.losses[name]()

  def metrics(self, num_outputs: int) -> list:
    """Keras metrics logged during training."""
    return []

  # Evaluation: every figure beside its naive baseline.

  def evaluate(self, run: run_dir.TrainedRun, data_dir: str, options: EvalOptions) -> dict:
    """The run's figures and its baseline's on options.split (and whatever it calibrates)."""
    raise NotImplementedError

  def report(self, result: dict, model_dir: str) -> str:
    """evaluate's result as a person reads it: each figure beside its baseline."""
    raise NotImplementedError

  def predict_split(self, run: run_dir.TrainedRun, data_dir: str, split: str,
                    batch_size: int = 64, *, max_examples: Optional[int] = None,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(labels, model outputs) of every example of a split (the first max_examples), in order.

    Args:
      progress: show the progress on stderr, as "evaluate SPLIT".
    """
    labels, scores, done = [], [], 0
    label_fn = self.label_fn(int(run.model.output.shape[-1]))
    total = dataset_lib.load_builder(data_dir).info.splits[split].num_examples
    if max_examples is not None:
      total = min(total, max_examples)
    bar = progress_lib.maybe(progress, total, f"evaluate {split}")
    try:
      for images, y in input_pipeline.input_fn(
          data_dir, split, batch_size, training=False, image_size=run.image_size,
          label_fn=label_fn, label_features=self.label_features):
        scores.append(run.model.predict_on_batch(images))
        labels.append(y.numpy())
        done += len(labels[-1])
        if bar is not None:
          bar.update(len(labels[-1]))
        if max_examples is not None and done >= max_examples:
          break
    finally:
      if bar is not None:
        bar.close()
    return np.concatenate(labels)[:max_examples], np.concatenate(scores)[:max_examples]

  # The report (python -m alti2v.report; alti2v/reporting/panels.py).

  def describe_example(self, example: Mapping[str, Any], names: Sequence[str]) -> str:
    """What a record's label says, in one line (the dataset report's image grid).

    Args:
      example: the record's fields but the image, as numpy values.
      names: output_names of its dataset.
    """
    return ""

  def report_panels(self, run: run_dir.TrainedRun, data_dir: str, options: EvalOptions,
                    max_examples: int) -> list[panels.Panel]:
    """The run report's figures of the model on options.split (at most max_examples
    images), from predictions made here; evaluate's calibration files when it has run."""
    return []


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
  """Makes task known by its name (to train, evaluate, sample_data...); returns it.

  Raises:
    ValueError: another task has that name.
  """
  if not task.name:
    raise ValueError(f"{type(task).__name__} has no name")
  if _TASKS.get(task.name, task) is not task:
    raise ValueError(f"a task named {task.name!r} is registered already")
  _TASKS[task.name] = task
  return task


def get_task(name: str) -> Task:
  if name not in _TASKS:
    raise ValueError(f"unknown task {name!r}; known: {sorted(_TASKS)}")
  return _TASKS[name]


def all_tasks() -> list[Task]:
  """Every registered task, in registration order."""
  return list(_TASKS.values())


def rejection_reasons() -> tuple[str, ...]:
  """Every reason a rejected.jsonl may give: decoding, shared, and each task's own."""
  reasons = [*imaging.REASONS, *features_lib.REJECTION_REASONS]
  for task in _TASKS.values():
    reasons += [r for r in task.rejection_reasons if r not in reasons]
  return tuple(reasons)


def sample_layouts() -> dict[str, samples.SampleLayout]:
  """Every --layout of sample_data: the tasks' (in registration order), then shared ones."""
  from_tasks = {layout.name: layout for task in _TASKS.values()
                for layout in task.sample_layouts}
  return {**from_tasks, **{layout.name: layout for layout in samples.SHARED_LAYOUTS}}


def train(config: TrainConfig,
          extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
  """Trains config.task's model (training.loop.train with the task looked up by name).

  Returns:
    The run's model_info. The run gets its first model card (no figures yet).
  """
  task = get_task(config.task)
  info = loop.train(config, task, extra_callbacks)
  if info.get("chief", True):  # A multi-worker run's other workers leave model_dir alone.
    model_card.write(config.model_dir, task.description, task.card)
  return info


def run_evaluation(model_dir: str, data_dir: str,
                   options: EvalOptions = EvalOptions()) -> tuple[Task, dict]:
  """(task, result) of evaluating the finished run in model_dir with its own task.

  Every result holds the model's figures and its naive baseline's (see each task); it is
  merged into RUN/metrics.json (by split) and the model card RUN/README.md is written again.
  """
  run = run_dir.load(model_dir)
  task = get_task(run.task)
  result = task.evaluate(run, data_dir, options)
  model_card.update_metrics(model_dir, task.name, result)
  model_card.write(model_dir, task.description, task.card)
  return task, result
