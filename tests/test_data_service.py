"""tf.data service: `python -m alti2v.data_service` dispatcher and two workers on 127.0.0.1;
one epoch through them delivers every record once, training reads on past its first pass,
and a run trains through them."""
import collections
import csv
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from alti2v.data import service as data_service
from alti2v import tasks
from alti2v.data import input_pipeline
from alti2v.training import run_dir
from tests.conftest import tiny_config


def start(role, *flags):
  """A data service process started by its command; returns (process, address it printed)."""
  proc = subprocess.Popen(
      [sys.executable, "-m", "alti2v.data_service", role, "--port=0", "--host=127.0.0.1",
       *flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  line = proc.stdout.readline().strip()  # Printed once it serves.
  assert line.startswith(f"{role} at grpc://127.0.0.1:"), line
  return proc, line.split(" at ")[1]


@pytest.fixture(scope="module")
def service():
  """grpc://127.0.0.1:PORT of a dispatcher with two workers (each its own process)."""
  dispatcher, address = start("dispatcher")
  workers = [start("worker", f"--dispatcher_address={address}") for _ in range(2)]
  yield address
  for proc, _ in [(dispatcher, None), *workers]:
    proc.kill()
    proc.wait()


def test_one_epoch_through_the_service_delivers_every_record_once(tiny_dataset, service):
  _, data = tiny_dataset

  def paths(**kwargs):
    ds = input_pipeline.input_fn(data, "train", 4, training=False, image_size=32,
                                 with_path=True, **kwargs)
    return [p for _, _, batch in ds for p in batch.numpy()]

  local, served = paths(), paths(data_service=service)
  assert len(local) == input_pipeline.num_examples(data, "train") == 31
  assert sorted(served) == sorted(local)  # Each record once: none lost, none twice.
  # A second epoch (a new job of the same dataset) delivers them all once again.
  assert sorted(paths(data_service=service)) == sorted(local)


@pytest.fixture(scope="module")
def several_shards(tmp_path_factory):
  """data_dir of 240 sample images at 32 px in 4 shards per split: several files for the
  dispatcher to hand out, fewer records than the default shuffle buffer (as reported)."""
  from alti2v.tasks import tagger
  from beam_jobs import build_tagged_dataset
  root = tmp_path_factory.mktemp("shards")
  tagger.write_corpus(str(root / "images"), 240, seed=5)
  build_tagged_dataset.run([
      "--input_dir", str(root / "images"), "--output_dir", str(root / "dataset"),
      "--image_size", "32", "--num_shards", "4", "--val_fraction", "0.1",
      "--test_fraction", "0.1", "--direct_running_mode=in_memory",
      "--direct_num_workers=1"])
  return str(root / "dataset")


def test_training_through_the_service_reads_past_its_first_pass(several_shards, service):
  # Issue 14: training through the service was reported to stall after one pass. Read
  # three passes' worth of batches in a thread: a stall fails here instead of hanging.
  passes, batch = 3, 16
  ds = input_pipeline.input_fn(several_shards, "train", batch, training=True,
                               image_size=32, seed=0, with_path=True,
                               data_service=service)
  num_train = input_pipeline.num_examples(several_shards, "train")
  wanted = passes * num_train // batch
  paths = []

  def read():
    for _, labels, batch_paths in ds:
      assert labels.shape[0] == batch  # drop_remainder: whole batches only.
      paths.extend(batch_paths.numpy())
      if len(paths) == wanted * batch:
        return

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  reader.join(timeout=90)
  assert len(paths) == wanted * batch, (
      f"stalled after {len(paths) // batch} of {wanted} batches "
      f"({num_train // batch} per pass)")
  # Every record was read, none far more often than the others: the workers' repeats
  # go on handing out the files pass after pass.
  counts = collections.Counter(paths)
  assert len(counts) == num_train
  assert max(counts.values()) <= 2 * passes


def test_a_run_trains_through_the_service(tiny_dataset, service, tmp_path):
  _, data = tiny_dataset
  info = tasks.train(tiny_config(data, tmp_path, epochs=2, steps_per_epoch=2,
                                 data_service=service))
  assert info["epochs"] == 2 and (tmp_path / run_dir.MODEL_INFO_FILE).exists()
  with open(tmp_path / run_dir.HISTORY_FILE, encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["epoch"] for r in rows] == ["0", "1"]
  assert all(np.isfinite(float(r[k])) for r in rows for k in ("loss", "val_loss"))
  assert info["best_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows))


def test_data_service_settings_are_checked(tiny_dataset):
  _, data = tiny_dataset
  with pytest.raises(ValueError, match="grpc://HOST:PORT"):
    tiny_config(data, "run", data_service="localhost:5050")
  with pytest.raises(ValueError, match="deterministic.*data service"):
    tiny_config(data, "run", data_service="grpc://localhost:5050", deterministic=True)
  with pytest.raises(ValueError, match="^a worker needs --dispatcher_address HOST:PORT$"):
    data_service.start("worker")  # The command prints it as "error: ..." and exits 1.
