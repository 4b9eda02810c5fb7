"""Benchmark of the dataset builder: Beam job images/s next to a plain Pillow loop (the ceiling).

  python benchmarks/build_benchmark.py [--num_images 1500] [--workdir DIR]

Generates N distinct JPEGs of scrape size (1000x800), then times, on the same files:
  ceiling   a plain single-core loop doing the builder's per-image work: read, sha256,
            decode_and_resize (same draft, resample filter and JPEG quality);
  1 worker  the Beam job, FnApiRunner in_memory with one worker;
  all cores the Beam job with its default local options (in_memory, one worker per core);
  and, for comparison, Beam's multi_threading and multi_processing modes on all cores.
Prints images/s, each next to the ceiling it is measured against, and the targets.

  python benchmarks/build_benchmark.py --serial_part [--num_images 2000]

instead profiles what keeps all cores from scaling: times 1 worker and all cores on N/2 and
N images and fits seconds = fixed + images / rate to each (the fixed part: start-up,
vocabulary, metadata; the rate: the per-image work), then samples an all-cores build with
Linux perf and splits its CPU between the Python interpreter (which holds the GIL: one
thread at a time) and native code that runs outside it (Pillow's decode/resize/encode,
sha256, file reads).
"""
from __future__ import annotations

import argparse
import glob
import json
import subprocess
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alti2v.data import samples  # pylint: disable=wrong-import-position
from beam_jobs import build_tagged_dataset  # pylint: disable=wrong-import-position
from alti2v.data import imaging  # pylint: disable=wrong-import-position

IMAGE_SIZE = 256  # The builder's default --image_size.


def make_scrape(root: str, num_images: int) -> list[str]:
  """Distinct 1000x800 JPEGs (a drawn illustration, upscaled, plus mild noise) with tag files."""
  os.makedirs(root, exist_ok=True)
  rng = np.random.default_rng(0)
  noise = rng.normal(0, 6, (800, 1000, 3))  # JPEG entropy closer to a real picture.
  paths = []
  for i in range(num_images):
    sample = samples.draw_sample(i, seed=1)
    base = np.asarray(sample.image.resize((1000, 800), Image.Resampling.BILINEAR), float)
    shift = i % 97
    pixels = np.clip(base + np.roll(noise, shift, axis=1), 0, 255).astype(np.uint8)
    path = os.path.join(root, f"{i:06d}.jpg")
    Image.fromarray(pixels).save(path, quality=90)
    with open(os.path.join(root, f"{i:06d}.txt"), "w", encoding="utf-8") as f:
      f.write(" ".join(sample.tags))
    paths.append(path)
  return paths


def ceiling_loop(paths: list[str]) -> float:
  """Seconds for the builder's per-image work in a plain single-core loop."""
  start = time.perf_counter()
  for path in paths:
    with open(path, "rb") as f:
      data = f.read()
    hashlib.sha256(data).hexdigest()
    imaging.decode_and_resize(data, IMAGE_SIZE)
  return time.perf_counter() - start


def beam_build(input_dir: str, output_dir: str, beam_args: list[str]) -> float:
  start = time.perf_counter()
  build_tagged_dataset.run(["--input_dir", input_dir, "--output_dir", output_dir,
                            "--overwrite", "--image_size", str(IMAGE_SIZE), *beam_args])
  return time.perf_counter() - start


def measure(spec: dict) -> float:
  """One timing in a fresh process (as a user runs it), pinned to spec["cpus"] cores."""
  return float(subprocess.run(
      [sys.executable, __file__, "--measure", json.dumps(spec)], check=True,
      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()[-1])


def _measure_here(spec: dict) -> None:
  if spec["cpus"]:
    os.sched_setaffinity(0, set(range(spec["cpus"])))
  if spec["kind"] == "ceiling":
    paths = sorted(glob.glob(os.path.join(spec["input_dir"], "*.jpg")))
    ceiling_loop(paths[:20])  # Page cache and Pillow warm, as in the job's later files.
    seconds = ceiling_loop(paths)
  else:
    seconds = beam_build(spec["input_dir"], spec["output_dir"], spec["beam_args"])
  print(seconds)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_images", type=int, default=2000)
  parser.add_argument("--workdir", default=None, help="Default: a temporary directory.")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--serial_part", action="store_true",
                      help="Profile the serial part of a build instead (see above).")
  parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:
    _measure_here(json.loads(args.measure))
    return
  if args.serial_part:
    serial_part(args)
    return
  workdir = args.workdir or tempfile.mkdtemp(prefix="alti2v_build_bench_")
  scrape = os.path.join(workdir, "scrape")
  cores = os.cpu_count() or 1
  print(f"generating {args.num_images} JPEGs of 1000x800 in {scrape} ...", flush=True)
  paths = make_scrape(scrape, args.num_images)
  mb = sum(os.path.getsize(p) for p in paths) / args.num_images / 1e3
  print(f"  {mb:.0f} kB per file on average")

  n = args.num_images
  out = os.path.join(workdir, "dataset")
  # "1 core" runs are pinned to one core: per-core rates, free of helper threads
  # borrowing the second core. Each figure is the best of --repeats runs (this
  # machine's speed drifts by ~10% between runs).
  runs = {
      "ceiling: plain loop, 1 core (same Pillow work)": {"kind": "ceiling", "cpus": 1},
      "beam, 1 worker on 1 core (in_memory)": {
          "kind": "beam", "cpus": 1, "beam_args": ["--direct_num_workers=1"]},
      f"beam, all cores (default: in_memory x {cores})": {
          "kind": "beam", "cpus": 0, "beam_args": []},
      f"beam, multi_threading x {cores}": {"kind": "beam", "cpus": 0, "beam_args": [
          "--direct_running_mode=multi_threading", "--direct_num_workers=0"]},
      f"beam, multi_processing x {cores}": {"kind": "beam", "cpus": 0, "beam_args": [
          "--direct_running_mode=multi_processing", "--direct_num_workers=0"]},
  }
  rates = {}
  for name, spec in runs.items():
    spec.update(input_dir=scrape, output_dir=out)
    rates[name] = n / min(measure(spec) for _ in range(args.repeats))
    print(f"  {name}: {rates[name]:.1f} images/s", flush=True)

  ceiling, one, all_cores, *_ = rates.values()
  print()
  print(f"{'':<52}{'images/s':>10}  vs ceiling  vs 1 worker")
  for name, rate in rates.items():
    print(f"{name:<52}{rate:>10.1f}  {rate / ceiling:>9.2f}x  {rate / one:>9.2f}x")
  print()
  print(f"target: 1 worker >= 0.80x ceiling              -> {one / ceiling:.2f}x "
        f"{'ok' if one / ceiling >= 0.8 else 'MISSED'}")
  if cores == 2:
    print(f"target: all cores >= 1.7x 1 worker (2 cores)   -> {all_cores / one:.2f}x "
          f"{'ok' if all_cores / one >= 1.7 else 'MISSED'}")
  print(f"per-core rate for the Dataflow estimate in BUILD.md: {one:.0f} images/s/core "
        f"= {1e6 / one / 3600:.2f} core-hours per million images")
  if not args.workdir:
    shutil.rmtree(workdir)


# Where perf puts the Python interpreter's own code (run with the GIL held).
_INTERPRETER = re.compile(r"^(python3?[.\d]*|libpython[\d.]*\.so.*)$")


def serial_part(args) -> None:
  """Fixed and per-image costs of 1 worker and all cores, and the all-cores GIL share."""
  workdir = args.workdir or tempfile.mkdtemp(prefix="alti2v_build_bench_")
  scrape, half = os.path.join(workdir, "scrape"), os.path.join(workdir, "scrape_half")
  cores, n = os.cpu_count() or 1, args.num_images
  paths = make_scrape(scrape, n)
  os.makedirs(half, exist_ok=True)
  for path in paths[:n // 2]:
    for source in (path, os.path.splitext(path)[0] + ".txt"):
      target = os.path.join(half, os.path.basename(source))
      if not os.path.exists(target):
        os.symlink(source, target)
  out = os.path.join(workdir, "dataset")
  fits = {}
  for name, cpus, beam_args in [("1 worker on 1 core", 1, ["--direct_num_workers=1"]),
                                (f"all cores (in_memory x {cores})", 0, [])]:
    seconds = {}
    for size, folder in ((n // 2, half), (n, scrape)):
      seconds[size] = min(measure({"kind": "beam", "cpus": cpus, "beam_args": beam_args,
                                   "input_dir": folder, "output_dir": out})
                          for _ in range(args.repeats))
    per_image = (seconds[n] - seconds[n // 2]) / (n - n // 2)
    fits[name] = (seconds[n] - n * per_image, 1 / per_image, seconds)
  print()
  print(f"{'':<34}{'s, N/2':>8}{'s, N':>8}{'fixed s':>9}{'images/s':>10}")
  for name, (fixed, rate, seconds) in fits.items():
    print(f"{name:<34}{seconds[n // 2]:>8.1f}{seconds[n]:>8.1f}{fixed:>9.1f}{rate:>10.1f}")
  (_, one, _), (fixed, many, _) = fits.values()
  print(f"per-image work, all cores vs 1 worker: {many / one:.2f}x; the fixed part "
        f"({fixed:.1f} s) is {fixed / fits[list(fits)[1]][2][n]:.0%} of the all-cores "
        f"build of {n}")
  if not shutil.which("perf"):
    print("perf not installed: no interpreter share (Debian: apt-get install linux-perf)")
    return
  data = os.path.join(workdir, "perf.data")
  subprocess.run(["perf", "record", "-F", "499", "-o", data, "--", sys.executable, __file__,
                  "--measure", json.dumps({"kind": "beam", "cpus": 0, "beam_args": [],
                                           "input_dir": scrape, "output_dir": out})],
                 check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  import input_profile  # pylint: disable=import-outside-toplevel
  shares = input_profile.perf_shares(data, "dso")
  interpreter = sum(v for k, v in shares.items() if _INTERPRETER.match(k)) / 100
  print("all-cores build, CPU by library (perf): " + ", ".join(
      f"{k} {v:.0f}%" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])[:8]))
  print(f"the Python interpreter (holds the GIL: one thread at a time), start-up imports "
        f"included: {interpreter:.0%} of the CPU")
  if not args.workdir:
    shutil.rmtree(workdir)


if __name__ == "__main__":
  main()
