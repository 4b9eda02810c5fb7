"""Runs each Beam job's worker code on one real element: does this environment have what it needs?

  python -m beam_jobs.worker_check [--jobs build_caption_dataset,tag_images]

Run it where the workers run (a fresh virtual environment holding only what a job ships,
or `docker run --entrypoint python IMAGE -m beam_jobs.worker_check` for a worker image):
a dependency that --setup_file or a requirements file did not bring fails here, in seconds,
instead of as an ImportError on every Dataflow worker. Prints one line per job; exit
status 1 when one failed.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import tempfile
import traceback
from typing import Callable, Optional, Sequence

from PIL import Image

from beam_jobs.stages import read
from beam_jobs.stages import workers
from beam_jobs.stages import write
from beam_jobs.stages.elements import Candidate, ImageRecord

JOBS = ("build_tagged_dataset", "build_folder_dataset", "build_vision_dataset",
        "build_caption_dataset", "vision_labels", "tag_images")
CAPTION = "猫が二匹座っている"  # A Japanese caption: MeCab and its dictionary must read it.


def _sample(root: str) -> str:
  """root/positive/a.jpg with its tag file and its Vision JSON (in root/labels); its path."""
  image = os.path.join(root, "images", "positive", "a.jpg")
  os.makedirs(os.path.dirname(image))
  Image.new("RGB", (40, 30), (200, 40, 40)).save(image, quality=90)
  with open(os.path.splitext(image)[0] + ".txt", "w", encoding="utf-8") as f:
    f.write("red_hair blue_eyes")
  labels = os.path.join(root, "labels", "positive", "a.jpg.json")
  os.makedirs(os.path.dirname(labels))
  with open(labels, "w", encoding="utf-8") as f:
    json.dump({"labelAnnotations": [{"mid": "/m/01", "description": "Red",
                                     "score": 0.9, "topicality": 0.9}]}, f)
  return image


def _check_builder(module_name: str, flags: Sequence[str], candidate: Candidate,
                   root: str) -> str:
  """Reads, labels and decodes the candidate as the builder's workers do; its label."""
  module = importlib.import_module(f"beam_jobs.{module_name}")
  builder = module.BUILDER
  args, _ = builder.parse(["--input_dir", os.path.join(root, "images"),
                           "--output_dir", os.path.join(root, "out"), *flags])
  decode = read.ReadAndDecode(functools.partial(builder.read_label, args=args),
                              args.image_size, args.max_pixels)
  decode.setup()
  (record,) = decode.process(candidate)
  if not isinstance(record, ImageRecord):  # The rejection side output.
    raise RuntimeError(f"the sample was rejected: {record.value}")
  builder.features(["red"])  # The feature spec (tensorflow-datasets).
  write.tfrecord_frame(record.jpeg)  # The TFRecord framing (google-crc32c).
  return repr(record.label)


def _check_vision_labels(image: str) -> str:
  vision_labels = importlib.import_module("beam_jobs.vision_labels")
  (path, jpeg), = vision_labels.Shrink(32, 10**6).process(Candidate(image))
  return f"{os.fsdecode(path)}: {len(jpeg)} bytes to upload"


def _check_tag_images(image: str) -> str:
  tag_images = importlib.import_module("beam_jobs.tag_images")
  importlib.import_module("beam_jobs.inference")  # TensorFlow, Keras, RunInference.
  read_form = tag_images.ReadStoredForm(32)
  read_form.setup()
  (path, jpeg), = read_form.process(Candidate(image))
  return f"{os.fsdecode(path)}: stored form {len(jpeg)} bytes"


def checks(root: str) -> dict[str, Callable[[], str]]:
  """Each job's check (its module name → a function that runs its worker code once)."""
  image = _sample(root)
  txt = os.path.splitext(image)[0] + ".txt"
  return {
      "build_tagged_dataset": lambda: _check_builder(
          "build_tagged_dataset", [], Candidate(image, txt), root),
      "build_folder_dataset": lambda: _check_builder(
          "build_folder_dataset", [], Candidate(image), root),
      "build_vision_dataset": lambda: _check_builder(
          "build_vision_dataset", ["--labels_dir", os.path.join(root, "labels")],
          Candidate(image), root),
      "build_caption_dataset": lambda: _check_builder(
          "build_caption_dataset", ["--captions_json", os.path.join(root, "c.json")],
          Candidate(image, known_label=(CAPTION,)), root),
      "vision_labels": lambda: _check_vision_labels(image),
      "tag_images": lambda: _check_tag_images(image),
  }


def run_checks(jobs: Optional[Sequence[str]] = None) -> dict[str, Optional[str]]:
  """Runs the checks of jobs (None = every job) and prints one line each.

  Returns:
    job → None when its worker code ran, else the error (its last line).
  """
  failures: dict[str, Optional[str]] = {}
  with tempfile.TemporaryDirectory() as root:
    available = checks(root)
    for name in jobs or JOBS:
      try:
        detail = available[name]()
      except Exception as e:  # pylint: disable=broad-except
        failures[name] = f"{type(e).__name__}: {e}"
        module = importlib.import_module(f"beam_jobs.{name}")
        job = getattr(module, "BUILDER", None) or getattr(module, "JOB")
        print(f"error {name}: {failures[name]}\n  "
              f"{workers.dataflow_help(job.worker_extras)}", flush=True)
        traceback.print_exc(limit=-1, file=sys.stderr)
        continue
      failures[name] = None
      print(f"ok {name}: {detail}", flush=True)
  return failures


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m beam_jobs.worker_check",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--jobs", default="",
                      help="Comma-separated job modules to check (default: every job).")
  args = parser.parse_args(argv)
  jobs = [j for j in args.jobs.split(",") if j] or None
  unknown = sorted(set(jobs or ()) - set(JOBS))
  if unknown:
    parser.error(f"--jobs: no job {', '.join(unknown)}; the jobs are {', '.join(JOBS)}")
  failures = run_checks(jobs)
  sys.exit(1 if any(failures.values()) else 0)


if __name__ == "__main__":
  main()
