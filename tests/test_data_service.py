"""tf.data service: `python -m alti2v.data_service` dispatcher and two workers on 127.0.0.1;
one epoch through them delivers every record once, and a run trains through them."""
import csv
import os
import subprocess
import sys

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
