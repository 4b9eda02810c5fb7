"""Test set-up: the CPU split into 2 logical devices (MirroredStrategy tests), shared fixtures.

The split must happen before TensorFlow initialises its devices, i.e. before any test
runs an op: hence here, at import.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, as in CI.

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_CPU_REPLICAS = 2
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_CPU_REPLICAS)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
  """(images_dir, data_dir): 60 sample images stored at 32 px, 2 shards per split, built
  with the sample's tag categories."""
  from alti2v.tasks import tagger
  from beam_jobs import build_tagged_dataset
  root = tmp_path_factory.mktemp("tiny")
  images, data = root / "images", root / "dataset"
  tagger.write_corpus(str(images), 60, seed=3)
  categories = tagger.write_tag_categories(str(root / "tag_categories.csv"))
  build_tagged_dataset.run([
      "--input_dir", str(images), "--output_dir", str(data), "--image_size", "32",
      "--tag_categories", categories,
      "--num_shards", "2", "--val_fraction", "0.25", "--test_fraction", "0.25",
      "--direct_running_mode=in_memory", "--direct_num_workers=1"])
  return str(images), str(data)


def tiny_config(data_dir, model_dir, **overrides):
  """The demo config shrunk to seconds: small CNN, 32 px, a few steps."""
  from alti2v.training.config import TrainConfig
  values = dict(task="tagger", data_dir=data_dir, model_dir=str(model_dir),
                backbone="small", weights="none", image_size=32, batch_size=8,
                epochs=1, steps_per_epoch=2, hidden_units=16, dropout=0.3,
                mixed_precision="float32", shuffle_buffer=64)
  values.update(overrides)
  return TrainConfig(**values)


@pytest.fixture(scope="session")
def trained_tagger(tiny_dataset, tmp_path_factory):
  """(data_dir, model_dir) of a tagger trained for a few steps on tiny_dataset."""
  from alti2v import tasks
  _, data_dir = tiny_dataset
  model_dir = tmp_path_factory.mktemp("tagger")
  tasks.train(tiny_config(data_dir, model_dir, epochs=2, steps_per_epoch=3))
  return data_dir, str(model_dir)


@pytest.fixture(scope="session")
def screen_dataset(tmp_path_factory):
  """(sorted_dir, data_dir): 40 images in positive/ and negative/ at 32 px, plus one outside."""
  from alti2v.data import samples
  from alti2v.tasks import screen
  from beam_jobs import build_folder_dataset
  root = tmp_path_factory.mktemp("screen")
  sorted_dir, data = root / "sorted", root / "dataset"
  screen.write_folders(str(sorted_dir), 40, seed=4)
  (sorted_dir / "unsorted").mkdir()
  samples.draw_sample(999, 4).image.save(sorted_dir / "unsorted" / "x.jpg")
  build_folder_dataset.run([
      "--input_dir", str(sorted_dir), "--output_dir", str(data), "--image_size", "32",
      "--val_fraction", "0.25", "--test_fraction", "0.25",
      "--direct_running_mode=in_memory", "--direct_num_workers=1"])
  return str(sorted_dir), str(data)


@pytest.fixture(scope="session")
def screen_model(screen_dataset, tmp_path_factory):
  """model_dir of a screening filter trained for a few steps on screen_dataset."""
  from alti2v import tasks
  _, data = screen_dataset
  model_dir = tmp_path_factory.mktemp("screen_model")
  tasks.train(tiny_config(data, model_dir, task="screen", steps_per_epoch=3))
  return str(model_dir)


@pytest.fixture(scope="session")
def tagger_index(trained_tagger, tiny_dataset, tmp_path_factory):
  """(vectors folder, its image paths): 20 of tiny_dataset's images embedded by
  `python -m alti2v.embed` with trained_tagger (serve --index)."""
  import subprocess
  import sys
  images, _ = tiny_dataset
  paths = sorted(os.path.join(root, name) for root, _, names in os.walk(images)
                 for name in names if name.endswith((".jpg", ".png")))[:20]
  out = str(tmp_path_factory.mktemp("tagger_index") / "vectors")
  subprocess.run([sys.executable, "-m", "alti2v.embed", "--model_dir", trained_tagger[1],
                  "--output", out, "--noprogress", *paths],
                 check=True, capture_output=True, timeout=300)
  return out, paths
