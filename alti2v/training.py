"""The training loop every task shares: devices → precision → strategy → model → fit → export.

`train(config)` is what `python -m alti2v.train` and the tests call. A model_dir holds one run:
a rerun resumes it (BackupAndRestore), the best epoch by validation loss is kept across
resumes, and a finished run is not trained again unless config.overwrite.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from typing import Any, Optional, Sequence

import keras
import tensorflow as tf

from alti2v import dataset as dataset_lib
from alti2v import features as features_lib
from alti2v import input_pipeline
from alti2v import tasks
from alti2v.config import TrainConfig

# Files of a model_dir.
CONFIG_FILE = "config.json"
BACKUP_DIR = "backup"  # Latest state (weights, optimizer, epoch), written every epoch.
BEST_MODEL = "best.keras"
BEST_FILE = "best.json"
HISTORY_FILE = "history.csv"
LOG_DIR = "logs"  # TensorBoard.
MODEL_FILE = "model.keras"  # The exported model: the best epoch's weights.
SAVED_MODEL_DIR = "saved_model"
MODEL_INFO_FILE = "model_info.json"  # Written last: the run is finished.


def setup_devices(cpu_replicas: int) -> tf.distribute.Strategy:
  """MirroredStrategy over all GPUs, or over cpu_replicas logical CPUs; else the default.

  Logical CPU devices can only be made before TensorFlow initialises its devices,
  i.e. before the first op runs in the process.
  """
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    logging.info("MirroredStrategy over %d GPU(s)", len(gpus))
    return tf.distribute.MirroredStrategy()
  if cpu_replicas >= 1:  # 1: the one-GPU path (MirroredStrategy, one replica) on a CPU.
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.list_logical_devices("CPU")) < cpu_replicas:
      try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
      except RuntimeError as e:
        raise RuntimeError(
            f"cpu_replicas={cpu_replicas}: TensorFlow's devices were initialised "
            "before the CPU could be split; split it first thing in the process") from e
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:cpu_replicas]]
    logging.info("MirroredStrategy over %d logical CPU devices", len(devices))
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.get_strategy()


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
  """Saves the model of the best epoch by validation loss; the best survives resumes."""

  def __init__(self, model_dir: str, monitor: str = "val_loss"):
    super().__init__()
    self._model_dir = model_dir
    self._monitor = monitor
    self.best = read_json(os.path.join(model_dir, BEST_FILE)) or {
        "epoch": 0, monitor: float("inf")}

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self._monitor)
    if value is None or not value < self.best[self._monitor]:
      return
    path = os.path.join(self._model_dir, BEST_MODEL)
    tmp = os.path.join(self._model_dir, "best.tmp.keras")
    self.model.save(tmp)
    os.replace(tmp, path)  # Never a half-written best model.
    self.best = {"epoch": epoch + 1, self._monitor: float(value)}
    write_json(os.path.join(self._model_dir, BEST_FILE), self.best)
    logging.info("epoch %d: new best %s %.5f", epoch + 1, self._monitor, value)


def read_json(path: str) -> Optional[Any]:
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_json(path: str, value: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)
  os.replace(tmp, path)


def _prepare_model_dir(config: TrainConfig) -> Optional[dict]:
  """Creates model_dir, or checks that it holds this same run. Returns a finished run's info."""
  if config.overwrite and os.path.exists(config.model_dir):
    if os.listdir(config.model_dir) and not os.path.exists(
        os.path.join(config.model_dir, CONFIG_FILE)):
      raise ValueError(f"--overwrite: {config.model_dir} is not a training run "
                       f"(no {CONFIG_FILE}); refusing to delete it")
    logging.info("--overwrite: removing %s", config.model_dir)
    shutil.rmtree(config.model_dir)
  os.makedirs(config.model_dir, exist_ok=True)
  stored = read_json(os.path.join(config.model_dir, CONFIG_FILE))
  current = dataclasses.asdict(config)
  if stored is not None:
    as_json = lambda value: json.loads(json.dumps(value))  # Tuples → lists, as stored.
    # A field the stored run lacks is newer than the run, which had its default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    changed = sorted(k for k in current if k not in TrainConfig.RESUMABLE_CHANGES
                     and as_json(current[k]) != stored.get(k, as_json(defaults[k])))
    if changed:
      raise ValueError(
          f"{config.model_dir} holds a run with other settings ({', '.join(changed)}); "
          "use another model_dir or --overwrite")
  write_json(os.path.join(config.model_dir, CONFIG_FILE), current)
  info = read_json(os.path.join(config.model_dir, MODEL_INFO_FILE))
  if info is not None and info["epochs"] >= config.epochs:
    return info
  if info is not None:  # Training on: the old export and its thresholds no longer apply.
    for name in (MODEL_INFO_FILE, "thresholds.json", "threshold.json"):
      path = os.path.join(config.model_dir, name)
      if os.path.exists(path):
        os.unlink(path)
  return None


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


def train(config: TrainConfig,
          extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
  """Trains (or resumes, or skips a finished run) and exports the best model.

  Args:
    config: the run.
    extra_callbacks: run after alti2v's own callbacks (checkpoints first).

  Returns:
    model_info: task, vocabulary, best epoch and validation loss, precision,
    replicas, paths of the exported model.
  """
  strategy = setup_devices(config.cpu_replicas)
  # Checked before model_dir is touched: a run that cannot end well never starts.
  builder = dataset_lib.load_builder(config.data_dir)
  check_validation_split(config.data_dir, builder)
  finished = _prepare_model_dir(config)
  if finished is not None:
    logging.info("%s already holds a finished run of %d epochs: nothing to do "
                 "(--overwrite starts over)", config.model_dir, finished["epochs"])
    return finished
  task = tasks.get_task(config.task)
  vocabulary = tasks.output_names(builder, task)
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
          drop_remainder=training or replicas > 1)
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
    model = tasks.build_model(config, num_outputs)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=task.make_loss(config.loss), metrics=task.metrics(num_outputs))
  callbacks = [
      # The best first: killed between the two, the epoch is redone, not lost as a best.
      BestCheckpoint(config.model_dir),
      keras.callbacks.BackupAndRestore(os.path.join(config.model_dir, BACKUP_DIR),
                                       delete_checkpoint=False),
      keras.callbacks.CSVLogger(os.path.join(config.model_dir, HISTORY_FILE), append=True),
      keras.callbacks.TensorBoard(os.path.join(config.model_dir, LOG_DIR),
                                  profile_batch=0),
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
  return export(config, task, vocabulary, num_outputs, policy, replicas)


def export(config: TrainConfig, task: tasks.Task, vocabulary: Sequence[str],
           num_outputs: int, policy: str, replicas: int) -> dict:
  """The best epoch's model as model.keras and a SavedModel, with the vocabulary beside them."""
  best = read_json(os.path.join(config.model_dir, BEST_FILE))
  if best is None:  # The validation split is checked up front: every val_loss was NaN.
    raise ValueError(f"no best model: no epoch had a finite validation loss (see "
                     f"{os.path.join(config.model_dir, HISTORY_FILE)}); try a lower "
                     "--learning_rate")
  model = keras.models.load_model(os.path.join(config.model_dir, BEST_MODEL))
  tmp = os.path.join(config.model_dir, "model.tmp.keras")
  model.save(tmp)
  os.replace(tmp, os.path.join(config.model_dir, MODEL_FILE))
  saved_model = os.path.join(config.model_dir, SAVED_MODEL_DIR)
  tmp = saved_model + ".tmp"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  model.export(tmp, verbose=False)
  if os.path.exists(saved_model):
    shutil.rmtree(saved_model)
  os.rename(tmp, saved_model)  # model_info.json, written last, marks the export complete.
  vocabulary_file = f"{task.label_feature}.labels.txt"
  with open(os.path.join(config.model_dir, vocabulary_file), "w", encoding="utf-8") as f:
    f.write("".join(f"{t}\n" for t in vocabulary))
  with open(os.path.join(config.data_dir, features_lib.METADATA_FILE), encoding="utf-8") as f:
    build_args = json.load(f).get("build_args", {})
  info = {
      "task": config.task, "image_size": config.image_size,
      "stored_image_size": build_args.get("image_size"),
      "vocabulary_file": vocabulary_file, "num_outputs": num_outputs,
      "epochs": config.epochs, "best_epoch": best["epoch"],
      "best_val_loss": best["val_loss"], "mixed_precision": policy, "replicas": replicas,
      "model": MODEL_FILE, "saved_model": SAVED_MODEL_DIR,
  }
  write_json(os.path.join(config.model_dir, MODEL_INFO_FILE), info)
  logging.info("exported the best epoch (%d, val_loss %.5f) to %s", best["epoch"],
               best["val_loss"], config.model_dir)
  return info
