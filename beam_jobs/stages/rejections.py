"""Rejections written by the workers, as shards, and counted per reason by a combiner.

  rejection {"path", "reason", "detail"} → (shard, [rejection]) → the shard's file name
Nothing here gathers the rejections on one worker: their number grows with the input. One
file (rejected.jsonl) when they are few, rejected-SSSSS-of-NNNNN.jsonl when they are many;
alti2v.data.features.read_rejections reads either.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Iterable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from alti2v.data import features as features_lib
from beam_jobs.stages import files

# ~30 MB of JSON lines per shard (a line is ~100-200 bytes): one file below that.
REJECTIONS_PER_SHARD = 200_000


def num_shards_for(num_rejections: int, per_shard: int) -> int:
  """Shards for num_rejections lines, at most per_shard each (at least one)."""
  return max(1, -(-num_rejections // per_shard))


def shard_of(rejection: dict[str, str], num_shards: int) -> int:
  # sha256, not hash(): Python's str hash differs between processes, shards must not.
  key = f"{rejection['path']}\0{rejection['reason']}".encode("utf-8")
  return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % num_shards


def sort_key(rejection: dict[str, str]) -> tuple[str, str, str]:
  return rejection["path"], rejection["reason"], rejection["detail"]


class WriteRejectionShard(beam.DoFn):
  """(shard, [rejection]) → the shard's file name, after writing it sorted by path.

  Written under tmp_dir and renamed when closed: a retried bundle never leaves half a file
  under a shard's name. Sorted within the shard, so that a build is byte-identical on any
  runner and worker count.
  """

  def __init__(self, output_dir: str, tmp_dir: str):
    self._output_dir = output_dir
    self._tmp_dir = tmp_dir

  def process(self, shard_and_rejections, num_shards: int):
    index, rejections = shard_and_rejections
    name = features_lib.rejected_filename(index, num_shards)
    tmp_path = files.join(self._tmp_dir, f"{name}.{uuid.uuid4().hex}.tmp")
    with FileSystems.create(tmp_path) as f:
      for r in sorted(rejections, key=sort_key):
        f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    final_path = files.join(self._output_dir, name)
    if FileSystems.exists(final_path):  # A retried bundle wrote it before.
      files.delete_paths([final_path])
    FileSystems.rename([tmp_path], [final_path])
    yield name


def _sum_counts(counts: Iterable[int]) -> int:
  return sum(counts)


def complete_shards(names: list[str], num_shards: int, output_dir: str,
                    write_empty: bool) -> list[str]:
  """Writes the shards that no rejection hashed to, empty, so that none is missing.

  Returns:
    Every rejection file's name, in shard order; [] when nothing was rejected and not
    write_empty (then no file is written).
  """
  if not names and not write_empty:
    return []
  every = [features_lib.rejected_filename(i, num_shards) for i in range(num_shards)]
  for name in set(every) - set(names):
    files.write_text(files.join(output_dir, name), "")
  return every


class Written(NamedTuple):
  """What WriteRejections hands on.

  Attributes:
    files: a PCollection of one element, the rejection files' names in shard order; as a
      side input it also says "every shard is in place".
    reason_counts: a PCollection of (reason, rejections): one element per reason.
  """
  files: beam.PCollection
  reason_counts: beam.PCollection


@beam.ptransform_fn
def WriteRejections(rejections, output_dir: str, tmp_dir: str,  # pylint: disable=invalid-name
                    per_shard: Optional[int] = None, write_empty: bool = False
                    ) -> Written:
  """Rejections → shards written by the workers, and their number per reason (a combiner).

  Args:
    rejections: {"path", "reason", "detail"} dicts (elements.rejection).
    output_dir: where rejected.jsonl or rejected-SSSSS-of-NNNNN.jsonl go.
    tmp_dir: where a shard is written before it is renamed into output_dir.
    per_shard: most lines per shard (None: REJECTIONS_PER_SHARD); the shards are as few
      as that allows.
    write_empty: write an empty rejected.jsonl when nothing was rejected (else no file).
  """
  per_shard = per_shard or REJECTIONS_PER_SHARD
  num_shards = (
      rejections
      | "CountAll" >> beam.Map(lambda _: 1)
      | "SumAll" >> beam.CombineGlobally(_sum_counts)
      | "NumShards" >> beam.Map(num_shards_for, per_shard))
  # One int: 1 when nothing was rejected (then no shard has an element, none is written).
  num_shards_side = beam.pvalue.AsSingleton(num_shards)
  written = (
      rejections
      | "AssignShard" >> beam.Map(lambda r, n: (shard_of(r, n), r),
                                  n=num_shards_side)
      # (shard, rejection)
      | "GroupShards" >> beam.GroupByKey()
      | "WriteShard" >> beam.ParDo(WriteRejectionShard(output_dir, tmp_dir),
                                   num_shards=num_shards_side)
      # One name per shard written: bounded by the shards, not by the rejections.
      | "GatherNames" >> beam.combiners.ToList()
      | "CompleteShards" >> beam.Map(complete_shards, num_shards=num_shards_side,
                                     output_dir=output_dir, write_empty=write_empty))
  reason_counts = (
      rejections
      | "Reasons" >> beam.Map(lambda r: r["reason"])
      | "CountReasons" >> beam.combiners.Count.PerElement())
  return Written(written, reason_counts)
