"""The model card, RUN/README.md: a run described for a person, and metrics.json, the figures behind it.

Training writes a first card (no metrics); evaluate merges its result into metrics.json and
writes the card again. What differs per task comes as a CardText (each Task's `card`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional, Sequence

import numpy as np

from alti2v.data import features as features_lib
from alti2v.training import run_dir

TOP_LABELS = 8  # Labels named on the card (the most frequent in train, when counted).
NOT_FIGURES = ("split", "num_examples")  # Keys of a result that describe it.


@dataclasses.dataclass(frozen=True)
class CardText:
  """What a task says on the card of its runs.

  Attributes:
    intended_use: what the model is for (a few sentences, Markdown).
    limits: where it fails or must not be trusted.
    usage: commands that use a run (RUN stands for the run's folder, DATA for its dataset).
  """
  intended_use: str = ""
  limits: str = ""
  usage: Sequence[str] = ()


def update_metrics(model_dir: str, task: str, result: dict) -> dict:
  """Merges one split's evaluation into RUN/metrics.json (atomically); returns the whole file.

  Args:
    task: the run's task.
    result: evaluate's result; its "split" names where it goes (an earlier result for that
      split is replaced, other splits are kept).

  Returns:
    {"task", "splits": {split: result}}.
  """
  path = os.path.join(model_dir, run_dir.METRICS_FILE)
  metrics = run_dir.read_json(path) or {}
  splits = metrics.get("splits", {}) if metrics.get("task") == task else {}
  # Through JSON and back: the card shows what the file holds (NumPy scalars become floats,
  # NaN -- e.g. the AP of a tag with no positive -- becomes null: the file is strict JSON).
  splits[result["split"]] = _strict(json.loads(json.dumps(result, default=_plain)))
  metrics = {"task": task, "splits": dict(sorted(splits.items()))}
  run_dir.write_json(path, metrics)
  return metrics


def _plain(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON: {type(value).__name__}")


def _strict(value: Any) -> Any:
  """value with every NaN or infinity replaced by None (JSON has no such numbers)."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _strict(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_strict(v) for v in value]
  return value


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def figure_rows(result: dict) -> list[tuple[str, float, Optional[float]]]:
  """(figure, model's value, baseline's value or None) for each number of an evaluation result.

  A figure X's baseline is the result's constant_X or baseline_X, or baseline["X"] (the
  tasks' three spellings); those and the keys in NOT_FIGURES are no rows of their own.
  Keys the card does not know are shown as they are; nested values other than "baseline"
  are left out.
  """
  nested = result.get("baseline") if isinstance(result.get("baseline"), dict) else {}
  rows = []
  for key, value in result.items():
    if (key in NOT_FIGURES or not _is_number(value)
        or key.startswith(("constant_", "baseline_"))):
      continue
    baseline = next((v for v in (result.get(f"constant_{key}"), result.get(f"baseline_{key}"),
                                 nested.get(key)) if _is_number(v)), None)
    rows.append((key, value, baseline))
  return rows


def number(value: Optional[float]) -> str:
  """A figure as the card writes it: 4 decimals, an integer as it is, "—" for none."""
  if value is None:
    return "—"
  if isinstance(value, int):
    return str(value)
  return "nan" if math.isnan(value) else f"{value:.4f}"


def _ratio(value: float, baseline: Optional[float]) -> str:
  if baseline is None or not baseline or math.isnan(baseline) or math.isnan(value):
    return ""
  return f"{value / baseline:.2f}x"


def _data_lines(data_dir: str, vocabulary: Sequence[str], vocabulary_file: str) -> list[str]:
  metadata = run_dir.read_json(os.path.join(data_dir, features_lib.METADATA_FILE)) if data_dir \
      else None
  if metadata is None:
    lines = [f"- Dataset: `{data_dir}` (no longer there: sizes unknown)"]
  else:
    build = metadata.get("build_args", {})
    sizes = ", ".join(f"{split} {n}" for split, n in metadata.get("num_examples", {}).items())
    source = (f", built from `{build['input_dir']}`" if build.get("input_dir") else "")
    stored = (f", stored at {build['image_size']} px" if build.get("image_size") else "")
    lines = [f"- Dataset: `{data_dir}`{source}{stored}",
             f"- Examples: {sizes} ({sum(metadata.get('num_examples', {}).values())} in all)"]
    rejected = metadata.get("rejected") or {}
    if rejected:
      lines.append(f"- Rejected by the build: {sum(rejected.values())} ("
                   + ", ".join(f"{reason} {n}" for reason, n in rejected.items()) + ")")
  counts = _train_counts(data_dir)
  if counts:
    top = sorted(counts.items(), key=lambda item: -item[1])[:TOP_LABELS]
    named = ", ".join(f"{name} ({n})" for name, n in top)
    lines.append(f"- Vocabulary: {len(vocabulary)} names in `{vocabulary_file}`; the most "
                 f"frequent in train (images): {named}")
  else:
    shown = ", ".join(vocabulary[:TOP_LABELS]) + (", ..." if len(vocabulary) > TOP_LABELS
                                                   else "")
    lines.append(f"- Vocabulary: {len(vocabulary)} names in `{vocabulary_file}`: {shown}")
  return lines


def _train_counts(data_dir: str) -> dict[str, int]:
  """Train images per label from the build's label counts (empty when there are none)."""
  path = os.path.join(data_dir, features_lib.TAG_COUNTS_FILE) if data_dir else ""
  if not path or not os.path.exists(path):
    return {}
  counts = {}
  with open(path, encoding="utf-8") as f:
    next(f)
    for line in f:
      name, _, train, *_ = line.rstrip("\n").split("\t")
      counts[name] = int(train)
  return counts


def _threshold_lines(model_dir: str) -> list[str]:
  tags = run_dir.read_json(os.path.join(model_dir, run_dir.TAG_THRESHOLDS_FILE))
  keep = run_dir.read_json(os.path.join(model_dir, run_dir.KEEP_THRESHOLD_FILE))
  lines = []
  if tags is not None:
    values = np.array(list(tags["thresholds"].values()))
    lines.append(
        f"- `{run_dir.TAG_THRESHOLDS_FILE}`: {len(values)} per-tag thresholds, calibrated on "
        f"{tags.get('calibrated_on', '?')} ({tags.get('num_examples', '?')} images): min "
        f"{values.min():.4f}, median {np.median(values):.4f}, max {values.max():.4f}; a tag "
        f"with fewer than {tags.get('min_support', '?')} validation positives is floored at "
        f"{tags.get('rare_floor', '?')}")
  if keep is not None:
    lines.append(
        f"- `{run_dir.KEEP_THRESHOLD_FILE}`: keep an image scoring at least "
        f"{keep['threshold']:.4f} ({keep.get('goal', '?')} on {keep.get('calibrated_on', '?')}"
        f": precision {number(keep.get('validation_precision'))}, recall "
        f"{number(keep.get('validation_recall'))})")
  return lines or ["- None calibrated (evaluate calibrates a tagger's per-tag thresholds and a "
                   f"screening filter's keep threshold); {run_dir.DEFAULT_THRESHOLD} is used "
                   "where one is needed."]


def render(model_dir: str, description: str, text: CardText) -> str:
  """The model card of the finished run in model_dir, as Markdown.

  Args:
    description: the task's one line.
    text: the task's words (intended use, limits, usage).
  """
  info = run_dir.read_info(model_dir)
  config = run_dir.read_json(os.path.join(model_dir, run_dir.CONFIG_FILE)) or {}
  metrics = run_dir.read_json(os.path.join(model_dir, run_dir.METRICS_FILE)) or {}
  with open(os.path.join(model_dir, info["vocabulary_file"]), encoding="utf-8") as f:
    vocabulary = f.read().split("\n")[:-1]
  data_dir = config.get("data_dir", "")
  out = [
      f"# Model card: {info['task']} ({os.path.basename(os.path.abspath(model_dir))})", "",
      "Written by alti2v from this run's files: training writes it, `python -m "
      "alti2v.evaluate` writes it again with the figures (edits here are lost).", "",
      f"A {info['task']} model: {description}. {info['num_outputs']} outputs; input uint8 RGB "
      f"images {info['image_size']}x{info['image_size']} (padded to square).", "",
      "## Data", "", *_data_lines(data_dir, vocabulary, info["vocabulary_file"]), "",
      "## Model and training", "",
      f"- Backbone `{config.get('backbone', '?')}` (weights `{config.get('weights', '?')}`), "
      f"head of {config.get('hidden_units', '?')} hidden units, "
      f"precision {info.get('mixed_precision', '?')}, {info.get('replicas', 1)} replica(s)",
      f"- Trained {info['epochs']} epochs; exported the best by validation loss: epoch "
      f"{info['best_epoch']}, val_loss {info['best_val_loss']:.4f}",
      f"- Files: `{info['model']}` (Keras), `{info['saved_model']}/` (SavedModel), "
      f"`{info['vocabulary_file']}` (output names, in order)", "",
      "| config | value |", "|---|---|",
      *[f"| {key} | `{json.dumps(value, ensure_ascii=False)}` |"
        for key, value in config.items()], "",
      "## Metrics", ""]
  splits = metrics.get("splits", {}) if metrics.get("task") == info["task"] else {}
  if not splits:
    out += ["Not evaluated yet: `python -m alti2v.evaluate --model_dir RUN --data_dir DATA "
            "--split test` writes the figures here (and `metrics.json`).", ""]
  for split, result in splits.items():
    out += [f"`{split}` split, {result.get('num_examples', '?')} images (from "
            f"`{run_dir.METRICS_FILE}`; the baseline ignores the image):", "",
            "| figure | model | baseline | model / baseline |", "|---|---|---|---|",
            *[f"| {key} | {number(value)} | {number(baseline)} | {_ratio(value, baseline)} |"
              for key, value, baseline in figure_rows(result)], ""]
  out += ["## Thresholds", "", *_threshold_lines(model_dir), "",
          "## Intended use", "", text.intended_use or "Not stated by the task.", "",
          "## Limits", "", text.limits or "Not stated by the task.", "",
          "## How to use it", "", "```sh", *text.usage, "```", ""]
  return "\n".join(out)


def write(model_dir: str, description: str, text: CardText) -> str:
  """Writes RUN/README.md atomically (render); returns its path."""
  path = os.path.join(model_dir, run_dir.MODEL_CARD_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(render(model_dir, description, text))
  os.replace(tmp, path)
  return path
