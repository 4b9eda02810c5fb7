"""Gathers a report: a dataset's figures from one streaming pass over its shards, and a run's
(training curves, and its task's figures on recomputed predictions); writes report.html.

`python -m alti2v.report DIR` calls write_report. Memory stays bounded whatever the dataset's
size: counts per label, per image size and per label count, and a reservoir of a few images.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import os
import re
import sys
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from alti2v import tasks
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.reporting import html
from alti2v.reporting import panels
from alti2v.training import run_dir

REPORT_DIR = "report"  # The default output folder, inside the directory reported on.
EXAMPLE_PATHS = 3  # Example paths shown per rejection reason.
TOP_LABELS = 15  # Labels per split in the top-labels figure and table.


@dataclasses.dataclass(frozen=True)
class ReportOptions:
  """What a report shows (`python -m alti2v.report`'s flags).

  Attributes:
    output_dir: where report.html and its PNGs go; "" = DIR/report.
    num_samples: random training images in the grid.
    split: the split a run's figures are computed on.
    max_examples: images of that split predicted at most.
    batch_size: images per batch when predicting.
    data_dir: a run's dataset; "" = the one in its config.json.
    seed: picks the grid's images.
    progress: a progress bar on stderr (only when it is a terminal).
  """
  output_dir: str = ""
  num_samples: int = 16
  split: str = "test"
  max_examples: int = 2000
  batch_size: int = 64
  data_dir: str = ""
  seed: int = 0
  progress: bool = True


@dataclasses.dataclass
class DatasetStats:
  """What one pass over a dataset's shards counts.

  Attributes:
    examples: records read per split.
    label_counts: per split, images per label id (None: the task has no class label).
    labels_per_image: number of labels → images (multi-label datasets).
    sizes: (stored width, height) → images.
    samples: (stored JPEG, description, path) of num_samples random train images.
  """
  examples: dict[str, int]
  label_counts: Optional[dict[str, np.ndarray]]
  labels_per_image: collections.Counter
  sizes: collections.Counter
  samples: list[tuple[bytes, str, str]]


def dataset_task(builder: tfds.core.DatasetBuilder) -> Optional[tasks.Task]:
  """The first registered task whose fields the dataset holds (None: no task fits)."""
  fields = set(builder.info.features.keys())
  return next((t for t in tasks.all_tasks() if set(t.label_features) <= fields), None)


def _label_kind(builder, task) -> str:
  """"single" (a ClassLabel), "multi" (a Sequence of one) or "" for the task's label."""
  if task is None:
    return ""
  spec = builder.info.features[task.label_feature]
  if isinstance(spec, tfds.features.ClassLabel):
    return "single"
  if isinstance(spec, tfds.features.Sequence) and isinstance(spec.feature,
                                                             tfds.features.ClassLabel):
    return "multi"
  return ""


def _progress(total: int, enabled: bool):
  """The progress bar (one place, so that a shared helper can replace it)."""
  return tqdm.tqdm(total=total, unit="img", desc="reading shards", file=sys.stderr,
                   disable=not (enabled and sys.stderr.isatty()))


def collect_stats(data_dir: str, task: Optional[tasks.Task], num_samples: int = 16,
                  seed: int = 0, progress: bool = True) -> DatasetStats:
  """Reads every shard once, streaming (no image decoded, only num_samples kept).

  Args:
    task: the dataset's task (its label is counted and describes the grid's images).
    num_samples: train images kept for the grid (reservoir sampling: uniform, one pass).
  """
  builder = dataset_lib.load_builder(data_dir)
  kind = _label_kind(builder, task)
  names = task.output_names(builder) if task is not None else []
  rng = np.random.default_rng(seed)
  stats = DatasetStats({}, {} if kind else None, collections.Counter(),
                       collections.Counter(), [])
  seen_train = 0
  splits = builder.info.splits
  with _progress(sum(s.num_examples for s in splits.values()), progress) as bar:
    for split in splits:
      wanted = {k: True for k in builder.info.features.keys() if k != features_lib.IMAGE}
      skip = None
      if split == "train" and num_samples:  # The grid's images: kept as stored, not decoded.
        wanted[features_lib.IMAGE] = True
        skip = {features_lib.IMAGE: tfds.decode.SkipDecoding()}
      ds = builder.as_dataset(split=split, decoders=tfds.decode.PartialDecoding(
          wanted, decoders=skip))
      counts = np.zeros(len(names), np.int64) if kind else None
      n = 0
      for example in tfds.as_numpy(ds):
        n += 1
        stats.sizes[(int(example[features_lib.WIDTH]), int(example[features_lib.HEIGHT]))] += 1
        if kind == "multi":
          ids = example[task.label_feature]
          np.add.at(counts, ids, 1)
          stats.labels_per_image[len(ids)] += 1
        elif kind == "single":
          counts[int(example[task.label_feature])] += 1
        if split == "train" and num_samples:
          seen_train += 1
          slot = (len(stats.samples) if len(stats.samples) < num_samples
                  else int(rng.integers(seen_train)))
          if slot < num_samples:
            sample = (bytes(example[features_lib.IMAGE]),
                      task.describe_example(example, names) if task is not None else "",
                      example[features_lib.PATH].decode("utf-8", "backslashreplace"))
            if slot == len(stats.samples):
              stats.samples.append(sample)
            else:
              stats.samples[slot] = sample
        bar.update(1)
      stats.examples[split] = n
      if kind:
        stats.label_counts[split] = counts
  return stats


def read_rejections(data_dir: str) -> tuple[collections.Counter, dict[str, list[str]]]:
  """(images per reason, the first EXAMPLE_PATHS paths of each) from the rejections, streaming."""
  counts, examples = collections.Counter(), collections.defaultdict(list)
  for rejection in features_lib.read_rejections(data_dir):
    counts[rejection["reason"]] += 1
    if len(examples[rejection["reason"]]) < EXAMPLE_PATHS:
      examples[rejection["reason"]].append(rejection["path"])
  return counts, examples


def _cut_off(build_args: dict) -> tuple[Optional[str], Optional[int], Optional[int]]:
  """(noun, --num_<noun>s, --min_<noun>_count) the vocabulary was cut with, from build_args."""
  for key, value in build_args.items():
    match = re.fullmatch(r"num_(\w+)s", key)
    if match and f"min_{match.group(1)}_count" in build_args:
      return match.group(1), int(value), int(build_args[f"min_{match.group(1)}_count"])
  return None, None, None


def add_dataset(report: html.Report, data_dir: str, options: ReportOptions) -> DatasetStats:
  """The dataset's sections: examples per split, labels, sizes, rejections, an image grid."""
  builder = dataset_lib.load_builder(data_dir)
  task = dataset_task(builder)
  metadata = run_dir.read_json(os.path.join(data_dir, features_lib.METADATA_FILE)) or {}
  stats = collect_stats(data_dir, task, options.num_samples, options.seed, options.progress)
  splits = builder.info.splits
  report.section(f"Dataset {data_dir}",
                 f"{builder.info.name}, built by {metadata.get('builder', '?')}; "
                 f"task: {task.name if task else 'none registered fits it'}")
  report.add(panels.Table("examples per split", ["split", "examples", "shards"], [
      (s, stats.examples[s], len(splits[s].shard_lengths)) for s in splits]))
  if int(sum(stats.examples.values())) != int(sum(s.num_examples for s in splits.values())):
    report.paragraph("warning: the shards hold another number of records than "
                     "dataset_info.json says: run python -m alti2v.dataset")
  if stats.label_counts is not None:
    _add_labels(report, builder, task, stats, metadata.get("build_args", {}))
  _add_sizes(report, stats)
  _add_rejections(report, data_dir)
  if stats.samples:
    report.image_grid(f"{len(stats.samples)} random training images"
                      + (f" with their {task.label_feature}" if task else ""),
                      [(jpeg, text) for jpeg, text, _ in stats.samples])
  return stats


def _add_labels(report, builder, task, stats, build_args) -> None:
  names = task.output_names(builder)
  noun = task.label_feature
  report.section(f"Labels ({noun})", f"{len(names)} in the vocabulary")
  train = np.sort(stats.label_counts.get("train", np.zeros(len(names))))[::-1]
  cut_noun, num, min_count = _cut_off(build_args)
  marks, levels, note = {}, {}, ""
  if cut_noun is not None:
    note = (f"vocabulary cut-off: the {num} most frequent {cut_noun}s with at least "
            f"{min_count} train images (--num_{cut_noun}s, --min_{cut_noun}_count); "
            f"rarer ones are not stored")
    if len(names) >= num:
      marks[f"--num_{cut_noun}s {num}"] = num
    levels[f"--min_{cut_noun}_count {min_count}"] = min_count
  ranks = np.arange(1, len(train) + 1)
  positive = train > 0
  if stats.labels_per_image:  # A frequency curve for tags, not for a handful of classes.
    report.add(panels.Curves(f"train images per label ({noun}), by rank", "rank",
                             "train images", [("train", ranks[positive], train[positive])],
                             marks=marks, level_marks=levels, log_x=True, log_y=True,
                             note=note))
  top = {split: [(names[i], int(c[i])) for i in np.argsort(-c, kind="stable")[:TOP_LABELS]]
         for split, c in stats.label_counts.items()}
  report.add(panels.Bars(f"top {noun} per split", "images", top))
  header, rows = ["rank"], []
  for split in top:
    header += [split, "images"]
  for rank in range(max(len(v) for v in top.values())):
    row = [rank + 1]
    for split in top:
      row += list(top[split][rank]) if rank < len(top[split]) else ["", ""]
    rows.append(row)
  report.add(panels.Table(f"top {noun} per split", header, rows))
  if stats.labels_per_image:
    counts = sorted(stats.labels_per_image.items())
    report.add(panels.Histogram(
        f"images by their number of {noun}", f"{noun} per image",
        {"images": np.array([k for k, _ in counts])},
        weights={"images": np.array([v for _, v in counts])},
        bins=np.arange(0.5, counts[-1][0] + 1.5).tolist()))


def _add_sizes(report, stats) -> None:
  sizes = sorted(stats.sizes.items(), key=lambda kv: -kv[1])
  if not sizes:
    return
  report.section("Stored image sizes")
  widths = np.array([w for (w, _), _ in sizes])
  heights = np.array([h for (_, h), _ in sizes])
  weights = np.array([n for _, n in sizes])
  report.add(panels.Histogram("stored widths and heights", "pixels",
                              {"width": widths, "height": heights},
                              weights={"width": weights, "height": weights}, bins=30))
  aspect = widths / np.maximum(1, heights)
  report.add(panels.Histogram("aspect ratios (width / height)", "width / height",
                              {"images": aspect}, weights={"images": weights},
                              bins=np.geomspace(min(0.2, aspect.min()),
                                                max(5.0, aspect.max()), 31).tolist(),
                              log_x=True))
  report.add(panels.Table("commonest stored sizes", ["width x height", "images"],
                          [(f"{w} x {h}", n) for (w, h), n in sizes[:10]]))


def _add_rejections(report, data_dir) -> None:
  counts, examples = read_rejections(data_dir)
  shards = features_lib.rejection_files(data_dir)
  where = (f"rejected-*.jsonl ({len(shards)} shards)" if len(shards) > 1
           else features_lib.REJECTED_FILE)
  report.section("Rejected inputs", f"{sum(counts.values())} in {where}")
  if counts:
    report.add(panels.Table("rejections by reason", ["reason", "inputs", "examples"], [
        (reason, n, "  ".join(examples[reason])) for reason, n in counts.most_common()]))


def _history_panels(model_dir: str) -> list[panels.Panel]:
  """A Curves panel per metric of history.csv, its validation beside it."""
  path = os.path.join(model_dir, run_dir.HISTORY_FILE)
  if not os.path.exists(path):
    return []
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    return []
  epochs = np.array([int(r["epoch"]) + 1 for r in rows])
  found = []
  for metric in rows[0]:
    if metric == "epoch" or metric.startswith("val_") or metric == "learning_rate":
      continue
    series = [(name, epochs, np.array([float(r[name] or "nan") for r in rows]))
              for name in (metric, f"val_{metric}") if name in rows[0]]
    found.append(panels.Curves(f"training curve: {metric}", "epoch", metric, series))
  return found


def add_run(report: html.Report, model_dir: str, options: ReportOptions) -> Optional[str]:
  """The run's sections: settings, training curves, its task's figures on options.split.

  Returns:
    The run's dataset directory when it is there (else the figures that need it are skipped).
  """
  run = run_dir.load(model_dir)
  task = tasks.get_task(run.task)
  config = run_dir.read_json(os.path.join(model_dir, run_dir.CONFIG_FILE)) or {}
  best = run_dir.read_json(os.path.join(model_dir, run_dir.BEST_FILE)) or {}
  data_dir = options.data_dir or config.get("data_dir", "")
  report.section(f"Run {model_dir}", f"task {task.name}: {task.description}")
  report.add(panels.Table("settings", ["setting", "value"], [
      ("task", task.name), ("backbone", config.get("backbone", "?")),
      ("image size", run.image_size), ("epochs trained", run.info.get("epochs", "?")),
      ("best epoch (validation loss)", best.get("epoch", "?")),
      ("outputs", len(run.vocabulary)), ("dataset", data_dir)]))
  history = _history_panels(model_dir)
  if history:
    report.section("Training curves", f"from {run_dir.HISTORY_FILE}, per epoch")
    for panel in history:
      report.add(panel)
  if not data_dir or not os.path.exists(
      os.path.join(data_dir, features_lib.DATASET_INFO_FILE)):
    report.paragraph(f"the dataset {data_dir!r} is not here: no figures of predictions "
                     "(pass --data_dir)")
    return None
  report.section(f"The model on {options.split}",
                 f"predictions recomputed on at most {options.max_examples} images")
  for panel in task.report_panels(
      run, data_dir, tasks.EvalOptions(split=options.split, batch_size=options.batch_size),
      options.max_examples):
    report.add(panel)
  return data_dir


def is_run(path: str) -> bool:
  """Whether path is a finished training run (else it is taken for a dataset)."""
  return os.path.exists(os.path.join(path, run_dir.MODEL_INFO_FILE))


def write_report(path: str, options: ReportOptions = ReportOptions()) -> str:
  """Writes the report of a dataset directory or of a finished run (and its dataset).

  Returns:
    The path of report.html.

  Raises:
    DatasetError: path is neither a finished run nor a finished dataset.
  """
  if not is_run(path) and not os.path.exists(
      os.path.join(path, features_lib.DATASET_INFO_FILE)):
    raise dataset_lib.DatasetError(
        f"{path} is neither a finished training run (no {run_dir.MODEL_INFO_FILE}) nor a "
        f"finished dataset (no {features_lib.DATASET_INFO_FILE})")
  output_dir = options.output_dir or os.path.join(path, REPORT_DIR)
  if is_run(path):
    report = html.Report(f"alti2v run report: {path}", output_dir)
    data_dir = add_run(report, path, options)
    if data_dir:
      add_dataset(report, data_dir, options)
  else:
    report = html.Report(f"alti2v dataset report: {path}", output_dir)
    add_dataset(report, path, options)
  return report.write()

