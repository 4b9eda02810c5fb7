"""alti2v.training: a few real training steps, mirrored over 2 logical CPUs, resume, export."""
import csv
import json
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from alti2v import models
from alti2v import tasks
from alti2v.data import dataset as dataset_lib
from alti2v.data import input_pipeline
from alti2v.training import loop
from alti2v.training import run_dir
from tests.conftest import tiny_config


def history(model_dir):
  with open(os.path.join(model_dir, run_dir.HISTORY_FILE), encoding="utf-8") as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mirrored_training_in_mixed_precision(tiny_dataset, tmp_path, policy):
  _, data = tiny_dataset
  info = tasks.train(tiny_config(data, tmp_path, cpu_replicas=2, mixed_precision=policy,
                                    steps_per_epoch=2))
  assert info["replicas"] == 2 and info["mixed_precision"] == policy
  rows = history(tmp_path)
  assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"]))
  assert np.isfinite(float(rows[0]["val_loss"]))
  model = keras.models.load_model(tmp_path / run_dir.MODEL_FILE)
  assert model.get_layer("probabilities").dtype_policy.compute_dtype == "float32"
  assert model.get_layer("head_dense").dtype_policy.compute_dtype == policy.split("_")[1]
  if policy == "mixed_float16":
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
  images, _ = next(iter(input_pipeline.input_fn(data, "test", 4, training=False,
                                                image_size=32)))
  probabilities = model.predict_on_batch(images)
  assert probabilities.dtype == np.float32
  assert ((probabilities >= 0) & (probabilities <= 1)).all()
  keras.mixed_precision.set_global_policy("float32")


def test_saved_model_export_matches_the_keras_model(trained_tagger):
  data, model_dir = trained_tagger
  model = keras.models.load_model(os.path.join(model_dir, run_dir.MODEL_FILE))
  exported = tf.saved_model.load(os.path.join(model_dir, run_dir.SAVED_MODEL_DIR))
  images, _ = next(iter(input_pipeline.input_fn(data, "test", 4, training=False,
                                                image_size=32)))
  np.testing.assert_allclose(exported.serve(images).numpy(),
                             model.predict_on_batch(images), atol=1e-5)
  with open(os.path.join(model_dir, "tags.labels.txt"), encoding="utf-8") as f:
    assert f.read().split() == dataset_lib.class_names(dataset_lib.load_builder(data), "tags")


class StopAfterEpoch(keras.callbacks.Callback):
  """Kills training at the end of an epoch, after the checkpoints were written."""

  def __init__(self, epoch):
    super().__init__()
    self.epoch = epoch

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 == self.epoch:
      raise KeyboardInterrupt("killed")


def test_killed_run_resumes_at_the_next_epoch_and_keeps_the_best(tiny_dataset, tmp_path):
  _, data = tiny_dataset
  config = tiny_config(data, tmp_path, epochs=3, steps_per_epoch=2)
  with pytest.raises(KeyboardInterrupt):
    tasks.train(config, extra_callbacks=[StopAfterEpoch(1)])
  assert [r["epoch"] for r in history(tmp_path)] == ["0"]
  assert not os.path.exists(tmp_path / run_dir.MODEL_INFO_FILE)
  weights_after_1 = keras.models.load_model(tmp_path / run_dir.BEST_MODEL).get_weights()

  class Record(keras.callbacks.Callback):
    first_epoch = None
    weights = None

    def on_epoch_begin(self, epoch, logs=None):
      if Record.first_epoch is None:
        Record.first_epoch = epoch
        Record.weights = self.model.get_weights()

  info = tasks.train(config, extra_callbacks=[Record()])
  assert Record.first_epoch == 1  # continued with epoch 2, not from scratch
  # ...from the state the killed run saved (its last epoch is also its best).
  for restored, saved in zip(Record.weights, weights_after_1):
    np.testing.assert_allclose(restored, saved, rtol=1e-6)
  rows = history(tmp_path)
  assert [r["epoch"] for r in rows] == ["0", "1", "2"]
  losses = [float(r["val_loss"]) for r in rows]
  best = json.loads((tmp_path / run_dir.BEST_FILE).read_text())
  assert best["val_loss"] == pytest.approx(min(losses), rel=1e-5)
  assert best["epoch"] == int(np.argmin(losses)) + 1 == info["best_epoch"]


def test_a_kill_during_the_backup_leaves_a_resumable_run(tiny_dataset, tmp_path, monkeypatch):
  """Killed while the second epoch's backup is half written, the run resumes from the
  first epoch's backup (Keras's own callback rewrote latest.weights.h5 in place: torn)."""
  _, data = tiny_dataset
  config = tiny_config(data, tmp_path, epochs=3, steps_per_epoch=2)
  real = keras.Model.save_weights
  calls = []

  def torn(self, filepath, *args, **kwargs):
    calls.append(filepath)
    real(self, filepath, *args, **kwargs)
    if len(calls) == 2:  # Killed half-way through writing the second backup.
      with open(filepath, "r+b") as f:
        f.truncate(os.path.getsize(filepath) // 2)
      raise KeyboardInterrupt

  monkeypatch.setattr(keras.Model, "save_weights", torn)
  with pytest.raises(KeyboardInterrupt):
    tasks.train(config)
  monkeypatch.undo()
  info = tasks.train(config)
  assert info["epochs"] == 3
  assert [r["epoch"] for r in history(tmp_path)] == ["0", "1", "2"]
  backup = tmp_path / run_dir.BACKUP_DIR
  assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]


def test_finished_run_is_not_trained_again_unless_overwrite(trained_tagger, caplog):
  data, model_dir = trained_tagger
  config = tiny_config(data, model_dir, epochs=2, steps_per_epoch=3)
  before = history(model_dir)
  with caplog.at_level(logging.INFO):
    info = tasks.train(config)
  assert "nothing to do" in caplog.text
  assert history(model_dir) == before and info["epochs"] == 2


def test_other_settings_in_the_same_model_dir_are_refused(trained_tagger):
  data, model_dir = trained_tagger
  with pytest.raises(ValueError, match="other settings.*learning_rate"):
    tasks.train(tiny_config(data, model_dir, epochs=2, steps_per_epoch=3,
                               learning_rate=0.5))


def test_overwrite_starts_over(tiny_dataset, tmp_path):
  _, data = tiny_dataset
  tasks.train(tiny_config(data, tmp_path))
  tasks.train(tiny_config(data, tmp_path, overwrite=True))
  assert [r["epoch"] for r in history(tmp_path)] == ["0"]


def test_frozen_layers_count_like_model_layers_and_need_pretrained_weights(tmp_path, caplog):
  weights = str(tmp_path / "vgg16_notop.weights.h5")
  models.build_backbone("vgg16", 32, None).save_weights(weights)
  backbone = models.build_backbone("vgg16", 32, weights)
  assert models.freeze_layers(backbone, 11, weights) == 11
  frozen = [layer.name for layer in backbone.layers if not layer.trainable]
  assert frozen[0] == backbone.layers[0].name and frozen[-1] == "block3_pool"
  assert len(frozen) == 11 and backbone.layers[11].trainable
  fresh = models.build_backbone("vgg16", 32, None)
  with caplog.at_level(logging.WARNING):
    assert models.freeze_layers(fresh, 11, None) == 0
  assert "every layer trains" in caplog.text
  assert all(layer.trainable for layer in fresh.layers)


def test_model_takes_uint8_and_applies_vgg_preprocessing(tiny_dataset, tmp_path):
  _, data = tiny_dataset
  config = tiny_config(data, tmp_path)
  model = tasks.get_task("tagger").build_model(config, 5)
  assert model.input.dtype == "uint8" and model.output.shape == (None, 5)
  pixel = np.array([[[[10, 20, 30]]]], np.uint8)
  out = models.VGGPreprocess()(pixel).numpy()
  np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68],
                             rtol=1e-5)


def test_precision_auto_on_this_cpu():
  expected = "mixed_bfloat16" if loop.cpu_has_bf16() else "float32"
  assert loop.resolve_precision("auto") == expected
  assert loop.resolve_precision("float32") == "float32"


def test_a_corrupt_shard_is_named_when_training_hits_it(tiny_dataset, tmp_path):
  import shutil
  _, data = tiny_dataset
  copy = tmp_path / "data"
  shutil.copytree(data, copy)
  for shard in sorted(copy.glob("*-train.tfrecord-*")):
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # Same size, a flipped byte: only the CRC can tell.
    shard.write_bytes(bytes(raw))
  with pytest.raises(dataset_lib.DatasetError, match=r"train\.tfrecord-0000\d-of-00002 is corrupt"):
    tasks.train(tiny_config(str(copy), tmp_path / "run"))


def test_overwrite_refuses_a_folder_that_is_not_a_run(tiny_dataset, tmp_path):
  _, data = tiny_dataset
  (tmp_path / "precious.txt").write_text("mine")
  with pytest.raises(ValueError, match="not a training run"):
    tasks.train(tiny_config(data, tmp_path, overwrite=True))
  assert (tmp_path / "precious.txt").read_text() == "mine"


def test_training_on_drops_the_old_export_and_thresholds(tiny_dataset, tmp_path):
  _, data = tiny_dataset
  tasks.train(tiny_config(data, tmp_path, epochs=1))
  for name in run_dir.CALIBRATION_FILES:  # "thresholds.json" among them (older runs).
    (tmp_path / name).write_text("{}")
  seen = []

  class Look(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      seen.append(sorted(os.listdir(tmp_path)))

  info = tasks.train(tiny_config(data, tmp_path, epochs=2), extra_callbacks=[Look()])
  assert not set(run_dir.CALIBRATION_FILES) & set(seen[0])
  assert "thresholds.json" not in seen[0] and run_dir.MODEL_INFO_FILE not in seen[0]
  assert info["epochs"] == 2 and [r["epoch"] for r in history(tmp_path)] == ["0", "1"]


def test_a_dataset_without_validation_examples_is_refused_before_any_epoch(tmp_path):
  from alti2v.tasks import tagger
  from beam_jobs import build_tagged_dataset
  images, data = tmp_path / "images", tmp_path / "dataset"
  tagger.write_corpus(str(images), 12, seed=3)
  build_tagged_dataset.run([
      "--input_dir", str(images), "--output_dir", str(data), "--image_size", "32",
      "--num_shards", "1", "--val_fraction", "0", "--test_fraction", "0.25",
      "--direct_running_mode=in_memory", "--direct_num_workers=1"])
  run = tmp_path / "run"
  with pytest.raises(ValueError, match=r"no validation examples \(built with "
                     r"--val_fraction 0.0\).*--val_fraction > 0"):
    tasks.train(tiny_config(str(data), run, epochs=3))
  assert not run.exists()  # No epoch, no history.csv, not even config.json.


def test_offline_imagenet_weights_end_in_one_line_that_says_what_to_do(tiny_dataset, tmp_path):
  import subprocess
  import sys
  _, data = tiny_dataset
  env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"),  # No cached copy.
             # Offline on any machine: the download goes to a closed port.
             https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
             no_proxy="", NO_PROXY="")
  result = subprocess.run(
      [sys.executable, "-m", "alti2v.train", "--data_dir", data,
       "--model_dir", str(tmp_path / "run"), "--backbone=vgg16", "--weights=imagenet",
       "--image_size=32", "--hidden_units=8", "--epochs=1", "--steps_per_epoch=1",
       "--batch_size=8"],
      capture_output=True, text=True, env=env, check=False)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: the ImageNet weights of VGG16 could not be downloaded")
  assert f"--weights=/path/{models.backbones.VGG16_NOTOP_FILE}" in last
  assert "--weights=none" in last and models.backbones.VGG16_NOTOP_URL in last


@pytest.fixture
def op_determinism_off_afterwards():
  yield
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-direct-tensorflow-import
  tf_config.disable_op_determinism()  # It is process-wide: later tests run as alone.


@pytest.mark.parametrize("cpu_replicas", [0, 2])
def test_deterministic_runs_are_bit_for_bit_repeatable(tiny_dataset, tmp_path, cpu_replicas,
                                                       op_determinism_off_afterwards):
  _, data = tiny_dataset

  def run(name, seed):
    model_dir = tmp_path / name
    tasks.train(tiny_config(data, model_dir, epochs=2, steps_per_epoch=3, seed=seed,
                               cpu_replicas=cpu_replicas, deterministic=True,
                               augmentations=("flip", "crop")))
    weights = keras.models.load_model(model_dir / run_dir.MODEL_FILE).get_weights()
    return weights, [(r["loss"], r["val_loss"]) for r in history(model_dir)]

  weights, losses = run("first", seed=1)
  again_weights, again_losses = run("again", seed=1)
  assert len(weights) == len(again_weights)
  assert all(np.array_equal(a, b) for a, b in zip(weights, again_weights))
  assert losses == again_losses  # Every digit CSVLogger wrote.
  if cpu_replicas:
    return  # The seed's effect needs checking once.
  other_weights, other_losses = run("other_seed", seed=2)  # Or the test could not fail.
  assert not all(np.array_equal(a, b) for a, b in zip(weights, other_weights))
  assert losses != other_losses


def test_one_replica_mirrored_training_validates_every_epoch(tiny_dataset, tmp_path):
  # The one-GPU path: a distributed validation set that was not repeated ran out in epoch 2.
  _, data = tiny_dataset
  info = tasks.train(tiny_config(data, tmp_path, cpu_replicas=1, epochs=2))
  assert info["replicas"] == 1
  rows = history(tmp_path)
  assert [r["epoch"] for r in rows] == ["0", "1"]
  assert all(np.isfinite(float(r["val_loss"])) for r in rows)


def test_deterministic_input_pipeline_repeats_order_and_augmentations(tiny_dataset):
  _, data = tiny_dataset

  def first_batches(seed):
    ds = input_pipeline.input_fn(data, "train", 8, training=True, image_size=32, seed=seed,
                                 augmentations=("flip", "crop"), deterministic=True,
                                 with_path=True)
    return [(images.numpy(), paths.numpy()) for images, _, paths in ds.take(10)]

  first, again, other = first_batches(5), first_batches(5), first_batches(6)
  for (images, paths), (images_again, paths_again) in zip(first, again):
    np.testing.assert_array_equal(paths, paths_again)
    np.testing.assert_array_equal(images, images_again)
  assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))
  with pytest.raises(ValueError, match="needs a seed"):
    input_pipeline.input_fn(data, "train", 8, training=True, deterministic=True)


def test_a_run_from_before_a_setting_existed_resumes_with_its_default(tmp_path):
  import dataclasses
  config = tiny_config("data", tmp_path)
  stored = dataclasses.asdict(config)
  del stored["deterministic"]  # config.json of a run made before the field was added.
  (tmp_path / run_dir.CONFIG_FILE).write_text(json.dumps(stored))
  assert run_dir.prepare(config) is None
  (tmp_path / run_dir.CONFIG_FILE).write_text(json.dumps(stored))
  with pytest.raises(ValueError, match=r"other settings \(deterministic\)"):
    run_dir.prepare(dataclasses.replace(config, deterministic=True))
