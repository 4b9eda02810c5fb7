"""Beam job: label every image with Cloud Vision LABEL_DETECTION; one JSON per image.

  VISION_API_KEY=... python -m beam_jobs.vision_labels --input_dir IMAGES --output_dir JSON_DIR

IMAGES/a/b.jpg gets JSON_DIR/a/b.jpg.json: the image's AnnotateImageResponse, exactly as the
API returned it (`{"labelAnnotations": [...]}`, or `{"error": {...}}` when that image failed,
its request failed, or its reply was not the API's response format). Only responses that
pass vision_client.response_problem are written. Images that already have a valid JSON
without an error are skipped (with --noretry_errors, those with an error too), so a re-run
is free and resumable; a JSON that is no valid response is asked again. A key or endpoint
the API refuses (vision_client.VisionError.refused: 401, 403, 404, or 400 API_KEY_INVALID)
stops the job (exit status 1), where it would otherwise write an error record per image.
Unreadable images go to JSON_DIR/rejected.jsonl. The client is beam_jobs.vision_client;
the flags and the run are beam_jobs.stages.job's, as for every Beam job.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import uuid
from typing import Any, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from alti2v.data import imaging
from alti2v.data import progress
from beam_jobs import vision_client
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages import flags
from beam_jobs.stages import job
from beam_jobs.stages import read
from beam_jobs.stages import rejections
from beam_jobs.stages.elements import REJECTED, Candidate

DEFAULT_KEY_ENV = "VISION_API_KEY"
# The temporary files of write_json_atomically and of the rejection shards (written beside
# them): a killed run leaves them behind; the next removes them.
_TMP_NAME = re.compile(r"(" + re.escape(vision_client.RESPONSE_SUFFIX)
                       + r"|\.jsonl)\.[0-9a-f]{32}\.tmp\Z")


class AccessRefused(Exception):
  """The API refused the job's key or endpoint (VisionError.refused): no request can succeed."""


def json_path(image_path: str, input_dir: str, output_dir: str) -> str:
  """JSON_DIR/<path of the image below IMAGES>.json (a.jpg → a.jpg.json: a.png has its own)."""
  return files.mirrored_path(image_path, input_dir, output_dir, vision_client.RESPONSE_SUFFIX)


def write_json_atomically(path: str, value: dict) -> None:
  """Writes value as path's JSON through a temporary file, so a reader never sees half of it."""
  tmp = f"{path}.{uuid.uuid4().hex}.tmp"
  with FileSystems.create(tmp) as f:
    f.write(json.dumps(value, ensure_ascii=False).encode("utf-8"))
  if FileSystems.exists(path):
    files.delete_paths([path])
  FileSystems.rename([tmp], [path])


def remove_temporaries(output_dir: str) -> int:
  """Deletes the temporary files of write_json_atomically below output_dir; returns how many.

  Runs before the pipeline: a run killed between writing and renaming leaves one, and
  nothing else would ever remove it. (Two runs into one folder at once are not supported.)
  """
  matched = FileSystems.match([files.join(output_dir, "**")])[0].metadata_list
  orphans = sorted(m.path for m in matched if _TMP_NAME.search(m.path))
  if orphans:
    logging.info("Removing %d temporary files of an earlier run, e.g. %s", len(orphans),
                 orphans[0])
    try:
      files.delete_paths(orphans)
    except OSError as e:  # E.g. a name with [ ] (Beam deletes by pattern): not worth a stop.
      logging.warning("Could not remove every temporary file: %s", e)
  return len(orphans)


def needs_labels(candidate: Candidate, input_dir: str, output_dir: str,
                 retry_errors: bool) -> bool:
  """False for an image whose JSON is a valid response (holding no error, with retry_errors).

  A JSON that does not parse, or is no AnnotateImageResponse (hand-edited, or written by
  an older version that stored invalid replies), counts as not labelled: it is asked again.
  """
  path = json_path(candidate.image_path, input_dir, output_dir)
  if not FileSystems.exists(path):
    return True
  try:
    with FileSystems.open(path) as f:
      response = json.loads(f.read())
  except ValueError:
    response = None  # Not JSON (or not UTF-8): no response either.
  if vision_client.response_problem(response) is not None:
    elements.counter("invalid_label_files_asked_again").inc()
    return True
  if retry_errors and "error" in response:
    return True
  elements.counter("skipped_already_labelled").inc()
  return False


class Shrink(beam.DoFn):
  """Candidate → (path as bytes, JPEG bytes to upload), longer side ≤ minimize (0 = the file as is)."""

  def __init__(self, minimize: int, max_pixels: int):
    self._minimize = minimize
    self._max_pixels = max_pixels

  def process(self, candidate: Candidate):
    path = candidate.image_path
    try:
      data = files.read_bytes(path)
      if self._minimize:
        data = imaging.decode_and_resize(data, self._minimize, self._max_pixels).jpeg
    except imaging.Rejected as e:
      yield elements.rejected(path, e.reason, e.detail)
      return
    except OSError as e:
      yield elements.rejected(path, imaging.UNREADABLE, str(e))
      return
    # The path as bytes (os.fsencode): Beam encodes a str as strict UTF-8, and a scraped
    # name that is not UTF-8 reaches Python surrogate-escaped.
    yield os.fsencode(path), data


class Annotate(beam.DoFn):
  """[(path, image)] (≤ 16) → one request → each image's JSON written; failures recorded, not fatal."""

  def __init__(self, args: argparse.Namespace):
    self._args = args
    self._client = None

  def setup(self):
    # The key is read on the worker and kept in memory only: never pickled with the
    # DoFn, never in a URL, a log line or a file.
    key = os.environ.get(self._args.api_key_env, "")
    if not key:
      raise RuntimeError(f"environment variable {self._args.api_key_env} is not set")
    self._client = vision_client.VisionClient(
        key, endpoint=self._args.endpoint, max_results=self._args.max_results,
        max_retries=self._args.max_retries, max_qps=self._args.max_qps,
        initial_backoff=self._args.initial_backoff, timeout=self._args.timeout)
    self._labelled = elements.counter("images_labelled")
    self._errors = elements.counter("images_with_errors")
    self._retries = elements.counter("requests_retried")
    # Workers have no terminal: a log line every few seconds, per worker.
    self._progress = progress.Progress(None, "vision_labels (one worker)", tty=False)

  def teardown(self):
    if getattr(self, "_progress", None) is not None:
      self._progress.close()

  def process(self, batch):
    paths = [os.fsdecode(p) for p, _ in batch]
    before = self._client.retries
    try:
      responses = self._client.annotate([image for _, image in batch])
    except vision_client.VisionError as e:
      if e.refused:
        # Every other request would be refused alike: stop, rather than write an error
        # record for every image and exit 0. One string argument, so that Beam keeps the
        # type when it adds the step's name. The endpoint is not named: a key put in its
        # query by mistake would be shown.
        raise AccessRefused(
            f"the Vision API refused the request ({e}): check the key in "
            f"${self._args.api_key_env}, that the Cloud Vision API is enabled for its "
            "project, and --endpoint. Stopped; no JSON was written for the refused "
            "request, and a re-run labels what is left") from None
      logging.warning("Vision request for %d images failed: %s", len(paths), e)
      responses = [{"error": {"code": e.code, "message": e.message}}] * len(paths)
    self._retries.inc(self._client.retries - before)
    for path, response in zip(paths, responses):
      write_json_atomically(
          json_path(path, self._args.input_dir, self._args.output_dir), response)
      (self._errors if "error" in response else self._labelled).inc()
      yield os.fsencode(path), "error" not in response  # (Bytes: see Shrink.)
    self._progress.update(len(paths))


class VisionLabelsJob(job.Job):
  """Images → Candidate → (path, JPEG to upload) → batches → one JSON per image; rejected.jsonl."""
  module = "beam_jobs.vision_labels"
  description = __doc__.split("\n\n")[0]

  def add_flags(self, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input_dir", required=True, help="Images (any depth); local or gs://.")
    parser.add_argument("--output_dir", required=True, help="Where the JSON files go.")
    parser.add_argument("--endpoint", default=vision_client.DEFAULT_ENDPOINT,
                        help="images:annotate URL (a test server, a proxy, a region).")
    parser.add_argument("--api_key_env", default=DEFAULT_KEY_ENV,
                        help="Environment variable that holds the API key.")
    parser.add_argument("--max_results", type=int, default=50,
                        help="maxResults of LABEL_DETECTION.")
    parser.add_argument("--minimize", type=int, default=640,
                        help="Shrink images to this longer side before upload (0 = send "
                        "the files as they are).")
    parser.add_argument("--max_pixels", type=int, default=imaging.DEFAULT_MAX_PIXELS,
                        help="Larger images are rejected unread.")
    parser.add_argument("--batch_size", type=int, default=16,
                        help="Images per request (the API allows 16).")
    parser.add_argument("--max_qps", type=float, default=0.0,
                        help="Requests per second per worker (0 = no cap). The job's total "
                        "is up to max_qps x workers: divide your quota by the workers.")
    parser.add_argument("--max_retries", type=int, default=6,
                        help="Retries of a request answered 429 or 5xx, or not answered "
                        "within --timeout (exponential backoff with full jitter, from "
                        "--initial_backoff, capped at 32 s).")
    parser.add_argument("--initial_backoff", type=float, default=1.0,
                        help="Seconds before the first retry; doubles each retry.")
    parser.add_argument("--timeout", type=float, default=vision_client.DEFAULT_TIMEOUT,
                        help="Seconds an attempt waits to connect, or for more of the reply, "
                        "before it is abandoned (and retried): a silent server costs about "
                        "timeout x (max_retries + 1) per request, plus the backoff.")
    parser.add_argument("--retry_errors", action=flags.BoolFlag, default=True,
                        help="Label again the images whose JSON holds an error "
                        "(--noretry_errors: skip them too, nothing is asked or billed twice).")

  def validate(self, args: argparse.Namespace) -> None:
    if not 1 <= args.batch_size <= vision_client.MAX_IMAGES_PER_REQUEST:
      raise ValueError(f"--batch_size must be 1..{vision_client.MAX_IMAGES_PER_REQUEST}")
    if not args.timeout > 0:
      raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    vision_client.check_endpoint(args.endpoint)
    if not os.environ.get(args.api_key_env):
      raise ValueError(f"set the API key in the environment variable {args.api_key_env} "
                       "(it is read from there only, never from a flag)")

  def prepare(self, args: argparse.Namespace) -> None:
    """Creates --output_dir and removes the temporaries a killed run left there.

    A non-empty output is normal here: existing JSON files are what makes re-runs free.
    """
    super().prepare(args)
    remove_temporaries(args.output_dir)

  def main(self, argv: Optional[Sequence[str]] = None) -> None:
    """The job's __main__; a refused key or endpoint ends it with one line and status 1."""
    try:
      super().main(argv)
    except AccessRefused as e:
      raise SystemExit(f"{self.module}: error: {e}") from None

  def build_pipeline(self, p: beam.Pipeline, args: argparse.Namespace) -> None:
    discovered = p | "Discover" >> read.DiscoverImages(args.input_dir, None)
    shrunk = (
        discovered.candidates
        | "SkipLabelled" >> beam.Filter(needs_labels, args.input_dir, args.output_dir,
                                        args.retry_errors)
        | "Shrink" >> beam.ParDo(Shrink(args.minimize, args.max_pixels)).with_outputs(
            REJECTED, main="images"))
    # (path as bytes, JPEG bytes)
    _ = (
        shrunk.images
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=args.batch_size)
        # [(path as bytes, JPEG bytes)] of at most batch_size
        | "Annotate" >> beam.ParDo(Annotate(args)))
    _ = (
        (discovered[REJECTED], shrunk[REJECTED])
        | "AllRejections" >> beam.Flatten()
        | "CountRejections" >> beam.Map(elements.count_rejection)
        # Written by the workers: rejected.jsonl (empty when none), or its shards when many.
        | "WriteRejected" >> rejections.WriteRejections(
            args.output_dir, args.output_dir, write_empty=True))

  def summarize(self, args, result) -> dict[str, Any]:
    """The job's counters (images labelled, with errors, skipped, rejected, retries)."""
    counts = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(elements.NAMESPACE))["counters"]}
    return dict(sorted(counts.items()))


JOB = VisionLabelsJob()


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Labels the images of --input_dir; returns the finished Beam result (metrics)."""
  return JOB.run(argv)


if __name__ == "__main__":
  JOB.main()
