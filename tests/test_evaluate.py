"""Evaluation through the run's own task: a tagger's figures and files, the command, a filter's baselines."""
import csv
import json
import os

import pytest

from alti2v import tasks
from alti2v.tasks import tagger
from alti2v.training import run_dir


def test_evaluate_a_trained_tagger(trained_tagger):
  data, model_dir = trained_tagger
  task, result = tasks.run_evaluation(model_dir, data, tasks.EvalOptions(split="test"))
  assert task is tagger.TAGGER
  assert 0.0 <= result["map"] <= 1.0
  labels, _ = task.predict_split(run_dir.load(model_dir), data, "test", 32)
  # The constant predictor's AP of a tag is the tag's positive rate in the split.
  rates = labels.mean(0)
  assert result["constant_map"] == pytest.approx(rates[rates > 0].mean())
  assert result["num_examples"] == len(labels)
  assert result["thresholds"] == os.path.join(model_dir, run_dir.TAG_THRESHOLDS_FILE)
  with open(result["thresholds"], encoding="utf-8") as f:
    thresholds = json.load(f)["thresholds"]
  with open(os.path.join(model_dir, "tags.labels.txt"), encoding="utf-8") as f:
    vocabulary = f.read().split()
  assert list(thresholds) == vocabulary
  assert list(run_dir.load(model_dir).thresholds) == list(thresholds.values())
  with open(result["per_tag_csv"], encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["tag"] for r in rows] == vocabulary
  assert [int(r["support"]) for r in rows] == labels.sum(0).astype(int).tolist()


def test_the_evaluate_command_prints_every_figure_beside_its_baseline(trained_tagger, tmp_path):
  import subprocess
  import sys
  data, model_dir = trained_tagger
  out = tmp_path / "result.json"
  done = subprocess.run(
      [sys.executable, "-m", "alti2v.evaluate", "--model_dir", model_dir, "--data_dir", data,
       "--split", "test", "--output_json", str(out)],
      capture_output=True, text=True, check=True,
      env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
  result = json.loads(out.read_text())
  assert result["task"] == "tagger"
  assert (f"mAP {result['map']:.4f}  (baseline, each tag's train frequency: "
          f"{result['constant_map']:.4f}") in done.stdout
  assert done.stdout.strip() == tagger.TAGGER.report(result, model_dir)


def test_screen_evaluation_reports_its_baselines(screen_dataset, screen_model):
  _, data = screen_dataset
  _, result = tasks.run_evaluation(screen_model, data)
  assert result["baseline_roc_auc"] == 0.5
  positives = result["confusion"]["true_positive"] + result["confusion"]["false_negative"]
  assert result["baseline_pr_auc"] == pytest.approx(positives / result["num_examples"])


def test_a_folder_without_a_finished_run_is_named(tmp_path, tiny_dataset):
  _, data = tiny_dataset
  with pytest.raises(FileNotFoundError, match="holds no finished training run"):
    tasks.run_evaluation(str(tmp_path), data)
