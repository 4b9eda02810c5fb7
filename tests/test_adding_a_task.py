"""Adding a task touches no shared module: a toy task, defined here, goes the whole road.

The task (light or dark background) is registered, its dataset written with the common
feature spec plus its own field, trained by the real training loop, and evaluated through
the real `python -m alti2v.evaluate` entry, which prints its figure beside its baseline.
"""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v import models
from alti2v import tasks
from alti2v.data import features as features_lib
from tests.conftest import tiny_config

LIGHTNESS = "lightness"  # The toy task's own field: 0 = dark, 1 = light.


class LightnessTask(tasks.Task):
  """Is the image light or dark? One sigmoid output, beside the majority class."""
  name = "toy_lightness"
  description = "light or dark (a test's toy task)"
  label_feature = LIGHTNESS

  def num_outputs(self, num_names):
    return 1

  def label_fn(self, num_outputs):
    return lambda example: tf.cast(example[LIGHTNESS], tf.float32)[None]

  def head(self, features, num_outputs, config):
    return models.dense_head(features, 1, config.hidden_units)

  def default_loss(self):
    return keras.losses.BinaryCrossentropy()

  def metrics(self, num_outputs):
    return [keras.metrics.BinaryAccuracy(name="accuracy")]

  def evaluate(self, run, data_dir, options):
    labels, scores = self.predict_split(run, data_dir, options.split, options.batch_size)
    light = labels[:, 0] == 1
    return {"split": options.split, "num_examples": int(len(labels)),
            "accuracy": float(((scores[:, 0] >= 0.5) == light).mean()),
            "baseline_accuracy": float(max(light.mean(), 1 - light.mean()))}

  def report(self, result, model_dir):
    return (f"{result['split']} ({result['num_examples']} images): accuracy "
            f"{result['accuracy']:.3f} (baseline, the majority class: "
            f"{result['baseline_accuracy']:.3f})")


LIGHTNESS_TASK = tasks.register(LightnessTask())


def write_dataset(data_dir, features, examples_by_split, name="toy"):
  """A finished dataset directory: tfds-named shards, then tfds' metadata (dataset_info.json)."""
  os.makedirs(data_dir)
  for split, examples in examples_by_split.items():
    path = os.path.join(data_dir, features_lib.shard_filename(name, split, 0, 1))
    with tf.io.TFRecordWriter(path) as writer:
      for example in examples:
        writer.write(features.serialize_example(example))
  tfds.folder_dataset.write_metadata(data_dir=data_dir, features=features)


def toy_examples(count, seed):
  rng = np.random.default_rng(seed)
  for i in range(count):
    light = i % 2
    level = 200 if light else 50
    image = np.clip(rng.normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
    yield {features_lib.IMAGE: image, LIGHTNESS: light, features_lib.PATH: f"{seed}/{i}.png",
           features_lib.CONTENT_HASH: f"{seed}-{i}", features_lib.HEIGHT: 32,
           features_lib.WIDTH: 32}


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
  data = str(tmp_path_factory.mktemp("toy") / "dataset")
  own = {LIGHTNESS: tfds.features.ClassLabel(names=["dark", "light"])}
  write_dataset(data, features_lib.features_dict(own), {
      "train": list(toy_examples(48, 0)), "validation": list(toy_examples(16, 1)),
      "test": list(toy_examples(20, 2))})
  return data


def test_a_toy_task_is_registered_trained_and_evaluated(toy_dataset, tmp_path, capsys):
  model_dir = str(tmp_path / "run")
  info = tasks.train(tiny_config(toy_dataset, model_dir, task=LIGHTNESS_TASK.name, epochs=3,
                                 steps_per_epoch=6, learning_rate=3e-3))
  assert info["task"] == LIGHTNESS_TASK.name and info["num_outputs"] == 1
  with open(os.path.join(model_dir, "lightness.labels.txt"), encoding="utf-8") as f:
    assert f.read().split() == ["dark", "light"]

  from alti2v import evaluate as evaluate_command  # The real command line, in process.
  out = tmp_path / "result.json"
  capsys.readouterr()  # What training printed.
  evaluate_command.FLAGS(["evaluate", f"--model_dir={model_dir}",
                          f"--data_dir={toy_dataset}", f"--output_json={out}"])
  try:
    evaluate_command.main(["evaluate"])
  finally:
    evaluate_command.FLAGS.unparse_flags()
  result = json.loads(out.read_text())
  assert result["task"] == LIGHTNESS_TASK.name and result["num_examples"] == 20
  assert result["baseline_accuracy"] == 0.5 and result["accuracy"] > 0.9
  assert capsys.readouterr().out.strip() == (
      f"test (20 images): accuracy {result['accuracy']:.3f} "
      "(baseline, the majority class: 0.500)")


def test_a_name_is_registered_once():
  with pytest.raises(ValueError, match="registered already"):
    tasks.register(LightnessTask())
  assert tasks.get_task(LIGHTNESS_TASK.name) is LIGHTNESS_TASK
