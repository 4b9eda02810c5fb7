"""The training loop every task shares: devices → precision → strategy → model → fit → export.

`train(config, task)` is given the task (alti2v.tasks.train looks it up by config.task, for
`python -m alti2v.train` and the tests); it knows no task of its own. A model_dir holds one run
(run_dir.py): a rerun resumes it (BackupAndRestore), the best epoch by validation loss is kept
across resumes, and a finished run is not trained again unless config.overwrite.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Callable, Optional, Protocol, Sequence

import keras
import tensorflow as tf

from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import input_pipeline
from alti2v.training import distribute
from alti2v.training import run_dir
from alti2v.training.config import TrainConfig


class TrainableTask(Protocol):
  """What the loop asks of a task (alti2v.tasks.Task has it all; the loop imports no task)."""
  name: str
  label_feature: str
  label_features: tuple[str, ...]
  pack: Optional[Callable]

  def output_names(self, builder: Any) -> list[str]: ...
  def num_outputs(self, num_names: int) -> int: ...
  def label_fn(self, num_outputs: int) -> Callable: ...
  def build_model(self, config: TrainConfig, num_outputs: int) -> keras.Model: ...
  def make_loss(self, name: str = "") -> Any: ...
  def metrics(self, num_outputs: int) -> list: ...


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
  """BackupAndRestore whose backup a kill at any instant leaves whole.

  Keras rewrites backup/latest.weights.h5 in place (seconds of every epoch for a VGG16
  head with its optimizer state), so a kill during the write left a truncated file and
  an unresumable run. Here the weights go to a temporary file renamed over the old one,
  then the epoch goes atomically to the metadata; a kill between the two leaves the new
  weights with the previous epoch's number (the epoch is trained once more), never a torn
  file. Overrides Keras's private _save_model (keras 3.15: setup.py pins the range).

  In a multi-worker cluster every worker restores the chief's backup (restore_dir)
  and writes its own (backup_dir; the chief's is restore_dir), as Keras's
  multi-worker BackupAndRestore did: all restart from the same state.
  """

  _TMP_SUFFIX = ".tmp.weights.h5"  # save_weights wants a name ending in .weights.h5.

  def __init__(self, backup_dir: str, restore_dir: Optional[str] = None, **kwargs):
    super().__init__(backup_dir, **kwargs)
    self._restore_dir = restore_dir or backup_dir

  def on_train_begin(self, logs=None):
    stale = self._weights_path + self._TMP_SUFFIX  # Left by a kill during a backup.
    if os.path.exists(stale):
      os.unlink(stale)
    own = self._weights_path, self._training_metadata_path
    self._weights_path, self._training_metadata_path = (
        os.path.join(self._restore_dir, os.path.basename(path)) for path in own)
    try:
      super().on_train_begin(logs)
    finally:
      self._weights_path, self._training_metadata_path = own

  def _save_model(self):
    os.makedirs(self.backup_dir, exist_ok=True)
    tmp = self._weights_path + self._TMP_SUFFIX
    self.model.save_weights(tmp, overwrite=True)
    os.replace(tmp, self._weights_path)
    run_dir.write_json(self._training_metadata_path,
                       {"epoch": self._current_epoch, "batch": self._last_batch_seen})


def cpu_has_bf16() -> bool:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      flags = f.read()
  except OSError:
    return False
  return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str) -> str:
  """"auto" → mixed_float16 on GPUs, mixed_bfloat16 on a bf16-capable CPU, else float32."""
  if name != "auto":
    return name
  if tf.config.list_physical_devices("GPU"):
    return "mixed_float16"
  return "mixed_bfloat16" if cpu_has_bf16() else "float32"


class BestCheckpoint(keras.callbacks.Callback):
  """Saves the model of the best epoch by validation loss; the best survives resumes.

  A multi-worker cluster's non-chief workers start from the chief's best (read_dir)
  and write to their own directory: every worker saves in the same epochs.
  """

  def __init__(self, model_dir: str, monitor: str = "val_loss",
               read_dir: Optional[str] = None):
    super().__init__()
    self._model_dir = model_dir
    self._monitor = monitor
    self.best = run_dir.read_json(os.path.join(read_dir or model_dir, run_dir.BEST_FILE)) or {
        "epoch": 0, monitor: float("inf")}

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self._monitor)
    if value is None or not value < self.best[self._monitor]:
      return
    run_dir.save_model(self.model, os.path.join(self._model_dir, run_dir.BEST_MODEL))
    self.best = {"epoch": epoch + 1, self._monitor: float(value)}
    run_dir.write_json(os.path.join(self._model_dir, run_dir.BEST_FILE), self.best)
    logging.info("epoch %d: new best %s %.5f", epoch + 1, self._monitor, value)


def check_validation_split(data_dir: str, builder: Any) -> None:
  """Refuses, before any epoch, a dataset whose validation split is missing or empty.

  The exported model is the best epoch by validation loss: without validation
  examples there is no best epoch, and a run would fail only after its last one.

  Raises:
    ValueError: saying how to rebuild the dataset.
  """
  split = builder.info.splits["validation"] if "validation" in builder.info.splits else None
  if split is not None and split.num_examples > 0:
    return
  try:
    with tf.io.gfile.GFile(os.path.join(data_dir, features_lib.METADATA_FILE)) as f:
      built_with = json.load(f).get("build_args", {}).get("val_fraction")
  except (tf.errors.NotFoundError, ValueError):
    built_with = None
  raise ValueError(
      f"{data_dir} has no validation examples"
      + (f" (built with --val_fraction {built_with})" if built_with is not None else "")
      + ": training keeps the epoch with the best validation loss, so it needs some. "
      "Rebuild the dataset with --val_fraction > 0 (e.g. 0.1) and --overwrite")


def check_task_fits_dataset(config: TrainConfig, task: TrainableTask, builder) -> None:
  """The dataset holds what the task reads, and one training batch fits in its train split.

  Raises:
    ValueError saying what is wrong and what to do, before anything is written.
  """
  features = set(builder.info.features.keys())
  missing = [name for name in task.label_features if name not in features]
  if missing:
    raise ValueError(
        f"--task={task.name} reads {', '.join(missing)}, which {config.data_dir} does not "
        f"hold (its fields: {', '.join(sorted(features))}): build its dataset with the "
        f"task's builder, or pick the task the dataset was built for")
  num_train = builder.info.splits["train"].num_examples
  if config.batch_size > num_train:
    raise ValueError(f"--batch_size={config.batch_size} is larger than the train split "
                     f"({num_train} examples): lower it, or build with more images")


def train(config: TrainConfig, task: TrainableTask,
          extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
  """Trains (or resumes, or skips a finished run) and exports the best model.

  Args:
    config: the run.
    task: the alti2v.tasks.Task named by config.task: it gives the output names,
      the label function, the model, the loss and the metrics.
    extra_callbacks: run after alti2v's own callbacks (checkpoints first).

  Returns:
    model_info: task, vocabulary, best epoch and validation loss, precision,
    replicas, paths of the exported model.
  """
  strategy = distribute.make_strategy(config.strategy, config.cpu_replicas)
  # Checked before model_dir is touched: a run that cannot end well never starts.
  builder = dataset_lib.load_builder(config.data_dir)
  check_validation_split(config.data_dir, builder)
  check_task_fits_dataset(config, task, builder)
  chief = distribute.is_chief(strategy)
  # Only the chief writes model_dir; another worker reads whether the run is finished
  # (the chief decides the same from the same files, so that all stop or all train).
  finished = run_dir.prepare(config) if chief else _finished_run(config)
  if finished is not None:
    logging.info("%s already holds a finished run of %d epochs: nothing to do "
                 "(--overwrite starts over)", config.model_dir, finished["epochs"])
    return finished
  vocabulary = task.output_names(builder)
  num_outputs = task.num_outputs(len(vocabulary))
  num_train = builder.info.splits["train"].num_examples
  steps_per_epoch = config.steps_per_epoch or max(1, num_train // config.batch_size)
  policy = resolve_precision(config.mixed_precision)
  keras.mixed_precision.set_global_policy(policy)
  # Python, NumPy, TensorFlow and Keras' seed generators: weights, dropout.
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    # Process-wide and for good: deterministic kernels, and tf.data forced to its
    # deterministic order (input_fn also asks for it, seeded).
    tf.config.experimental.enable_op_determinism()
  logging.info("task %s: %d outputs, %d train examples, %d steps/epoch, policy %s, "
               "%d replica(s)%s", task.name, num_outputs, num_train, steps_per_epoch,
               policy, strategy.num_replicas_in_sync,
               ", deterministic" if config.deterministic else "")

  replicas = strategy.num_replicas_in_sync

  def dataset(split: str, training: bool):
    def make(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
      ds = input_pipeline.input_fn(
          config.data_dir, split, config.batch_size, training=training,
          image_size=config.image_size, input_context=ctx,
          augmentations=config.augmentations, label_fn=task.label_fn(num_outputs),
          label_features=task.label_features,
          shuffle_buffer=config.shuffle_buffer, seed=config.seed,
          deterministic=config.deterministic,
          drop_remainder=training or replicas > 1,
          data_service=config.data_service)
      if task.pack is not None:
        ds = ds.map(task.pack, num_parallel_calls=tf.data.AUTOTUNE)
      # Validation is repeated and read for exactly validation_steps per epoch:
      # Keras keeps one iterator of a distributed dataset across epochs (its size
      # is unknown), so an unrepeated split ran out in epoch 2 under
      # MirroredStrategy, one GPU included; and several replicas, validating on
      # whole batches only, still get one step from a split smaller than a batch.
      return ds if training else ds.repeat()
    return strategy.distribute_datasets_from_function(make)

  with strategy.scope():
    model = task.build_model(config, num_outputs)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=task.make_loss(config.loss), metrics=task.metrics(num_outputs))
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    distribute.build_from_a_local_batch(model, strategy)
    distribute.average_logs_over_workers()
  out_dir = distribute.write_dir(config.model_dir, strategy)  # model_dir on the chief.
  best = BestCheckpoint(out_dir, read_dir=config.model_dir)
  callbacks = [
      # The best first: killed between the two, the epoch is redone, not lost as a best.
      best,
      AtomicBackupAndRestore(os.path.join(out_dir, run_dir.BACKUP_DIR),
                             restore_dir=os.path.join(config.model_dir, run_dir.BACKUP_DIR),
                             delete_checkpoint=False),
      keras.callbacks.CSVLogger(os.path.join(out_dir, run_dir.HISTORY_FILE), append=True),
      keras.callbacks.TensorBoard(os.path.join(out_dir, run_dir.LOG_DIR), profile_batch=0),
      *extra_callbacks,
  ]
  num_validation = builder.info.splits["validation"].num_examples
  # An exact step count: the validation iterator never "runs out of data".
  validation_steps = config.validation_steps or (
      -(-num_validation // config.batch_size) if replicas == 1
      else max(1, num_validation // config.batch_size))
  try:
    model.fit(dataset("train", True), epochs=config.epochs,
              steps_per_epoch=steps_per_epoch,
              validation_data=dataset("validation", False),
              validation_steps=validation_steps,
              callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
              shuffle=False)  # input_fn shuffles; Keras cannot shuffle a dataset.
  except tf.errors.DataLossError as e:
    # TF's message names an offset, not a file: find the shard.
    dataset_lib.verify_dataset(config.data_dir)
    raise dataset_lib.DatasetError(f"corrupt data in {config.data_dir}: {e.message}") from e
  finally:
    distribute.remove_write_dir(out_dir, config.model_dir)
  if not chief:  # The chief exports; this worker's copy was thrown away.
    return {"task": config.task, "epochs": config.epochs, "best_epoch": best.best["epoch"],
            "best_val_loss": best.best["val_loss"], "replicas": replicas, "chief": False}
  return export(config, task, vocabulary, num_outputs, policy, replicas)


def _finished_run(config: TrainConfig) -> Optional[dict]:
  """What run_dir.prepare returns for config, read without writing (a non-chief worker)."""
  info = run_dir.read_json(os.path.join(config.model_dir, run_dir.MODEL_INFO_FILE))
  if config.overwrite or info is None or info["epochs"] < config.epochs:
    return None
  return info


def export(config: TrainConfig, task: TrainableTask, vocabulary: Sequence[str],
           num_outputs: int, policy: str, replicas: int) -> dict:
  """The best epoch's model as model.keras and a SavedModel, with the vocabulary beside them."""
  best = run_dir.read_json(os.path.join(config.model_dir, run_dir.BEST_FILE))
  if best is None:  # The validation split is checked up front: every val_loss was NaN.
    raise ValueError(f"no best model: no epoch had a finite validation loss (see "
                     f"{os.path.join(config.model_dir, run_dir.HISTORY_FILE)}); try a lower "
                     "--learning_rate")
  model = keras.models.load_model(os.path.join(config.model_dir, run_dir.BEST_MODEL))
  metadata = run_dir.read_json(os.path.join(config.data_dir, features_lib.METADATA_FILE))
  build_args = (metadata or {}).get("build_args", {})
  info = {
      "task": config.task, "image_size": config.image_size,
      "stored_image_size": build_args.get("image_size"),
      "vocabulary_file": features_lib.vocabulary_file(task.label_feature),
      "num_outputs": num_outputs, "epochs": config.epochs, "best_epoch": best["epoch"],
      "best_val_loss": best["val_loss"], "mixed_precision": policy, "replicas": replicas,
      "model": run_dir.MODEL_FILE, "saved_model": run_dir.SAVED_MODEL_DIR,
  }
  # What the dataset keeps beside the vocabulary (a tagger's tag categories) goes with it.
  beside = os.path.join(config.data_dir, features_lib.categories_file(task.label_feature))
  run_dir.export(config.model_dir, model, vocabulary, info,
                 [beside] if os.path.exists(beside) else [])
  logging.info("exported the best epoch (%d, val_loss %.5f) to %s", best["epoch"],
               best["val_loss"], config.model_dir)
  return info
