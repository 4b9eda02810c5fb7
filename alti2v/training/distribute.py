"""Devices and the distribution strategy of a run, and where each worker of a cluster writes.

`make_strategy(config)` turns --strategy (and --cpu_replicas) into a tf.distribute
strategy; `worker_dirs(model_dir, strategy)` follows Keras's multi-worker convention:
the chief writes the run directory, every other worker a temporary directory of its own.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
# Keras's TensorFlow trainer, patched for multi-worker runs (average_logs_over_workers).
from keras.src.backend.tensorflow import trainer as keras_tf_trainer
import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")


def _split_cpu(cpu_replicas: int) -> list[str]:
  """The names of cpu_replicas logical CPU devices, splitting the CPU if it is not yet.

  Logical CPU devices can only be made before TensorFlow initialises its devices,
  i.e. before the first op runs in the process.
  """
  cpu = tf.config.list_physical_devices("CPU")[0]
  if len(tf.config.list_logical_devices("CPU")) < cpu_replicas:
    try:
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    except RuntimeError as e:
      raise RuntimeError(
          f"cpu_replicas={cpu_replicas}: TensorFlow's devices were initialised "
          "before the CPU could be split; split it first thing in the process") from e
  return [d.name for d in tf.config.list_logical_devices("CPU")[:cpu_replicas]]


def read_tf_config() -> dict:
  """TF_CONFIG as a dict ({} when unset).

  Raises:
    ValueError: TF_CONFIG is not JSON, or has no cluster with workers or no task.
  """
  raw = os.environ.get("TF_CONFIG", "")
  if not raw:
    return {}
  try:
    value = json.loads(raw)
  except ValueError as e:
    raise ValueError(f"TF_CONFIG is not JSON ({e})") from None
  cluster, task = value.get("cluster") or {}, value.get("task") or {}
  if not (cluster.get("worker") or cluster.get("chief")) or "type" not in task:
    raise ValueError("TF_CONFIG needs a cluster with workers and this process's task, e.g. "
                     '{"cluster": {"worker": ["host0:port", "host1:port"]}, '
                     '"task": {"type": "worker", "index": 0}}')
  return value


def make_strategy(name: str, cpu_replicas: int = 0) -> tf.distribute.Strategy:
  """The strategy --strategy names; call it first thing in the process.

  Args:
    name: "auto": MirroredStrategy over all GPUs, or over cpu_replicas logical CPUs,
      else TensorFlow's default; "mirrored": MirroredStrategy over the GPUs (or
      cpu_replicas logical CPUs, or the CPU); "one_device": the first GPU, or the
      CPU; "multi_worker": MultiWorkerMirroredStrategy over the cluster in
      TF_CONFIG (NCCL between GPUs, ring all-reduce over gRPC between CPUs).
    cpu_replicas: split the CPU into this many logical devices (testing; 0 = off).

  Raises:
    ValueError: multi_worker without a usable TF_CONFIG.
  """
  if name not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
  gpus = tf.config.list_physical_devices("GPU")
  if name == "multi_worker":
    tf_config = read_tf_config()
    if not tf_config:
      raise ValueError("--strategy=multi_worker needs TF_CONFIG (the cluster and this "
                       "worker's task; Vertex AI sets it): see BUILD.md")
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation))
    logging.info("MultiWorkerMirroredStrategy: %s %d of %d workers, %d replicas",
                 tf_config["task"]["type"], tf_config["task"].get("index", 0),
                 sum(len(v) for k, v in tf_config["cluster"].items() if k != "ps"),
                 strategy.num_replicas_in_sync)
    return strategy
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  if gpus:
    logging.info("MirroredStrategy over %d GPU(s)", len(gpus))
    return tf.distribute.MirroredStrategy()
  if cpu_replicas >= 1 or name == "mirrored":
    # cpu_replicas=1: the one-GPU path (MirroredStrategy, one replica) on a CPU.
    devices = _split_cpu(max(cpu_replicas, 1))
    logging.info("MirroredStrategy over %d logical CPU devices", len(devices))
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run (always, outside a multi-worker cluster).

  Keras's rule: the "chief" task, or worker 0 of a cluster that has no chief.
  """
  resolver = strategy.cluster_resolver
  if resolver is None or resolver.task_type is None or resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0
          and "chief" not in resolver.cluster_spec().as_dict())


def worker_id(strategy: tf.distribute.Strategy) -> str:
  """"TYPE-INDEX" of this process in its cluster ("local" outside one)."""
  resolver = strategy.cluster_resolver
  if resolver is None or resolver.task_type is None:
    return "local"
  return f"{resolver.task_type}-{resolver.task_id}"


def write_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Where this process writes: model_dir on the chief, a new temporary directory on
  every other worker (it trains and saves exactly as the chief does, so that any
  collective op in a save runs on all workers, but what it writes is thrown away).
  """
  if is_chief(strategy):
    return model_dir
  return tempfile.mkdtemp(prefix=f"alti2v_{worker_id(strategy)}_")


def remove_write_dir(path: str, model_dir: str) -> None:
  """Removes a non-chief worker's temporary directory (never model_dir)."""
  if os.path.abspath(path) != os.path.abspath(model_dir):
    shutil.rmtree(path, ignore_errors=True)



def build_from_a_local_batch(model, strategy: tf.distribute.Strategy) -> None:
  """Lets Keras's fit and evaluate build `model` under MultiWorkerMirroredStrategy.

  Keras 3.15 (TensorFlow backend) builds the model before the first step from a first
  batch that it averages over replicas, strategy.reduce("MEAN", (images, labels)):
  MultiWorkerMirroredStrategy reduces no tuples ("Attempt to convert a value
  (PerReplica...) to a Tensor"), and an all-reduce of images only to learn their shape
  is waste. This replica's own batch has the same shapes. Overrides Keras's private
  _maybe_symbolic_build on this model only (setup.py pins keras's range).
  """
  original = model._maybe_symbolic_build  # pylint: disable=protected-access

  def local(value):
    if isinstance(value, tf.distribute.DistributedValues):
      return strategy.experimental_local_results(value)[0]
    return value

  def build(iterator=None, data_batch=None):
    if iterator is not None:
      for _, _, it in iterator:  # As Keras: the first batch of the first epoch.
        data_batch = tf.nest.map_structure(local, next(it))
        break
    return original(data_batch=data_batch)

  model._maybe_symbolic_build = build  # pylint: disable=protected-access


def average_logs_over_workers() -> None:
  """Lets Keras's train and test steps report their logs under MultiWorkerMirroredStrategy.

  Keras 3.15 averages each replica's logs (loss, metrics: scalars) over a multi-worker
  cluster with strategy.reduce("MEAN", value, axis=0), which fails on a scalar
  ("Invalid reduction dimension 0 for input with 0 dimensions"). Here the mean is taken
  over replicas (axis=None): an all-reduce, so every worker logs the same figures, the
  ones a single worker would over the same global batch. Replaces Keras's private
  trainer.reduce_per_replica for the process (a multi-worker process trains one run).
  """
  original = keras_tf_trainer.reduce_per_replica
  if getattr(original, "alti2v_patched", False):
    return

  def reduce_per_replica(values, strategy, reduction="auto"):
    if (reduction not in ("auto", "mean")
        or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
      return original(values, strategy, reduction)

    def mean(value):
      if not isinstance(value, tf.distribute.DistributedValues):
        return value
      return strategy.reduce("MEAN", value, axis=None)
    return tf.nest.map_structure(mean, values)

  reduce_per_replica.alti2v_patched = True
  keras_tf_trainer.reduce_per_replica = reduce_per_replica
