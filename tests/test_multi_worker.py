"""--strategy=multi_worker: two worker processes on 127.0.0.1, one killed and restarted, the
run resumed and finished with the files of a single-worker run."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from alti2v.data import input_pipeline
from alti2v.training import distribute
from alti2v.training import run_dir
from tests.conftest import tiny_config

# The flags of tiny_config(epochs=2, steps_per_epoch=3): trained_tagger's run.
TINY_FLAGS = ["--backbone=small", "--weights=none", "--image_size=32", "--batch_size=8",
              "--epochs=2", "--steps_per_epoch=3", "--hidden_units=16", "--dropout=0.3",
              "--mixed_precision=float32", "--shuffle_buffer=64"]
RUN_FILES = {run_dir.CONFIG_FILE, run_dir.BACKUP_DIR, run_dir.BEST_MODEL, run_dir.BEST_FILE,
             run_dir.HISTORY_FILE, run_dir.LOG_DIR, run_dir.MODEL_FILE,
             run_dir.SAVED_MODEL_DIR, "tags.labels.txt", "tags.categories.txt",
             run_dir.MODEL_INFO_FILE, run_dir.MODEL_CARD_FILE}
TIMEOUT_S = 300  # Per phase; a 2-core CI machine takes ~40 s.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_cluster(data_dir, model_dir, logs, tmp_dir, phase):
  """Two `python -m alti2v.train --strategy=multi_worker` processes (worker 0 = chief)."""
  ports = [free_port(), free_port()]
  procs = []
  for index in range(2):
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                 "task": {"type": "worker", "index": index}}
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(tmp_dir),
               CUDA_VISIBLE_DEVICES="")
    out = open(logs / f"{phase}_{index}.out", "w", encoding="utf-8")
    err = open(logs / f"{phase}_{index}.err", "w", encoding="utf-8")
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "alti2v.train", "--data_dir", data_dir, "--model_dir",
         str(model_dir), "--strategy=multi_worker", *TINY_FLAGS],
        env=env, stdout=out, stderr=err))
  return procs


def read(logs, name):
  return (logs / name).read_text(encoding="utf-8")


def history(model_dir):
  with open(os.path.join(model_dir, run_dir.HISTORY_FILE), encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_multi_worker_needs_tf_config(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(ValueError, match="multi_worker needs TF_CONFIG"):
    distribute.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", '{"task": {"type": "worker"}}')
  with pytest.raises(ValueError, match="cluster with workers"):
    distribute.make_strategy("multi_worker")
  with pytest.raises(ValueError, match="cpu_replicas=2.*multi_worker"):
    tiny_config("d", "m", strategy="multi_worker", cpu_replicas=2)


def test_a_killed_worker_restarted_resumes_and_ends_like_one_worker(trained_tagger, tmp_path):
  data, single = trained_tagger  # tiny_config(epochs=2, steps_per_epoch=3), one worker.
  model_dir, logs, tmp_dir = tmp_path / "run", tmp_path / "logs", tmp_path / "tmp"
  logs.mkdir()
  tmp_dir.mkdir()
  chief, worker = start_cluster(data, model_dir, logs, tmp_dir, "first")
  try:
    metadata = model_dir / run_dir.BACKUP_DIR / "training_metadata.json"
    deadline = time.monotonic() + TIMEOUT_S
    while not metadata.exists() and chief.poll() is None and time.monotonic() < deadline:
      time.sleep(0.2)
    assert metadata.exists(), read(logs, "first_0.err")[-3000:]
    assert json.loads(metadata.read_text())["epoch"] == 1
    worker.send_signal(signal.SIGKILL)  # In epoch 2: the chief's backup holds epoch 1.
    worker.wait()
    # MultiWorkerMirroredStrategy does not go on with fewer workers: the chief's next
    # collective op fails once the coordination service misses the dead worker's
    # heartbeats, and it exits in one line that says how to restart.
    assert chief.wait(timeout=TIMEOUT_S) == 1
  finally:
    for proc in (chief, worker):
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  err = read(logs, "first_0.err")
  assert "Traceback" not in err
  assert [line for line in err.splitlines() if line.startswith("error:")] == [
      next(line for line in err.splitlines() if line.startswith(
          "error: the cluster lost a worker ("))]
  assert "restart every worker with the same command" in err
  assert not (model_dir / run_dir.MODEL_INFO_FILE).exists()
  assert [r["epoch"] for r in history(model_dir)] == ["0"]

  chief, worker = start_cluster(data, model_dir, logs, tmp_dir, "again")
  try:
    assert chief.wait(timeout=TIMEOUT_S) == 0, read(logs, "again_0.err")[-3000:]
    assert worker.wait(timeout=TIMEOUT_S) == 0, read(logs, "again_1.err")[-3000:]
  finally:
    for proc in (chief, worker):
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  chief_out, worker_out = read(logs, "again_0.out"), read(logs, "again_1.out")
  assert "Epoch 2/2" in chief_out and "Epoch 1/2" not in chief_out  # Resumed, not redone.
  assert chief_out.strip().splitlines()[-1].startswith(f"model in {model_dir}: best epoch")
  assert worker_out.strip().splitlines()[-1].startswith("worker done: best epoch")

  # The files of a single-worker run of the same config, and nothing of worker 1's.
  assert set(os.listdir(model_dir)) == RUN_FILES
  assert RUN_FILES <= set(os.listdir(single))
  # The killed worker's temporary directory is left; the restarted one removed its own.
  assert [name.split("_")[1] for name in os.listdir(tmp_dir)
          if name.startswith("alti2v_")] == ["worker-1"]
  rows, single_rows = history(model_dir), history(single)
  assert [r["epoch"] for r in rows] == [r["epoch"] for r in single_rows] == ["0", "1"]
  assert list(rows[0]) == list(single_rows[0])
  assert all(np.isfinite(float(r["val_loss"])) for r in rows)
  info = json.loads((model_dir / run_dir.MODEL_INFO_FILE).read_text())
  with open(os.path.join(single, run_dir.MODEL_INFO_FILE), encoding="utf-8") as f:
    single_info = json.load(f)
  assert info["replicas"] == 2 and single_info["replicas"] == 1
  different = {"replicas", "best_epoch", "best_val_loss"}  # Other batches: other weights.
  assert ({k: v for k, v in info.items() if k not in different}
          == {k: v for k, v in single_info.items() if k not in different})
  assert info["best_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows))
  with open(os.path.join(single, "tags.labels.txt"), encoding="utf-8") as f:
    assert (model_dir / "tags.labels.txt").read_text(encoding="utf-8") == f.read()
  images, _ = next(iter(input_pipeline.input_fn(data, "test", 4, training=False,
                                                image_size=32)))
  model = keras.models.load_model(model_dir / run_dir.MODEL_FILE)
  single_model = keras.models.load_model(os.path.join(single, run_dir.MODEL_FILE))
  assert [w.shape for w in model.get_weights()] == [w.shape for w in
                                                     single_model.get_weights()]
  scores = model.predict_on_batch(images)
  assert scores.shape == single_model.predict_on_batch(images).shape == (4, info["num_outputs"])
  assert ((scores >= 0) & (scores <= 1)).all()
