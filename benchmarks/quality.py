"""The quality gate: every task's model beside its naive baseline, on held-out sample data.

  python benchmarks/quality.py [--tasks tagger,screen,distill,caption,caption_ar]
                               [--workdir DIR] [--keep]

For each task, as a user would run it: `alti2v.sample_data` draws a corpus large enough to
separate a model from a baseline → the task's real Beam builder → `alti2v.train` with the
task's CPU config from configs/ (deterministic, so a rerun gives the same figures) →
`alti2v.evaluate --split test`. It prints each model figure next to its baseline, the ratio
and the margin, and exits 1 when a task misses its margin. About 12 minutes on 2 cores.

Margins (the least a user should accept):
  tagger      test mAP ≥ 2× the baseline's (each tag scored with its train frequency)
  screen      test ROC-AUC ≥ 0.97 (a constant score: 0.5)
  distill     test MAE ≤ 0.6× the baseline's (each label's mean train score)
  caption*    test CER ≤ 0.5× the best constant caption's (the train caption with the
              lowest CER said for every test image; every test caption names what is drawn)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Check:
  """One task's run and the figure that gates it.

  Attributes:
    task: the --task name.
    layout, num_images, seed: the sample corpus (alti2v.sample_data).
    builder: the beam_jobs module that builds it, with its extra flags ({raw} = the corpus).
    config: the training flagfile under configs/, with extra training flags.
    metric: the figure's name; value, baseline: read from evaluate's JSON.
    passes: (value, baseline) → whether the margin is met; margin: the margin in words.
  """
  task: str
  layout: str
  num_images: int
  seed: int
  builder: str
  builder_flags: tuple[str, ...]
  config: str
  metric: str
  value: Callable[[dict], float]
  baseline: Callable[[dict], float]
  passes: Callable[[float, float], bool]
  margin: str
  train_flags: tuple[str, ...] = ()


_CAPTION = dict(layout="captions", num_images=2000, seed=3,
                builder="beam_jobs.build_caption_dataset",
                builder_flags=("--input_dir", "{raw}/images",
                               "--captions_json", "{raw}/captions.json"),
                config="configs/caption_demo.flags", metric="CER",
                value=lambda r: r["cer"], baseline=lambda r: r["constant_cer"],
                passes=lambda v, b: v <= 0.5 * b, margin="≤ 0.50× baseline")

CHECKS = {
    "tagger": Check(
        task="tagger", layout="safebooru", num_images=2000, seed=0,
        builder="beam_jobs.build_tagged_dataset", builder_flags=("--input_dir", "{raw}"),
        config="configs/demo.flags", metric="mAP",
        value=lambda r: r["map"], baseline=lambda r: r["constant_map"],
        passes=lambda v, b: v >= 2 * b, margin="≥ 2.00× baseline"),
    "screen": Check(
        task="screen", layout="folders", num_images=2000, seed=1,
        builder="beam_jobs.build_folder_dataset", builder_flags=("--input_dir", "{raw}"),
        config="configs/screen_demo.flags", metric="ROC-AUC",
        value=lambda r: r["roc_auc"], baseline=lambda r: r["baseline_roc_auc"],
        passes=lambda v, b: v >= 0.97, margin="≥ 0.97"),
    "distill": Check(
        task="distill", layout="vision", num_images=1500, seed=5,
        builder="beam_jobs.build_vision_dataset",
        builder_flags=("--input_dir", "{raw}/images", "--labels_dir", "{raw}/vision"),
        config="configs/distill_demo.flags", metric="MAE",
        value=lambda r: r["mae"], baseline=lambda r: r["baseline"]["mae"],
        passes=lambda v, b: v <= 0.6 * b, margin="≤ 0.60× baseline"),
    "caption": Check(task="caption", train_flags=("--task=caption",), **_CAPTION),
    "caption_ar": Check(task="caption_ar", train_flags=("--task=caption_ar",), **_CAPTION),
}


def _run(command: list[str], log: str) -> None:
  """Runs a command of the project; its output goes to log, shown if it fails."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MALLOC_ARENA_MAX="2")
  with open(log, "a", encoding="utf-8") as f:
    f.write(f"$ {' '.join(command)}\n")
    f.flush()
    done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                          check=False)
  if done.returncode:
    with open(log, encoding="utf-8") as f:
      sys.stderr.write("".join(f.readlines()[-40:]))
    raise RuntimeError(f"failed ({done.returncode}): {' '.join(command)}; log: {log}")


def run_check(check: Check, workdir: str, datasets: dict) -> dict:
  """sample → build → train → evaluate; returns evaluate's result with timings."""
  python = sys.executable
  log = os.path.join(workdir, f"{check.task}.log")
  corpus = (check.layout, check.num_images, check.seed)
  started = time.perf_counter()
  if corpus not in datasets:  # Both captioners share one dataset.
    raw = os.path.join(workdir, f"{check.layout}_raw")
    data = os.path.join(workdir, f"{check.layout}_data")
    _run([python, "-m", "alti2v.sample_data", raw, "--layout", check.layout,
          "--num_images", str(check.num_images), "--seed", str(check.seed)], log)
    _run([python, "-m", check.builder, *(a.format(raw=raw) for a in check.builder_flags),
          "--output_dir", data, "--image_size", "64", "--overwrite"], log)
    datasets[corpus] = data
  data = datasets[corpus]
  model_dir = os.path.join(workdir, f"{check.task}_model")
  _run([python, "-m", "alti2v.train", "--flagfile", check.config, *check.train_flags,
        "--deterministic", "--data_dir", data, "--model_dir", model_dir, "--overwrite"], log)
  result_file = os.path.join(workdir, f"{check.task}.json")
  _run([python, "-m", "alti2v.evaluate", "--model_dir", model_dir, "--data_dir", data,
        "--split", "test", "--output_json", result_file], log)
  with open(result_file, encoding="utf-8") as f:
    result = json.load(f)
  result["seconds"] = time.perf_counter() - started
  return result


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tasks", default=",".join(CHECKS),
                      help=f"comma-separated, from {', '.join(CHECKS)}")
  parser.add_argument("--workdir", default=None,
                      help="where corpora, datasets and runs go (default: a temporary folder)")
  parser.add_argument("--keep", action="store_true", help="keep the workdir")
  args = parser.parse_args(argv)
  names = [t for t in args.tasks.split(",") if t]
  unknown = sorted(set(names) - set(CHECKS))
  if unknown:
    parser.error(f"unknown tasks {unknown}; known: {', '.join(CHECKS)}")
  workdir = args.workdir or tempfile.mkdtemp(prefix="alti2v-quality-")
  os.makedirs(workdir, exist_ok=True)
  started = time.perf_counter()
  rows, datasets = [], {}
  for name in names:
    check = CHECKS[name]
    print(f"[{name}] sample {check.num_images} ({check.layout}) → build → train "
          f"({check.config}) → evaluate", flush=True)
    result = run_check(check, workdir, datasets)
    value, baseline = check.value(result), check.baseline(result)
    ok = check.passes(value, baseline)
    rows.append((name, check.metric, value, baseline, value / baseline if baseline else
                 float("nan"), check.margin, ok, result["seconds"]))
    print(f"[{name}] test {check.metric} {value:.4f} vs baseline {baseline:.4f}: "
          f"{'pass' if ok else 'MISS'} ({result['seconds']:.0f} s)", flush=True)
  print()
  print("| task | test metric | model | baseline | model / baseline | margin | result | time |")
  print("|---|---|---:|---:|---:|---|---|---:|")
  for name, metric, value, baseline, ratio, margin, ok, seconds in rows:
    print(f"| {name} | {metric} | {value:.4f} | {baseline:.4f} | {ratio:.2f}× | {margin} | "
          f"{'pass' if ok else '**MISS**'} | {seconds:.0f} s |")
  print(f"\ntotal {time.perf_counter() - started:.0f} s; runs in {workdir}"
        + ("" if args.keep or args.workdir else " (removed)"))
  if not args.keep and not args.workdir:
    shutil.rmtree(workdir, ignore_errors=True)
  missed = [r[0] for r in rows if not r[6]]
  if missed:
    print(f"missed the margin: {', '.join(missed)}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
