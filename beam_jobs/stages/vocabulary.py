"""Label vocabularies: built from the train split only, then applied to every split, and counted.

  (split, ImageRecord[NamedLabels]) → (split, ImageRecord[LabelIds]), the vocabulary, counts
Names are normalised the same way wherever they come from (tag files, Vision JSON), so that
one name is one vocabulary entry.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import unicodedata
from typing import Iterable, Optional, Sequence

import apache_beam as beam

from alti2v.data import features as features_lib
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages.elements import REJECTED


def normalize_name(name: str) -> str:
  """NFKC, trimmed, lower-case, inner whitespace runs → "_" ("ＬＯＮＧ　Hair" → "long_hair").

  NFKC folds the compatibility forms (full-width letters, ligatures, non-breaking spaces)
  into the plain ones, so that one spelling of a name is one vocabulary entry.
  """
  return re.sub(r"\s+", "_", unicodedata.normalize("NFKC", name).strip().lower())


@dataclasses.dataclass(frozen=True)
class NamedLabels:
  """A raw label: distinct label names, with a score each when the source gives one.

  Attributes:
    names: normalised label names, distinct.
    scores: one score in [0, 1] per name (Vision labels), or None (tags).
  """
  names: tuple[str, ...]
  scores: Optional[tuple[float, ...]] = None


@dataclasses.dataclass(frozen=True)
class LabelIds:
  """A stored label: the vocabulary ids of the names kept, ascending, and their scores."""
  ids: tuple[int, ...]
  scores: Optional[tuple[float, ...]] = None


def top_labels(counts: Iterable[tuple[str, int]], max_size: int,
               min_count: int) -> list[str]:
  """The max_size most frequent labels with at least min_count images, ties broken by name."""
  frequent = [(name, n) for name, n in counts if n >= min_count]
  frequent.sort(key=lambda kv: (-kv[1], kv[0]))
  return [name for name, _ in frequent[:max_size]]


def _rank(label_and_count: tuple[str, int]) -> tuple[int, str]:
  """Smaller is better: more images first, then the name (top_labels' order)."""
  return -label_and_count[1], label_and_count[0]


@beam.ptransform_fn
def BuildVocabulary(train_label_names, max_size: int, min_count: int):  # pylint: disable=invalid-name
  """PCollection of label names (one per image and label, train split only) → one sorted list."""
  return (
      train_label_names
      | "CountLabels" >> beam.combiners.Count.PerElement()
      # (label, number of train images)
      | "DropRare" >> beam.Filter(lambda kv: kv[1] >= min_count)
      # A combiner: each worker keeps its max_size best, so one worker gets at most
      # max_size per worker, never every distinct label (which grows with the input).
      | "Top" >> beam.combiners.Top.Of(max_size, key=_rank, reverse=True)
      | "TopLabels" >> beam.Map(top_labels, max_size, min_count))


class ApplyVocabulary(beam.DoFn):
  """(split, ImageRecord[NamedLabels]) → (split, ImageRecord[LabelIds]); none left → rejected."""

  def __init__(self):
    self._cache = None  # (vocabulary, {name: id}); the side input is one object per bundle.

  def process(self, split_and_record, vocabulary: Sequence[str]):
    split, record = split_and_record
    if self._cache is None or self._cache[0] is not vocabulary:
      self._cache = (vocabulary, {t: i for i, t in enumerate(vocabulary)})
    index = self._cache[1]
    label = record.label
    scores = label.scores if label.scores is not None else (None,) * len(label.names)
    kept = sorted((index[name], score) for name, score in zip(label.names, scores)
                  if name in index)
    if not kept:
      yield elements.rejected(files.printable(record.path),
                              features_lib.NO_TAGS_IN_VOCABULARY,
                              f"none of its {len(label.names)} labels is in the vocabulary")
      return
    ids = LabelIds(tuple(i for i, _ in kept),
                   None if label.scores is None else tuple(s for _, s in kept))
    yield split, dataclasses.replace(record, label=ids)


@beam.ptransform_fn
def LabelVocabulary(with_split, max_size: int, min_count: int):  # pylint: disable=invalid-name
  """(split, ImageRecord[NamedLabels]) → vocabulary from train, applied, and counted.

  Returns:
    (examples: (split, ImageRecord[LabelIds]), the vocabulary as a side input,
     label counts: one [((split, id), images)] element, rejections).
  """
  vocabulary = (
      with_split
      | "TrainNames" >> beam.FlatMap(lambda sr: sr[1].label.names if sr[0] == "train" else ())
      | "BuildVocabulary" >> BuildVocabulary(max_size, min_count))
  vocabulary_side = beam.pvalue.AsSingleton(vocabulary)
  labelled = with_split | "ApplyVocabulary" >> beam.ParDo(
      ApplyVocabulary(), vocabulary_side).with_outputs(REJECTED, main="examples")
  # (split, ImageRecord[LabelIds])
  counts = (
      labelled.examples
      | "SplitIdPairs" >> beam.FlatMap(lambda sr: [(sr[0], i) for i in sr[1].label.ids])
      | "CountLabels" >> beam.combiners.Count.PerElement()
      # ((split, id), images): at most 3 x vocabulary size, whatever the number of images,
      # so one list on one worker (describe writes tag_counts.tsv from it).
      | "GatherLabelCounts" >> beam.combiners.ToList())
  return labelled.examples, vocabulary_side, counts, labelled[REJECTED]


def label_counts_tsv(counts: Sequence[tuple[tuple[str, int], int]],
                     vocabulary: Sequence[str]) -> str:
  """name, id and images per split for every label of the vocabulary, in id order."""
  per_label: dict[int, dict[str, int]] = {}
  for (split, label_id), n in counts:
    per_label.setdefault(label_id, {})[split] = n
  lines = ["tag\tid\t" + "\t".join(features_lib.SPLITS)]
  for label_id, name in enumerate(vocabulary):
    row = per_label.get(label_id, {})
    lines.append(f"{name}\t{label_id}\t" + "\t".join(
        str(row.get(s, 0)) for s in features_lib.SPLITS))
  return "\n".join(lines) + "\n"


def add_flags(parser: argparse.ArgumentParser, noun: str) -> None:
  """--num_<noun>s and --min_<noun>_count."""
  parser.add_argument(f"--num_{noun}s", type=int, default=5000,
                      help=f"Vocabulary size: the most frequent {noun}s of the train split.")
  parser.add_argument(f"--min_{noun}_count", type=int, default=1,
                      help=f"Train images a {noun} needs to enter the vocabulary.")


def validate_flags(args: argparse.Namespace, noun: str) -> None:
  """Raises ValueError naming --num_<noun>s or --min_<noun>_count when below 1."""
  for flag in (f"num_{noun}s", f"min_{noun}_count"):
    if getattr(args, flag) < 1:
      raise ValueError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
