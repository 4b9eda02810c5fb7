"""alti2v.evaluate: metrics on hand-computed examples, then on a trained model."""
import csv
import json
import os

import numpy as np
import pytest

from alti2v import evaluate


def test_average_precision_by_hand():
  # ranks: 0.9 pos (P=1, R=.5), 0.8 neg, 0.3 pos (P=2/3, R=1) → .5*1 + .5*2/3
  assert evaluate.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(5 / 6)
  assert evaluate.average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
  # A constant score is one threshold: AP = the positive rate.
  assert evaluate.average_precision([1, 0, 1, 0], [0.3] * 4) == pytest.approx(0.5)
  # Ties: 0.5 holds one positive and one negative → P=1/2 at R=1/2; then 0.2 pos → P=2/3.
  assert evaluate.average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(
      0.5 * 0.5 + 0.5 * 2 / 3)
  assert np.isnan(evaluate.average_precision([0, 0], [0.1, 0.2]))


def test_mean_average_precision_skips_tags_without_positives():
  labels = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1]])
  scores = np.array([[0.9, 0.1, 0.2], [0.2, 0.3, 0.9], [0.8, 0.2, 0.1]])
  map_, aps = evaluate.mean_average_precision(labels, scores)
  # tag 0: perfect (1.0); tag 1: no positive; tag 2: 0.9 pos (P=1), 0.2 neg, 0.1 pos (P=2/3)
  assert np.isnan(aps[1])
  assert aps[2] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  assert map_ == pytest.approx((1.0 + aps[2]) / 2)


def test_best_f1_threshold_by_hand():
  # thresholds 0.9: F1 2/3; 0.7: 1/2; 0.6: tp 2, predicted 3 → 4/5; 0.1: 4/6
  threshold, f1 = evaluate.best_f1_threshold([1, 1, 0, 0], [0.9, 0.6, 0.7, 0.1])
  assert threshold == pytest.approx(0.6) and f1 == pytest.approx(0.8)


def test_rare_tags_get_the_floor():
  labels = np.array([[1, 1], [0, 1], [0, 1], [0, 1], [0, 1], [0, 0]])
  scores = np.array([[0.2, 0.4], [0.1, 0.45], [0.1, 0.5], [0.1, 0.6], [0.1, 0.7], [0.1, 0.1]])
  thresholds = evaluate.calibrate_thresholds(labels, scores, min_support=5, rare_floor=0.5)
  # tag 0: one positive, best-F1 threshold 0.2, floored to 0.5; tag 1: 5 positives, 0.4 kept.
  assert thresholds == pytest.approx([0.5, 0.4])


def test_micro_and_macro_f1_by_hand():
  labels = np.array([[1, 0], [1, 1], [0, 1]])
  scores = np.array([[0.9, 0.6], [0.2, 0.8], [0.1, 0.3]])
  result = evaluate.f1_at(labels, scores, np.array([0.5, 0.5]))
  # tag 0: tp 1, fn 1 → F1 2/3; tag 1: tp 1, fp 1, fn 1 → F1 1/2; micro: tp 2, fp 1, fn 2 → 4/7
  assert result["f1"] == pytest.approx([2 / 3, 0.5])
  assert result["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
  assert result["micro_f1"] == pytest.approx(4 / 7)


def test_evaluate_a_trained_model(trained_tagger):
  data, model_dir = trained_tagger
  result = evaluate.evaluate(model_dir, data, "test")
  assert 0.0 <= result["map"] <= 1.0
  labels, _ = evaluate.predict_split(
      __import__("keras").models.load_model(os.path.join(model_dir, "model.keras")),
      data, "test", 32)
  # The constant predictor's AP of a tag is the tag's positive rate in the split.
  rates = labels.mean(0)
  assert result["constant_map"] == pytest.approx(rates[rates > 0].mean())
  assert result["num_examples"] == len(labels)
  with open(os.path.join(model_dir, "thresholds.json"), encoding="utf-8") as f:
    thresholds = json.load(f)["thresholds"]
  with open(os.path.join(model_dir, "tags.labels.txt"), encoding="utf-8") as f:
    vocabulary = f.read().split()
  assert list(thresholds) == vocabulary
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


def test_screen_evaluation_reports_its_baselines(screen_dataset, screen_model):
  _, data = screen_dataset
  result = evaluate.evaluate_screen(screen_model, data, "test")
  assert result["baseline_roc_auc"] == 0.5
  positives = result["confusion"]["true_positive"] + result["confusion"]["false_negative"]
  assert result["baseline_pr_auc"] == pytest.approx(positives / result["num_examples"])
