"""Where input_fn's CPU time goes, stage by stage, from a sampling profile (Linux perf).

  python benchmarks/input_profile.py --data_dir DATASET [--seconds 10] [--image_size 224]

Runs input_fn(training=True) in a child process for --seconds, samples it with
`perf record` (every thread, native frames: libjpeg-turbo, TensorFlow's kernels, tf.data,
the kernel), and prints each stage's share of the CPU and its microseconds per image
(CPU time of the child / images delivered), next to JPEG decoding's. A stage is a set of
symbols (STAGES); what matches none is "other". Needs perf (Debian: linux-perf) and
permission to attach (root, or kernel.perf_event_paranoid <= 1).

The dataset of benchmarks/input_benchmark.py (--workdir DIR, then DIR/dataset) is the one
the README's figures come from.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Stage → symbol pattern, tried in order (the first match wins).
STAGES = (
    ("JPEG decode (libjpeg-turbo)",
     r"decode_mcu|jsimd_|jpeg_|sep_upsample|process_data|decompress_|UncompressLow|"
     r"h2v\d_|ycc_rgb|huff|idct|fill_bit"),
    ("flip (tf.reverse)", r"Reverse"),
    ("pad and batch copies (memcpy, memset, pad, concat)",
     r"memmove|memcpy|memset|Padding|Concat|TensorArray|Pack"),
    ("record reading and parsing (crc, TFRecord, parse_example)",
     r"[Cc]rc|CRC|TFRecord|RecordReader|InputBuffer|ParseExample|FastParse|protobuf|"
     r"ParseSingle|SequenceFeature|Feature"),
    ("shuffle buffer", r"Shuffle"),
    ("labels (scatter_nd)", r"Scatter"),
    ("malloc and free", r"malloc|_int_free|cfree|free$|tcache|arena"),
    ("Linux kernel (threads, syscalls, page faults)", r"\[k\]"),
    ("TensorFlow executor, tf.data, thread pools",
     r"Executor|tensorflow::data|RunQueue|EigenEnvironment|Notification|mutex|Mutex|"
     r"Process|Schedule|Propagator|clock_gettime|condition_variable|futex|Thread"),
)


def child(data_dir: str, seconds: float, image_size: int, batch: int) -> None:
  from alti2v.data import input_pipeline  # pylint: disable=import-outside-toplevel
  it = iter(input_pipeline.input_fn(data_dir, "train", batch, training=True,
                                    image_size=image_size, seed=0))
  for _ in range(10):  # Warm-up: threads, autotune, page cache.
    next(it)
  print("ready", flush=True)
  usage = resource.getrusage(resource.RUSAGE_SELF)
  start, images = time.perf_counter(), 0
  while time.perf_counter() - start < seconds:
    next(it)
    images += batch
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_SELF)
  cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
  print(json.dumps({"images_per_s": images / wall, "cpu_us_per_image": 1e6 * cpu / images,
                    "cpu_percent": 100 * cpu / wall}), flush=True)


def stage_of(symbol: str) -> str:
  for name, pattern in STAGES:
    if re.search(pattern, symbol):
      return name
  return "other"


def perf_shares(perf_data: str, sort: str,
                group: Callable[[str], str] = lambda key: key) -> dict[str, float]:
  """`perf report --sort SORT` of a perf.data file → {group(key): % of the samples}."""
  report = subprocess.run(
      ["perf", "report", "-i", perf_data, "--no-children", "--sort", sort, "--stdio"],
      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
  shares: dict[str, float] = {}
  for line in report.splitlines():
    match = re.match(r"\s*([\d.]+)%\s+(.*?)\s*$", line)
    if match:
      key = group(match.group(2))
      shares[key] = shares.get(key, 0.0) + float(match.group(1))
  return shares


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--seconds", type=float, default=10)
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args.data_dir, args.seconds, args.image_size, args.batch_size)
    return
  if not shutil.which("perf"):
    sys.exit("perf is not installed (Debian: apt-get install linux-perf)")
  out = tempfile.mkdtemp(prefix="alti2v_profile_")
  proc = subprocess.Popen([sys.executable, __file__, "--child", "--data_dir", args.data_dir,
                           "--seconds", str(args.seconds), "--image_size",
                           str(args.image_size), "--batch_size", str(args.batch_size)],
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "ready"
  record = subprocess.run(
      ["perf", "record", "-F", "499", "-p", str(proc.pid), "-o", f"{out}/perf.data",
       "--", "sleep", str(max(1.0, args.seconds - 1))],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
  figures = json.loads(proc.stdout.readline())
  proc.wait()
  if record.returncode:
    sys.exit(f"perf record failed: {record.stderr.strip()}")
  shares = perf_shares(f"{out}/perf.data", "sym", stage_of)
  shutil.rmtree(out)
  per_image = figures["cpu_us_per_image"]
  print(f"input_fn(training=True, {args.image_size} px, batch {args.batch_size}): "
        f"{figures['images_per_s']:.0f} images/s, {figures['cpu_percent']:.0f}% CPU, "
        f"{per_image:.0f} CPU-us per image")
  print(f"{'stage':<62}{'share':>7}{'us/image':>10}")
  for stage, share in sorted(shares.items(), key=lambda kv: -kv[1]):
    print(f"{stage:<62}{share:>6.1f}%{share / 100 * per_image:>10.1f}")
  decode = shares.get(STAGES[0][0], 0.0) / 100
  print(f"JPEG decoding is {decode:.0%} of the CPU: input_fn can reach at most "
        f"{decode:.2f}x the decode-only ceiling while the rest costs what it does")


if __name__ == "__main__":
  main()
