"""evaluate writes RUN/metrics.json (merged by split) and the model card RUN/README.md."""
import json
import os
import re
import shutil

import pytest

from alti2v import tasks
from alti2v.training import model_card
from alti2v.training import run_dir


def card_tables(text):
  """{split: {figure: (model, baseline)}} read back from the card's metrics tables."""
  tables, split = {}, None
  for line in text.splitlines():
    heading = re.match(r"`(\w+)` split, \d+ images", line)
    if heading:
      split = heading.group(1)
      tables[split] = {}
    elif split and line.startswith("| ") and not line.startswith(("| figure", "|---")):
      figure, model, baseline, _ = [cell.strip() for cell in line.strip("|").split("|")]
      tables[split][figure] = (model, baseline)
    elif line.startswith("## ") and split:
      split = None
  return tables


def test_evaluate_writes_metrics_and_a_card_whose_numbers_are_the_metrics(trained_tagger):
  data, model_dir = trained_tagger
  tasks.run_evaluation(model_dir, data, tasks.EvalOptions(split="validation"))
  _, test = tasks.run_evaluation(model_dir, data, tasks.EvalOptions(split="test"))
  with open(os.path.join(model_dir, run_dir.METRICS_FILE), encoding="utf-8") as f:
    metrics = json.load(f)
  assert metrics["task"] == "tagger"
  assert sorted(metrics["splits"]) == ["test", "validation"]  # Merged, not replaced.
  assert metrics["splits"]["test"]["map"] == test["map"]
  assert metrics["splits"]["test"]["constant_map"] == test["constant_map"]
  with open(os.path.join(model_dir, run_dir.MODEL_CARD_FILE), encoding="utf-8") as f:
    card = f.read()
  tables = card_tables(card)
  assert sorted(tables) == ["test", "validation"]
  for split, result in metrics["splits"].items():
    assert tables[split]["map"] == (f"{result['map']:.4f}", f"{result['constant_map']:.4f}")
    assert tables[split]["micro_f1"] == (f"{result['micro_f1']:.4f}", "—")
    assert f"`{split}` split, {result['num_examples']} images" in card
  builder_sizes = json.load(open(os.path.join(data, "metadata.json")))["num_examples"]
  assert (f"- Examples: train {builder_sizes['train']}, validation "
          f"{builder_sizes['validation']}, test {builder_sizes['test']}") in card
  vocabulary = run_dir.load(model_dir).vocabulary
  assert f"- Vocabulary: {len(vocabulary)} names in `tags.labels.txt`" in card
  assert f"{len(vocabulary)} per-tag thresholds, calibrated on validation" in card
  assert "| backbone | `\"small\"` |" in card
  for section in ("## Data", "## Intended use", "## Limits", "## How to use it"):
    assert section in card
  assert "python -m alti2v.predict --model_dir RUN" in card


def test_the_screen_card_gives_each_baseline_and_the_keep_threshold(screen_dataset,
                                                                    screen_model):
  _, data = screen_dataset
  _, result = tasks.run_evaluation(screen_model, data)
  card = open(os.path.join(screen_model, run_dir.MODEL_CARD_FILE), encoding="utf-8").read()
  table = card_tables(card)["test"]
  assert table["roc_auc"] == (f"{result['roc_auc']:.4f}", "0.5000")
  assert table["pr_auc"] == (f"{result['pr_auc']:.4f}", f"{result['baseline_pr_auc']:.4f}")
  assert f"keep an image scoring at least {result['threshold']:.4f}" in card
  assert "python -m alti2v.screen --model_dir RUN" in card


def test_a_card_before_evaluation_says_so_and_unknown_keys_are_shown(screen_model, tmp_path):
  copy = str(tmp_path / "run")
  shutil.copytree(screen_model, copy, ignore=shutil.ignore_patterns(
      run_dir.METRICS_FILE, run_dir.KEEP_THRESHOLD_FILE, "backup", "logs"))
  card = model_card.render(copy, "keep/drop filter", tasks.get_task("screen").card)
  assert "Not evaluated yet" in card and "None calibrated" in card
  # A result with keys the card has never seen (another task's, a newer evaluate's).
  model_card.update_metrics(copy, "screen", {"split": "test", "num_examples": 4,
                                             "new_figure": 0.25, "baseline_new_figure": 0.5,
                                             "per_category": {"a": 1.0}, "note": "text",
                                             "undefined": float("nan")})
  # NaN (e.g. the AP of a tag without positives) is stored as null: metrics.json is strict JSON.
  with open(os.path.join(copy, run_dir.METRICS_FILE), encoding="utf-8") as f:
    stored = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
  assert stored["splits"]["test"]["undefined"] is None
  model_card.write(copy, "keep/drop filter", tasks.get_task("screen").card)
  card = open(os.path.join(copy, run_dir.MODEL_CARD_FILE), encoding="utf-8").read()
  assert card_tables(card) == {"test": {"new_figure": ("0.2500", "0.5000")}}
  assert "| new_figure | 0.2500 | 0.5000 | 0.50x |" in card
