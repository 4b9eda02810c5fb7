"""Beam job: tag every image under a folder with a trained tagger → sharded JSON lines, at scale.

  python -m beam_jobs.tag_images --model_dir RUN --input_dir IMAGES --output_dir TAGS [Beam options]

The lines are predict's, file for file (alti2v.tasks.tagger.tag_line; each image takes the
road of alti2v/data/image_files.py), scored with Beam's RunInference
(beam_jobs/inference.py); a file that is no usable image goes to rejected-*.jsonl.
--feature_vectors also writes the hidden layer's activations (Illustration2Vec's feature
vectors) to vectors/, a vectors folder as alti2v.embed writes it (alti2v/similarity.py), for
`python -m alti2v.similar --index OUTPUT/vectors`. summary.json is written last: its presence
means the output is complete. BUILD.md has the rest.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import zlib
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
import numpy as np

from alti2v import similarity
from alti2v.data import image_files
from alti2v.data import imaging
from alti2v.tasks import tagger
from beam_jobs import inference
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages import flags
from beam_jobs.stages import job
from beam_jobs.stages import read
from beam_jobs.stages.elements import REJECTED, Candidate

TAGS_PREFIX = "tags"  # tags-00000-of-00004.jsonl
REJECTED_PREFIX = "rejected"  # rejected-00000-of-00001.jsonl
SUFFIX = ".jsonl"
SUMMARY_FILE = "summary.json"  # Written last: the output is complete.
TAGGED = "images_tagged"  # The counter of lines written to tags-*.jsonl.
VECTORS_DIR = "vectors"  # --feature_vectors: a vectors folder (alti2v/similarity.py).
EMBEDDED = "images_embedded"  # The counter of rows written to vectors/.
# A shard's files before the last step names them (it alone knows how many there are).
PART = ".part-{:05d}.{}"  # .part-00003.vectors.npy, .bits.npy, .paths.jsonl


@dataclasses.dataclass(frozen=True)
class Tagging:
  """What the launcher reads from the run for the workers' lines (the model stays on them).

  Attributes:
    rules: how scores become a line (tagger.tag_rules: thresholds per tag and category,
      top-k, grouping, vector), as predict's.
    stored_size: the side the run's dataset stored images at (image_files.stored_form).
    vectors_meta: with --feature_vectors, {"model_dir", "model_sha256", "task"} of
      similarity.vectors_meta; None without.
  """
  rules: tagger.TagRules
  stored_size: int
  vectors_meta: Optional[dict] = None  # --feature_vectors: the run's part of meta.json.


class ReadStoredForm(beam.DoFn):
  """Candidate → (path as os.fsencode bytes, stored-form JPEG); unusable files → rejected.

  The path crosses Beam's coders as bytes: a scraped name need not be UTF-8.
  """

  def __init__(self, stored_size: int):
    self._stored_size = stored_size

  def setup(self):
    self._images_read = elements.counter("images_read")

  def process(self, candidate: Candidate):
    self._images_read.inc()
    path = candidate.image_path
    try:
      jpeg = image_files.stored_form(read.read_image_bytes(path), self._stored_size)
    except imaging.Rejected as e:
      yield elements.rejected(path, e.reason, e.detail)
      return
    yield os.fsencode(path), jpeg


def to_line(path_and_result: tuple[bytes, PredictionResult], tagging: Tagging) -> str:
  """(path, PredictionResult) → predict's JSON line for the file (no newline)."""
  path, result = path_and_result
  elements.counter(TAGGED).inc()
  scores = result.inference[0] if tagging.vectors_meta else result.inference
  return image_files.json_line(tagger.tag_line(os.fsdecode(path), scores, tagging.rules))


def to_feature_row(path_and_result: tuple[bytes, PredictionResult]
                   ) -> tuple[bytes, np.ndarray, np.ndarray]:
  """(path, PredictionResult(jpeg, (scores, activations))) → (path, float16 unit vector,
  packed bits): a row of a vectors folder, as similarity.write_vectors makes it."""
  path, result = path_and_result
  activations = result.inference[1]
  return (path, similarity.normalize(activations).astype(np.float16),
          similarity.binarize(activations))


def vector_shard(row: tuple[bytes, np.ndarray, np.ndarray], count: int,
                 shard_size: int) -> tuple[int, tuple[bytes, np.ndarray, np.ndarray]]:
  """(shard, row): ceil(count / shard_size) shards, by a stable hash of the path (about
  shard_size rows each; a rerun puts each file in the same shard)."""
  shards = max(1, math.ceil(count / shard_size))
  return zlib.crc32(row[0]) % shards, row


def _index_path(path: bytes) -> str:
  """The path a vectors folder stores: absolute, as embed's (a gs:// one as it is)."""
  path = os.fsdecode(path)
  return os.path.abspath(path) if files.is_local(path) else path


def _save_npy(path: str, array: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.save(buffer, array)
  tmp = path + ".tmp"
  with FileSystems.create(tmp) as f:
    f.write(buffer.getvalue())
  FileSystems.rename([tmp], [path])


class WriteVectorShard(beam.DoFn):
  """(shard, rows) → the shard's vectors, bits and paths under vectors/ as .part-* files (each
  temp + rename); yields {"part", "count", "dimension"}. Rows are sorted by path."""

  def __init__(self, vectors_dir: str):
    self._dir = vectors_dir

  def process(self, shard_rows: tuple[int, Iterable[tuple[bytes, np.ndarray, np.ndarray]]]):
    shard, rows = shard_rows
    rows = sorted(rows, key=lambda row: row[0])
    vectors = np.stack([row[1] for row in rows])
    _save_npy(files.join(self._dir, PART.format(shard, "vectors.npy")), vectors)
    _save_npy(files.join(self._dir, PART.format(shard, "bits.npy")),
              np.stack([row[2] for row in rows]))
    files.write_text(files.join(self._dir, PART.format(shard, "paths.jsonl.tmp")), "".join(
        image_files.json_line({"path": _index_path(row[0])}) + "\n" for row in rows))
    FileSystems.rename([files.join(self._dir, PART.format(shard, "paths.jsonl.tmp"))],
                       [files.join(self._dir, PART.format(shard, "paths.jsonl"))])
    elements.counter(EMBEDDED).inc(len(rows))
    yield {"part": shard, "count": len(rows), "dimension": int(vectors.shape[1])}


def finish_vectors(parts: Sequence[dict], rejections: Sequence[dict[str, str]],
                   vectors_dir: str, run_meta: dict) -> dict:
  """The vectors folder's last step: names the shards in row order, joins their paths into
  paths.jsonl, writes the rejections as errors.jsonl, and meta.json last (read_vectors
  reads a folder only once it is there). Returns meta.json's contents."""
  if not parts:  # Nothing was tagged (summary.json says so): no vectors folder.
    return {"count": 0, "dimension": 0}
  parts = sorted(parts, key=lambda part: part["part"])
  total, shards, paths = len(parts), [], []
  for number, part in enumerate(parts):
    names = (similarity.VECTORS_SHARD.format(number, total),
             similarity.BITS_SHARD.format(number, total))
    FileSystems.rename(
        [files.join(vectors_dir, PART.format(part["part"], kind))
         for kind in ("vectors.npy", "bits.npy")],
        [files.join(vectors_dir, name) for name in names])
    shards.append({"vectors": names[0], "bits": names[1], "count": part["count"]})
    paths.append(files.join(vectors_dir, PART.format(part["part"], "paths.jsonl")))
  with FileSystems.create(files.join(vectors_dir, similarity.PATHS_FILE + ".tmp")) as out:
    for path in paths:
      out.write(files.read_bytes(path))
  FileSystems.rename([files.join(vectors_dir, similarity.PATHS_FILE + ".tmp")],
                     [files.join(vectors_dir, similarity.PATHS_FILE)])
  files.delete_paths(paths)
  files.write_text(files.join(vectors_dir, similarity.ERRORS_FILE), "".join(
      json.dumps({"path": r["path"], "error": f"{r['reason']}: {r['detail']}"},
                 ensure_ascii=False) + "\n" for r in rejections))
  meta = similarity.vectors_meta(
      run_meta["model_dir"], run_meta["model_sha256"], run_meta["task"],
      parts[0]["dimension"], sum(p["count"] for p in parts),
      len(rejections), shards)
  tmp = files.join(vectors_dir, similarity.META_FILE + ".tmp")
  files.write_text(tmp, json.dumps(meta, indent=2) + "\n")
  FileSystems.rename([tmp], [files.join(vectors_dir, similarity.META_FILE)])
  return meta


def _is_output(name: str) -> bool:
  """Whether a top-level name in --output_dir is one this job writes."""
  return (name in (SUMMARY_FILE, VECTORS_DIR) or name.startswith("beam-temp-")
          or (name.startswith((TAGS_PREFIX + "-", REJECTED_PREFIX + "-"))
              and name.endswith(SUFFIX)))


def write_summary(written: Sequence[str], tagged: int, reasons: dict[str, int],
                  args: argparse.Namespace, vectors: Sequence[dict] = ()) -> dict[str, Any]:
  """Writes summary.json, once every shard is in place: the output is complete.

  Args:
    written: the files the writes renamed into place.
    tagged: lines in tags-*.jsonl.
    reasons: lines in rejected-*.jsonl per reason (a combiner's counts).
    vectors: with --feature_vectors, the vectors folder's meta.json (written before).

  Raises:
    ValueError: nothing was found under --input_dir (then no summary.json).
  """
  if tagged == 0 and not reasons:
    raise ValueError(f"no image file found under --input_dir {args.input_dir}")
  summary = {
      "output_dir": args.output_dir, "model_dir": args.model_dir, "tagged": tagged,
      "rejected": dict(sorted(reasons.items())),
      "files": sorted(os.path.basename(p) for p in written),
      **({"vectors": {"folder": VECTORS_DIR, "count": vectors[0]["count"],
                      "dimension": vectors[0]["dimension"]}} if vectors else {}),
      "args": {k: v for k, v in vars(args).items() if k != "overwrite"}}
  tmp = files.join(args.output_dir, SUMMARY_FILE + ".tmp")
  files.write_text(tmp, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
  FileSystems.rename([tmp], [files.join(args.output_dir, SUMMARY_FILE)])
  return summary


class TagImagesJob(job.Job):
  """Images under --input_dir → RunInference with a tagger → tags-*.jsonl, rejected-*.jsonl."""
  module = "beam_jobs.tag_images"
  description = __doc__.split("\n\n")[0]

  def __init__(self):
    self._tagging: Optional[Tagging] = None  # Set by prepare, from --model_dir.

  def add_flags(self, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model_dir", required=True,
                        help="A finished tagger (or distillation student) run; local on "
                        "every worker, or gs:// (copied to each worker, BUILD.md).")
    parser.add_argument("--input_dir", required=True,
                        help="Folder tree of images (jpg/jpeg/png/gif/webp/bmp, any case, any "
                        "depth); local or gs://. Other files are ignored.")
    parser.add_argument("--output_dir", required=True,
                        help="Folder for tags-*.jsonl, rejected-*.jsonl and summary.json "
                        "(last); local or gs://.")
    parser.add_argument("--top_k", type=int, default=0,
                        help="Keep at most K tags per image (0 = no cap).")
    parser.add_argument("--threshold", type=float, default=-1.0,
                        help="One threshold for every tag; -1 = the calibrated per-tag "
                        "thresholds (from evaluate), else 0.5.")
    parser.add_argument("--general_threshold", type=float, default=-1.0,
                        help="One threshold for the general tags; -1 = per tag.")
    parser.add_argument("--character_threshold", type=float, default=-1.0,
                        help="One threshold for the character tags; -1 = per tag.")
    parser.add_argument("--category_thresholds", default="",
                        help="Per category, e.g. copyright=0.5,meta=0.9 (as predict's).")
    parser.add_argument("--flat", action=flags.BoolFlag, default=False,
                        help="\"tags\" as one list, best first, not grouped by category.")
    parser.add_argument("--vector", action=flags.BoolFlag, default=False,
                        help="Add the tag-probability vector to each line (as predict).")
    parser.add_argument("--feature_vectors", action=flags.BoolFlag, default=False,
                        help="Also write each image's feature vector (the hidden layer "
                        "below the tags) to OUTPUT/vectors/, a vectors folder for python -m "
                        "alti2v.similar --index OUTPUT/vectors.")
    parser.add_argument("--vectors_shard_size", type=int,
                        default=similarity.DEFAULT_SHARD_SIZE,
                        help="--feature_vectors: about this many vectors per shard.")
    parser.add_argument("--min_batch_size", type=int, default=1,
                        help="Smallest batch Beam's adaptive batching gives the model.")
    parser.add_argument("--max_batch_size", type=int, default=32,
                        help="Largest batch given to the model (GPU workers: 128-256).")
    parser.add_argument("--num_shards", type=int, default=0,
                        help="Files of tags-*.jsonl; 0 = the runner's choice.")
    parser.add_argument("--share_model_across_processes", action=flags.BoolFlag,
                        default=False, help="One model per machine instead of one per SDK "
                        "process: for GPU workers, whose memory holds one copy.")
    parser.add_argument("--overwrite", action=flags.BoolFlag, default=False,
                        help="Replace this job's files in a non-empty --output_dir.")

  def validate(self, args: argparse.Namespace) -> None:
    if args.top_k < 0:
      raise ValueError(f"--top_k must be >= 0, got {args.top_k}")
    for name in ("threshold", "general_threshold", "character_threshold"):
      value = getattr(args, name)
      if not (value == -1 or 0 <= value <= 1):
        raise ValueError(f"--{name} must be in [0, 1] (or -1: the calibrated thresholds), "
                         f"got {value}")
    tagger.merge_category_thresholds(args.category_thresholds)  # ValueError: not pairs.
    if args.min_batch_size < 1:
      raise ValueError(f"--min_batch_size must be >= 1, got {args.min_batch_size}")
    if args.max_batch_size < args.min_batch_size:
      raise ValueError(f"--max_batch_size must be >= --min_batch_size "
                       f"({args.min_batch_size}), got {args.max_batch_size}")
    if args.vectors_shard_size < 1:
      raise ValueError(f"--vectors_shard_size must be >= 1, got {args.vectors_shard_size}")
    if args.num_shards < 0:
      raise ValueError(f"--num_shards must be >= 0, got {args.num_shards}")
    files.check_filesystem(args.model_dir)

  def prepare(self, args: argparse.Namespace) -> None:
    """Opens the run (refused unless a tagger, before anything is written), readies --output_dir."""
    run = inference.open_run(args.model_dir)
    tagger.require_tagger(run)
    self._tagging = Tagging(
        tagger.tag_rules(
            run, threshold=None if args.threshold < 0 else args.threshold,
            category_thresholds=tagger.merge_category_thresholds(
                args.category_thresholds, args.general_threshold, args.character_threshold),
            top_k=args.top_k, vector=args.vector, grouped=not args.flat),
        run.stored_size)
    if args.feature_vectors:
      run.hidden_model()  # ValueError: no feature vector (before anything is written).
      self._tagging = dataclasses.replace(self._tagging, vectors_meta={
          "model_dir": (os.path.abspath(args.model_dir) if files.is_local(args.model_dir)
                        else args.model_dir),
          "model_sha256": similarity.model_fingerprint(run), "task": run.task})
    files.prepare_output_dir(args.output_dir, args.overwrite, marker=SUMMARY_FILE,
                             is_output=_is_output)

  def build_pipeline(self, p: beam.Pipeline, args: argparse.Namespace) -> None:
    tagging = self._tagging
    discovered = p | "Discover" >> read.DiscoverImages(args.input_dir, None)
    # Candidate
    stored = discovered.candidates | "ReadStoredForm" >> beam.ParDo(
        ReadStoredForm(tagging.stored_size)).with_outputs(REJECTED, main="images")
    # (path bytes, stored-form JPEG)
    handler = inference.TrainedRunHandler(
        args.model_dir, min_batch_size=args.min_batch_size,
        max_batch_size=args.max_batch_size,
        share_across_processes=args.share_model_across_processes,
        features=args.feature_vectors)
    results = stored.images | "RunInference" >> RunInference(KeyedModelHandler(handler))
    # (path bytes, PredictionResult(jpeg, scores or (scores, activations)))
    lines = results | "ToLines" >> beam.Map(to_line, tagging)
    # predict's JSON line
    rejections = (
        (discovered[REJECTED], stored[REJECTED])
        | "AllRejections" >> beam.Flatten()
        | "CountRejections" >> beam.Map(elements.count_rejection))
    # Beam writes each shard under beam-temp-* and renames them all when the write is done.
    written_tags = lines | "WriteTags" >> beam.io.WriteToText(
        files.join(args.output_dir, TAGS_PREFIX), file_name_suffix=SUFFIX,
        num_shards=args.num_shards)
    written_rejected = (
        rejections
        | "RejectionLines" >> beam.Map(json.dumps, ensure_ascii=False)
        | "WriteRejected" >> beam.io.WriteToText(
            files.join(args.output_dir, REJECTED_PREFIX), file_name_suffix=SUFFIX))
    # Counted by combiners: nothing that grows with the images reaches one worker.
    tagged = lines | "CountLines" >> beam.combiners.Count.Globally()
    reasons = (rejections
               | "Reasons" >> beam.Map(lambda r: r["reason"])
               | "CountReasons" >> beam.combiners.Count.PerElement())
    # (reason, rejections)
    if args.feature_vectors:
      vectors_dir = files.join(args.output_dir, VECTORS_DIR)
      rows = results | "ToFeatureRows" >> beam.Map(to_feature_row)
      # (path bytes, float16 unit vector, packed bits)
      vectors = (
          rows
          | "AssignVectorShards" >> beam.Map(
              vector_shard, count=beam.pvalue.AsSingleton(tagged),
              shard_size=args.vectors_shard_size)
          # (shard, row)
          | "GroupVectorShards" >> beam.GroupByKey()
          | "WriteVectorShards" >> beam.ParDo(WriteVectorShard(vectors_dir))
          # {"part", "count", "dimension"}
          | "GatherVectorShards" >> beam.combiners.ToList()
          | "FinishVectors" >> beam.Map(
              finish_vectors, rejections=beam.pvalue.AsList(rejections),
              vectors_dir=vectors_dir, run_meta=tagging.vectors_meta))
      # meta.json of vectors/
    else:
      vectors = p | "NoVectors" >> beam.Create([])
    _ = (
        (written_tags, written_rejected)
        | "AllWritten" >> beam.Flatten()
        # The file names: one per shard.
        | "GatherWritten" >> beam.combiners.ToList()
        | "WriteSummary" >> beam.Map(
            write_summary, tagged=beam.pvalue.AsSingleton(tagged),
            reasons=beam.pvalue.AsDict(reasons), args=args,
            vectors=beam.pvalue.AsList(vectors)))

  def summarize(self, args: argparse.Namespace, result) -> dict[str, Any]:
    """summary.json, as written, without the flags."""
    with FileSystems.open(files.join(args.output_dir, SUMMARY_FILE)) as f:
      summary = json.load(f)
    summary.pop("args", None)
    return summary


JOB = TagImagesJob()


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, tags the images, and returns the finished Beam result (metrics)."""
  return JOB.run(argv)


if __name__ == "__main__":
  JOB.main()
