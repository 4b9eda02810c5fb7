"""The elements passed between the stages, one type per stage, and the side output of rejections.

  Candidate → ImageRecord[raw label] → (split, ImageRecord[stored label])
            → (split, content hash, serialised example) → ShardInfo
A builder picks the label types (e.g. vocabulary.NamedLabels → vocabulary.LabelIds); the step
that changes a label's type is the one that replaces it, never an isinstance check downstream.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Generic, Optional, TypeVar

import apache_beam as beam

from beam_jobs.stages import files

NAMESPACE = "alti2v"  # Of every Beam counter.
REJECTED = "rejected"  # Tag of the side output that carries rejection records.

KnownT = TypeVar("KnownT")
LabelT = TypeVar("LabelT")


@dataclasses.dataclass(frozen=True)
class Candidate(Generic[KnownT]):
  """An image file found by discovery, before anything is read.

  Attributes:
    image_path: the image file.
    label_path: the file holding its label, when the builder pairs one by name (tags).
    known_label: the label itself, when the source already holds it (COCO captions).
  """
  image_path: str
  label_path: Optional[str] = None
  known_label: Optional[KnownT] = None


@dataclasses.dataclass(frozen=True)
class ImageRecord(Generic[LabelT]):
  """One decoded, validated image in its stored form, with its label.

  Attributes:
    path: the source image file.
    content_hash: sha256 of the source file's bytes (dedupe, split and shard key).
    jpeg: the stored image: RGB JPEG, longer side at most --image_size.
    height: of the stored image.
    width: of the stored image.
    label: as read (ImageRecord[raw]) or as stored (ImageRecord[ids]): the builder's types.
  """
  path: str
  content_hash: str
  jpeg: bytes
  height: int
  width: int
  label: LabelT


@dataclasses.dataclass(frozen=True)
class ShardInfo:
  """What the writer counted while writing one shard."""
  split: str
  index: int
  num_shards: int
  num_examples: int
  num_bytes: int


def rejection(path: str, reason: str, detail: str = "") -> dict[str, str]:
  """One line of rejected.jsonl.

  reason: a code from alti2v.data.imaging (decoding), alti2v.data.features (every
  builder) or the builder's task module (alti2v.tasks.rejection_reasons() lists them all).
  """
  assert re.fullmatch(r"[a-z][a-z_]*", reason), reason
  # A name that is not UTF-8 is written with its bytes as \xNN: every builder's
  # rejected.jsonl stays valid UTF-8 (and Beam's str coder accepts it).
  return {"path": files.printable(path), "reason": reason,
          "detail": files.printable(detail)}


def rejected(path: str, reason: str, detail: str = "") -> beam.pvalue.TaggedOutput:
  """A rejection on the REJECTED side output of a DoFn."""
  return beam.pvalue.TaggedOutput(REJECTED, rejection(path, reason, detail))


def counter(name: str) -> beam.metrics.metric.Metrics.DelegatingCounter:
  """A Beam counter in the alti2v namespace (tests and summaries query that namespace)."""
  return beam.metrics.Metrics.counter(NAMESPACE, name)


def count_rejection(record: dict[str, str]) -> dict[str, str]:
  """Counts a rejection as rejected_<reason> and passes it on."""
  counter(f"rejected_{record['reason']}").inc()
  return record
