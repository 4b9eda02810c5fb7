"""Benchmark of training speed: images/s fed by input_fn from TFRecords next to the model's ceiling.

  python benchmarks/train_benchmark.py [--steps 40] [--workdir DIR]

The same model, the same batch, the same strategy, twice:
  ceiling   model.fit on synthetic batches already in memory (on the GPUs when there
            are any): the model's own step rate, nothing left to wait for;
  input_fn  model.fit fed by input_fn(training=True) reading the dataset's TFRecords
            (read, decode, pad, flip, batch on the host's cores);
and the host cores each kept busy (process CPU time / wall time).
Defaults: on a GPU machine VGG16 at 224 px, mixed_float16, MirroredStrategy over all
GPUs, batch 64 per GPU; on a CPU the small CNN at 64 px, float32, batch 32.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MALLOC_ARENA_MAX", "2")  # As README recommends for training.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WARMUP_STEPS = 5  # Tracing, thread pools, autotune, the shuffle buffer filling.


def cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


class StepClock:
  """Keras callback: wall and CPU time from the end of the warm-up steps to the last step."""

  def __init__(self):
    import keras  # pylint: disable=import-outside-toplevel

    clock = self

    class Callback(keras.callbacks.Callback):
      def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == WARMUP_STEPS:
          clock.start, clock.cpu_start = time.perf_counter(), cpu_seconds()
        clock.end, clock.cpu_end = time.perf_counter(), cpu_seconds()

    self.callback = Callback()
    self.start = self.end = self.cpu_start = self.cpu_end = 0.0

  def result(self, steps: int, batch: int) -> dict:
    wall = self.end - self.start
    return {"rate": steps * batch / wall, "cores": (self.cpu_end - self.cpu_start) / wall}


def make_dataset(workdir: str, num_images: int, image_size: int) -> str:
  from alti2v.tasks import tagger  # pylint: disable=import-outside-toplevel
  from beam_jobs import build_tagged_dataset  # pylint: disable=import-outside-toplevel
  images, data = os.path.join(workdir, "images"), os.path.join(workdir, "dataset")
  if not os.path.exists(os.path.join(data, "dataset_info.json")):
    print(f"building a dataset of {num_images} sample images stored at {image_size} px ...",
          flush=True)
    tagger.write_corpus(images, num_images, seed=0)
    build_tagged_dataset.run(["--input_dir", images, "--output_dir", data, "--overwrite",
                              "--image_size", str(image_size), "--num_shards", "4",
                              "--val_fraction", "0.05", "--test_fraction", "0.05"])
  return data


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=40, help="Timed steps per run.")
  parser.add_argument("--num_images", type=int, default=400)
  parser.add_argument("--backbone", default=None, help="Default: vgg16 on GPUs, else small.")
  parser.add_argument("--image_size", type=int, default=None, help="Default: 224 / 64.")
  parser.add_argument("--batch_size", type=int, default=None,
                      help="Global; default 64 per GPU, or 32 on a CPU.")
  parser.add_argument("--workdir", default=None)
  args = parser.parse_args()

  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from alti2v import tasks  # pylint: disable=import-outside-toplevel
  from alti2v.data import dataset as dataset_lib  # pylint: disable=import-outside-toplevel
  from alti2v.data import input_pipeline  # pylint: disable=import-outside-toplevel
  from alti2v.training import config as config_lib  # pylint: disable=import-outside-toplevel
  from alti2v.training import distribute  # pylint: disable=import-outside-toplevel

  gpus = tf.config.list_physical_devices("GPU")
  backbone = args.backbone or ("vgg16" if gpus else "small")
  image_size = args.image_size or (224 if gpus else 64)
  precision = "mixed_float16" if gpus else "float32"
  strategy = distribute.make_strategy("mirrored" if gpus else "one_device")
  replicas = strategy.num_replicas_in_sync
  batch = args.batch_size or (64 * replicas if gpus else 32)
  keras.mixed_precision.set_global_policy(precision)
  workdir = args.workdir or tempfile.mkdtemp(prefix="alti2v_train_bench_")
  data = make_dataset(workdir, args.num_images, image_size)
  task = tasks.get_task("tagger")
  num_outputs = task.num_outputs(len(task.output_names(dataset_lib.load_builder(data))))
  config = config_lib.TrainConfig(data_dir=data, model_dir=workdir, backbone=backbone,
                                  weights="none", image_size=image_size, batch_size=batch,
                                  hidden_units=512, mixed_precision=precision)
  label_fn = task.label_fn(num_outputs)

  def input_fn_data(ctx):
    return input_pipeline.input_fn(data, "train", batch, training=True, image_size=image_size,
                                   input_context=ctx, label_fn=label_fn,
                                   label_features=task.label_features, seed=0)

  def synthetic_data(ctx):
    # One batch made once and repeated: after the first step it is already on the device.
    per_replica = ctx.get_per_replica_batch_size(batch)
    images = tf.random.uniform([per_replica, image_size, image_size, 3], 0, 256, tf.int32)
    labels = tf.cast(tf.random.uniform([per_replica, num_outputs]) < 0.1, tf.float32)
    return tf.data.Dataset.from_tensors((tf.cast(images, tf.uint8), labels)).cache().repeat()

  results = {}
  for name, make in (("ceiling", synthetic_data), ("input_fn", input_fn_data)):
    keras.utils.set_random_seed(0)
    with strategy.scope():
      model = task.build_model(config, num_outputs)
      model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=task.make_loss())
    clock = StepClock()
    model.fit(strategy.distribute_datasets_from_function(make), epochs=1,
              steps_per_epoch=WARMUP_STEPS + args.steps, callbacks=[clock.callback], verbose=0)
    results[name] = clock.result(args.steps, batch)

  cores = os.cpu_count() or 1
  ceiling, ours = results["ceiling"], results["input_fn"]
  device = f"{replicas} GPU(s)" if gpus else f"CPU ({cores} cores)"
  print()
  print(f"{backbone} at {image_size} px, {precision}, batch {batch}, "
        f"{type(strategy).__name__} over {device}, {args.steps} timed steps")
  print(f"{'':<58}{'images/s':>10}  {'vs ceiling':>10}  {'host cores busy':>15}")
  print(f"{'ceiling: synthetic batches already in memory':<58}{ceiling['rate']:>10.0f}  "
        f"{1.0:>9.2f}x  {ceiling['cores']:>15.1f}")
  print(f"{'input_fn(training=True) from TFRecords':<58}{ours['rate']:>10.0f}  "
        f"{ours['rate'] / ceiling['rate']:>9.2f}x  {ours['cores']:>15.1f}")
  if not args.workdir:
    shutil.rmtree(workdir)


if __name__ == "__main__":
  main()
