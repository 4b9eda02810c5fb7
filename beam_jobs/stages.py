"""Beam stages shared by every alti2v dataset builder, in the order an image passes them.

discover → read+decode → dedupe → split by content hash → vocabulary (train only) →
serialise with the feature spec → shard and write (counting) → metadata, written last.
A builder (e.g. build_tagged_dataset) supplies only how a label is read and turned into a feature.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import logging
import os
import platform
import re
import uuid
from typing import Any, Callable, Iterable, Optional, Sequence

import apache_beam as beam
import tensorflow_datasets as tfds
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil  # Beam's TFRecord framing.
from apache_beam.options.pipeline_options import PipelineOptions

from alti2v import features as features_lib
from alti2v import imaging

NAMESPACE = "alti2v"
REJECTED = "rejected"  # Tag of the side output that carries rejection records.
TARGET_SHARD_BYTES = 150 * 2**20  # --num_shards=0 aims at 100-200 MB shards.


# ---------------------------------------------------------------------------
# Elements passed between stages.

@dataclasses.dataclass(frozen=True)
class Candidate:
  """An image file and the file holding its label (None when none was found).

  label: the label itself, when the builder already has it (captions from a COCO JSON).
  """
  image_path: str
  label_path: Optional[str]
  label: Any = None


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One decoded, validated image in its stored form, with its task's label."""
  path: str
  content_hash: str
  jpeg: bytes
  height: int
  width: int
  label: Any  # Task-specific: tag names, then tag ids after the vocabulary.


@dataclasses.dataclass(frozen=True)
class ShardInfo:
  """What the writer counted while writing one shard."""
  split: str
  index: int
  num_shards: int
  num_examples: int
  num_bytes: int


def rejection(path: str, reason: str, detail: str = "") -> dict[str, str]:
  """One line of rejected.jsonl."""
  assert reason in imaging.REASONS, reason
  return {"path": path, "reason": reason, "detail": detail}


def counter(name: str) -> beam.metrics.metric.Metrics.DelegatingCounter:
  return beam.metrics.Metrics.counter(NAMESPACE, name)


# ---------------------------------------------------------------------------
# Pipeline options and the output directory.

def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
  """Beam options; without --runner, the local runner set-up that scales on this job.

  That is FnApiRunner's in_memory mode with one worker thread per core: Pillow,
  sha256 and file reads release the GIL, and in_memory has no gRPC between
  worker and runner. multi_threading (gRPC in-process) and multi_processing
  scaled worse (benchmarks/build_benchmark.py; BUILD.md has the figures).
  No Prism download is attempted, so it runs offline.
  """
  args = list(beam_args)
  if not any(a == "--runner" or a.startswith("--runner=") for a in args):
    args.append("--runner=FnApiRunner")
    if not any(a.startswith("--direct_running_mode") for a in args):
      args.append("--direct_running_mode=in_memory")
    if not any(a.startswith("--direct_num_workers") for a in args):
      args.append("--direct_num_workers=0")  # 0 = one worker per core.
  return PipelineOptions(args)


def check_filesystem(path: str) -> None:
  """Raises a ValueError that says what to install when Beam has no filesystem for path."""
  try:
    FileSystems.get_filesystem(path)
  except ValueError as e:
    scheme = path.split("://", 1)[0] if "://" in path else "local"
    hint = (" Install the gcp extra: pip install -e '.[gcp]' (apache-beam[gcp])."
            if scheme == "gs" else "")
    raise ValueError(f"{e} for {path}.{hint}") from None


class _InMemoryWorkersFilter(logging.Filter):
  """Drops FnApiRunner's advice against in_memory with several workers.

  It predates the runner's per-worker embedded handlers: each of the
  direct_num_workers gets its own in-process SDK worker, and the partitions of a
  stage run on them concurrently (measured: 1.76x on 2 cores, BUILD.md).
  """

  def filter(self, record: logging.LogRecord) -> bool:
    return "direct_running_mode should be" not in record.getMessage()


logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(
    _InMemoryWorkersFilter())


def _join(directory: str, name: str) -> str:
  return FileSystems.join(directory, name)


def delete_paths(paths: Sequence[str]) -> None:
  """FileSystems.delete (which matches its paths as patterns: see check_no_glob)."""
  FileSystems.delete(list(paths))


def check_no_glob(flag: str, path: str) -> None:
  """Beam matches, lists and deletes by pattern, and cannot escape *, ? or [ in a path."""
  if re.search(r"[*?\[\]]", path):
    raise ValueError(f"{flag} {path!r} contains *, ? or [ ]: Beam reads those as a file "
                     "pattern; rename the folder")


def _list_dir(directory: str) -> list[str]:
  """Paths of all files under directory (recursively); [] if it does not exist."""
  result = FileSystems.match([_join(directory, "**")])[0]
  return sorted(m.path for m in result.metadata_list)


def _is_build_output(name: str, dataset_name: str) -> bool:
  """Whether a top-level name in an output directory is one a build of dataset_name writes."""
  return (name in (features_lib.DATASET_INFO_FILE, features_lib.FEATURES_FILE,
                   features_lib.METADATA_FILE, features_lib.REJECTED_FILE,
                   features_lib.TAG_COUNTS_FILE, features_lib.TMP_DIR)
          or name.endswith(".labels.txt")
          or (name.startswith(f"{dataset_name}-") and f".{features_lib.FILE_FORMAT}-" in name)
          or name.startswith("beam-temp-"))


def prepare_output_dir(output_dir: str, overwrite: bool, dataset_name: str) -> None:
  """Refuses a non-empty output directory unless overwrite; with it, removes the old build.

  dataset_info.json goes first, so that a failed overwrite never leaves old
  metadata describing new shards. Files that a build never writes are kept.

  Raises:
    FileExistsError: output_dir holds files and overwrite is False.
  """
  existing = _list_dir(output_dir)
  info = _join(output_dir, features_lib.DATASET_INFO_FILE)
  if not existing and FileSystems.exists(info):  # The listing failed to see it: be safe.
    existing = [info]
  if not existing:
    if not FileSystems.exists(output_dir):
      FileSystems.mkdirs(output_dir)
    return
  if not overwrite:
    raise FileExistsError(
        f"output directory {output_dir} is not empty ({len(existing)} files, "
        f"e.g. {existing[0]}); pass --overwrite to replace the dataset in it")
  if FileSystems.exists(info):
    delete_paths([info])
  prefix = output_dir.rstrip("/") + "/"
  ours, kept = [], []
  for path in existing:
    if path == info:
      continue
    top = path[len(prefix):].split("/", 1)[0]
    (ours if _is_build_output(top, dataset_name) else kept).append(path)
  if ours:
    delete_paths(ours)
  for path in kept:
    logging.warning("--overwrite keeps %s: a dataset build never writes it", path)


# ---------------------------------------------------------------------------
# discover → read+decode

def _stem(path: str) -> str:
  return os.path.splitext(path)[0]


def _pair_with_label(stem_and_paths: tuple[str, Iterable[str]],
                     label_extension: str) -> Iterable[Any]:
  _, paths = stem_and_paths
  paths = sorted(paths)
  labels = [p for p in paths if p.endswith(label_extension)]
  images = [p for p in paths if imaging.is_image_path(p)]
  label_path = labels[0] if labels else None
  for image_path in images:
    yield Candidate(image_path, label_path)
  if label_path and not images:
    yield beam.pvalue.TaggedOutput(REJECTED, rejection(
        label_path, imaging.NO_IMAGE_FILE, "label file without an image beside it"))


@beam.ptransform_fn
def DiscoverImages(pbegin, input_dir: str,  # pylint: disable=invalid-name
                   label_extension: Optional[str]):
  """Every image under input_dir (any depth) paired with the label file of the same stem.

  Listing goes through Beam's FileSystems, so gs:// works like a local path. With
  label_extension=None (labels from folders), every image is a Candidate without a
  label file.

  Returns:
    A DoOutputsTuple: main = Candidate, REJECTED = rejection dicts.
  """
  def keep(metadata) -> bool:
    name = os.path.basename(metadata.path)
    wanted = imaging.is_image_path(name) or bool(
        label_extension and name.endswith(label_extension))
    if not wanted:
      counter("files_ignored").inc()
    return wanted and not name.startswith(".")

  if label_extension is None:
    return (
        pbegin
        | "MatchFiles" >> fileio.MatchFiles(_join(input_dir, "**"))
        | "KeepImages" >> beam.Filter(keep)
        | "ToCandidate" >> beam.Map(lambda m: Candidate(m.path, None))
        # Spread the listing over workers before the decoding.
        | "Spread" >> beam.Reshuffle()
        | "NoRejections" >> beam.FlatMap(lambda c: [c]).with_outputs(
            REJECTED, main="candidates"))

  return (
      pbegin
      | "MatchFiles" >> fileio.MatchFiles(_join(input_dir, "**"))
      # FileMetadata of every file
      | "KeepImagesAndLabels" >> beam.Filter(keep)
      | "KeyByStem" >> beam.Map(lambda m: (_stem(m.path), m.path))
      # (stem, path)
      | "GroupByStem" >> beam.GroupByKey()
      # (stem, [paths])
      | "PairWithLabel" >> beam.FlatMap(
          _pair_with_label, label_extension).with_outputs(REJECTED, main="candidates"))


def read_bytes(path: str) -> bytes:
  with FileSystems.open(path) as f:
    return f.read()


class ReadAndDecode(beam.DoFn):
  """Candidate → ImageRecord: reads the label and the image, hashes and decodes the image once."""

  def __init__(self, read_label: Callable[[Candidate], Any], max_side: int,
               max_pixels: int):
    self._read_label = read_label
    self._max_side = max_side
    self._max_pixels = max_pixels

  def setup(self):
    self._images_read = counter("images_read")

  def process(self, candidate: Candidate):
    self._images_read.inc()
    path = candidate.image_path
    try:
      label = self._read_label(candidate)
      try:
        data = read_bytes(path)
      except (OSError, IOError) as e:
        raise imaging.Rejected(imaging.UNREADABLE, f"{type(e).__name__}: {e}") from None
      encoded = imaging.decode_and_resize(data, self._max_side, self._max_pixels)
    except imaging.Rejected as e:
      yield beam.pvalue.TaggedOutput(REJECTED, rejection(path, e.reason, e.detail))
      return
    yield ImageRecord(path=path, content_hash=hashlib.sha256(data).hexdigest(),
                      jpeg=encoded.jpeg, height=encoded.height, width=encoded.width,
                      label=label)


# ---------------------------------------------------------------------------
# dedupe → split

def _keep_first_of_duplicates(hash_and_records: tuple[str, Iterable[ImageRecord]]):
  _, records = hash_and_records
  records = sorted(records, key=lambda r: r.path)
  kept = records[0]
  yield kept
  for duplicate in records[1:]:
    counter("duplicates").inc()
    yield beam.pvalue.TaggedOutput(REJECTED, rejection(
        duplicate.path, imaging.DUPLICATE, f"duplicate of {kept.path}"))


@beam.ptransform_fn
def DropDuplicates(records):  # pylint: disable=invalid-name
  """Keeps one image per content hash (the first path in sort order); the others are rejected."""
  return (
      records
      | "KeyByHash" >> beam.Map(lambda r: (r.content_hash, r))
      # (content_hash, ImageRecord)
      | "GroupByHash" >> beam.GroupByKey()
      | "KeepFirst" >> beam.FlatMap(_keep_first_of_duplicates).with_outputs(
          REJECTED, main="unique"))


def split_of(content_hash: str, val_fraction: float, test_fraction: float) -> str:
  """The split of an image, from its content hash: the same on every run and runner."""
  position = int(content_hash[:16], 16) / 2.0**64  # Uniform in [0, 1).
  if position < test_fraction:
    return "test"
  if position < test_fraction + val_fraction:
    return "validation"
  return "train"


def shard_of(content_hash: str, num_shards: int) -> int:
  # Other bits than split_of's, so that shards are balanced within a split.
  return int(content_hash[16:32], 16) % num_shards


# ---------------------------------------------------------------------------
# vocabulary

def top_labels(counts: Iterable[tuple[str, int]], max_size: int,
               min_count: int) -> list[str]:
  """The max_size most frequent labels with at least min_count images, ties broken by name."""
  frequent = [(name, n) for name, n in counts if n >= min_count]
  frequent.sort(key=lambda kv: (-kv[1], kv[0]))
  return [name for name, _ in frequent[:max_size]]


@beam.ptransform_fn
def BuildVocabulary(train_label_names, max_size: int, min_count: int):  # pylint: disable=invalid-name
  """PCollection of label names (one per image and label, train split only) → one sorted list."""
  return (
      train_label_names
      | "CountLabels" >> beam.combiners.Count.PerElement()
      # (label, number of train images)
      | "DropRare" >> beam.Filter(lambda kv: kv[1] >= min_count)
      # Rare labels dropped first, so the list that reaches one worker stays small.
      | "Gather" >> beam.combiners.ToList()
      | "TopLabels" >> beam.Map(top_labels, max_size, min_count))


class ApplyVocabulary(beam.DoFn):
  """(split, record with label names) → (split, record with sorted label ids); none left → rejected.

  A label is a tuple of names (tags), or of (name, score) pairs (Vision labels), which
  become (ids, scores) in id order.
  """

  def __init__(self):
    self._cache = None  # (vocabulary, {name: id}); the side input is one object per bundle.

  def process(self, split_and_record, vocabulary: Sequence[str]):
    split, record = split_and_record
    if self._cache is None or self._cache[0] is not vocabulary:
      self._cache = (vocabulary, {t: i for i, t in enumerate(vocabulary)})
    index = self._cache[1]
    scored = bool(record.label) and isinstance(record.label[0], tuple)
    pairs = record.label if scored else [(name, None) for name in record.label]
    kept = sorted((index[name], score) for name, score in pairs if name in index)
    if not kept:
      yield beam.pvalue.TaggedOutput(REJECTED, rejection(
          record.path, imaging.NO_TAGS_IN_VOCABULARY,
          f"none of its {len(pairs)} labels is in the vocabulary"))
      return
    ids = tuple(i for i, _ in kept)
    label = (ids, tuple(score for _, score in kept)) if scored else ids
    yield split, dataclasses.replace(record, label=label)


def _names(label) -> list[str]:
  """The names in a raw label: tag names, or the names of (name, score) pairs."""
  return [l[0] if isinstance(l, tuple) else l for l in label]


def _ids(label) -> tuple[int, ...]:
  """The ids in a vocabulary-applied label: tag ids, or the ids of (ids, scores)."""
  return label[0] if label and isinstance(label[0], tuple) else label


@beam.ptransform_fn
def LabelVocabulary(with_split, max_size: int, min_count: int):  # pylint: disable=invalid-name
  """(split, record with label names) → vocabulary from train, applied, and counted.

  Returns:
    (examples: (split, record with label ids), vocabulary side input,
     label counts: one [((split, id), images)] element, rejections).
  """
  vocabulary = (
      with_split
      | "TrainNames" >> beam.FlatMap(lambda sr: _names(sr[1].label) if sr[0] == "train" else ())
      | "BuildVocabulary" >> BuildVocabulary(max_size, min_count))
  vocabulary_side = beam.pvalue.AsSingleton(vocabulary)
  labelled = with_split | "ApplyVocabulary" >> beam.ParDo(
      ApplyVocabulary(), vocabulary_side).with_outputs(REJECTED, main="examples")
  # (split, record with label ids)
  counts = (
      labelled.examples
      | "SplitIdPairs" >> beam.FlatMap(lambda sr: [(sr[0], i) for i in _ids(sr[1].label)])
      | "CountLabels" >> beam.combiners.Count.PerElement()
      | "GatherLabelCounts" >> beam.combiners.ToList())
  return labelled.examples, vocabulary_side, counts, labelled[REJECTED]


def add_vocabulary_args(parser: argparse.ArgumentParser, noun: str) -> None:
  """--num_<noun>s and --min_<noun>_count."""
  parser.add_argument(f"--num_{noun}s", type=int, default=5000,
                      help=f"Vocabulary size: the most frequent {noun}s of the train split.")
  parser.add_argument(f"--min_{noun}_count", type=int, default=1,
                      help=f"Train images a {noun} needs to enter the vocabulary.")


def validate_vocabulary_args(args: argparse.Namespace, noun: str) -> None:
  for flag in (f"num_{noun}s", f"min_{noun}_count"):
    if getattr(args, flag) < 1:
      raise ValueError(f"--{flag} must be >= 1, got {getattr(args, flag)}")


def example_fields(record: ImageRecord) -> dict:
  """The feature values every dataset has: the image and where it came from."""
  return {
      features_lib.IMAGE: record.jpeg,
      features_lib.PATH: record.path,
      features_lib.CONTENT_HASH: record.content_hash,
      features_lib.HEIGHT: record.height,
      features_lib.WIDTH: record.width,
  }


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


# ---------------------------------------------------------------------------
# serialise → shard → write

class Serialize(beam.DoFn):
  """(split, ImageRecord) → (split, content_hash, serialized tf.train.Example), via the feature spec."""

  def __init__(self, make_features: Callable[[Sequence[str]], tfds.features.FeaturesDict],
               to_example: Callable[[ImageRecord], dict]):
    self._make_features = make_features
    self._to_example = to_example
    self._cache = None  # (vocabulary, features, serializer), built once per worker.

  def process(self, split_and_record, vocabulary):
    split, record = split_and_record
    if self._cache is None or self._cache[0] is not vocabulary:
      features = self._make_features(vocabulary)
      serializer = tfds.core.example_serializer.ExampleSerializer(
          features.get_serialized_info())
      self._cache = (vocabulary, features, serializer)
    _, features, serializer = self._cache
    example = features.encode_example(self._to_example(record))
    yield split, record.content_hash, serializer.serialize_example(example)


def num_shards_for(split_bytes: int, split_examples: int, requested: int) -> int:
  """requested shards (capped at one example each), or 0 = shards of ~TARGET_SHARD_BYTES."""
  if requested > 0:
    return max(1, min(requested, split_examples))
  return max(1, -(-split_bytes // TARGET_SHARD_BYTES))


class WriteShard(beam.DoFn):
  """((split, shard), [(hash, example)]) → ShardInfo, after writing the shard file.

  The shard is written under a temporary name and renamed when closed, so a retried
  or failed bundle never leaves a partial file under a shard's name. Records are
  sorted by content hash: the same input gives byte-identical shards on any runner.
  """

  def __init__(self, output_dir: str, dataset_name: str):
    self._output_dir = output_dir
    self._dataset_name = dataset_name

  def process(self, key_and_examples, num_shards):
    (split, index), examples = key_and_examples
    examples = sorted(examples)
    total = num_shards[split]
    name = features_lib.shard_filename(self._dataset_name, split, index, total)
    tmp_path = _join(_join(self._output_dir, features_lib.TMP_DIR),
                     f"{name}.{uuid.uuid4().hex}")
    num_bytes = 0
    with FileSystems.create(tmp_path) as f:
      for _, serialized in examples:
        _TFRecordUtil.write_record(f, serialized)
        num_bytes += len(serialized)
    final_path = _join(self._output_dir, name)
    if FileSystems.exists(final_path):  # A retried bundle wrote it before.
      delete_paths([final_path])
    FileSystems.rename([tmp_path], [final_path])
    counter(f"written_{split}").inc(len(examples))
    yield ShardInfo(split, index, total, len(examples), num_bytes)


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
  examples = num_bytes = 0
  for e, b in pairs:
    examples += e
    num_bytes += b
  return examples, num_bytes


@beam.ptransform_fn
def WriteShards(serialized, output_dir: str, dataset_name: str,  # pylint: disable=invalid-name
                requested_shards: int):
  """(split, hash, example) → ShardInfo per shard, each counted by the writer as it wrote it.

  Returns:
    (shard_infos, split_sizes): split_sizes = {split: (examples, bytes)} counted
    before sharding, to cross-check the writer's counts.
  """
  split_sizes = (
      serialized
      | "SizeOf" >> beam.Map(lambda e: (e[0], (1, len(e[2]))))
      | "SumSizes" >> beam.CombinePerKey(_sum_pairs))
  # (split, (examples, bytes))
  num_shards = split_sizes | "NumShards" >> beam.Map(
      lambda kv: (kv[0], num_shards_for(kv[1][1], kv[1][0], requested_shards)))
  shard_infos = (
      serialized
      | "AssignShard" >> beam.Map(
          lambda e, n: ((e[0], shard_of(e[1], n[e[0]])), (e[1], e[2])),
          n=beam.pvalue.AsDict(num_shards))
      # ((split, shard), (hash, example))
      | "GroupShards" >> beam.GroupByKey()
      | "WriteShard" >> beam.ParDo(WriteShard(output_dir, dataset_name),
                                   num_shards=beam.pvalue.AsDict(num_shards)))
  return shard_infos, split_sizes


# ---------------------------------------------------------------------------
# metadata, written last

def _write_text(path: str, text: str) -> None:
  with FileSystems.create(path) as f:
    f.write(text.encode("utf-8"))


def library_versions() -> dict[str, str]:
  import importlib.metadata as md  # pylint: disable=import-outside-toplevel
  versions = {"python": platform.python_version()}
  for package in ("alti2v", "tensorflow", "tensorflow-datasets", "apache-beam",
                  "pillow", "numpy"):
    try:
      versions[package] = md.version(package)
    except md.PackageNotFoundError:
      versions[package] = "not installed"
  return versions


def finalize_dataset(shard_infos: list[ShardInfo], *, output_dir: str,
                     dataset_name: str, features: tfds.features.FeaturesDict,
                     split_sizes: dict[str, tuple[int, int]],
                     rejections: list[dict[str, str]],
                     label_counts_tsv: Optional[str],
                     metadata: dict[str, Any], description: str) -> dict[str, Any]:
  """Writes rejected.jsonl, the label counts and the TFDS metadata; dataset_info.json last.

  Runs once, after every shard is written. Shard lengths come from the writer's own
  counts (re-reading shards does not scale), cross-checked against the counts
  taken before sharding.

  Returns:
    The metadata dict that was written to metadata.json.
  """
  by_split: dict[str, list[ShardInfo]] = {}
  for info in shard_infos:
    by_split.setdefault(info.split, []).append(info)
  split_infos = []
  file_bytes = {}  # TFRecord framing adds 16 bytes per record: a stat() checks a shard.
  for split in features_lib.SPLITS:
    infos = sorted(by_split.get(split, []), key=lambda s: s.index)
    if not infos:
      continue
    total = infos[0].num_shards
    written = {s.index: s for s in infos}
    lengths, sizes = [], []
    for index in range(total):
      if index not in written:  # No example hashed to this shard: write it empty.
        name = features_lib.shard_filename(dataset_name, split, index, total)
        _write_text(_join(output_dir, name), "")
        written[index] = ShardInfo(split, index, total, 0, 0)
      lengths.append(written[index].num_examples)
      sizes.append(written[index].num_bytes)
    file_bytes[split] = [written[i].num_bytes + 16 * written[i].num_examples
                         for i in range(total)]
    expected = split_sizes[split][0]
    if sum(lengths) != expected:
      raise RuntimeError(
          f"split {split}: shards hold {sum(lengths)} examples but {expected} were "
          "serialised; refusing to write metadata for an inconsistent dataset")
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=lengths, num_bytes=sum(sizes),
        filename_template=None))
  if not split_infos:
    raise ValueError("no image was usable: every input was rejected "
                     f"(see the counts: {_reason_counts(rejections)})")

  rejections = sorted(rejections, key=lambda r: (r["path"], r["reason"]))
  _write_text(_join(output_dir, features_lib.REJECTED_FILE),
              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejections))
  if label_counts_tsv is not None:
    _write_text(_join(output_dir, features_lib.TAG_COUNTS_FILE), label_counts_tsv)

  metadata = dict(metadata)
  metadata["num_examples"] = {s.name: sum(s.shard_lengths) for s in split_infos}
  metadata["shard_file_bytes"] = file_bytes
  metadata["rejected"] = _reason_counts(rejections)
  metadata["library_versions"] = library_versions()
  tmp_dir = _join(output_dir, features_lib.TMP_DIR)
  if FileSystems.exists(tmp_dir):
    delete_paths([tmp_dir])
  # features.json, the vocabulary, metadata.json, then dataset_info.json (last).
  tfds.folder_dataset.write_metadata(
      data_dir=output_dir, features=features, split_infos=split_infos,
      filename_template=tfds.core.ShardedFileTemplate(
          data_dir=output_dir, template=tfds.core.naming.DEFAULT_FILENAME_TEMPLATE,
          dataset_name=dataset_name, filetype_suffix=features_lib.FILE_FORMAT),
      check_data=False, description=description,
      metadata=tfds.core.MetadataDict(metadata))
  return metadata


def _reason_counts(rejections: Iterable[dict[str, str]]) -> dict[str, int]:
  counts: dict[str, int] = {}
  for r in rejections:
    counts[r["reason"]] = counts.get(r["reason"], 0) + 1
  return dict(sorted(counts.items()))


def summarize(output_dir: str) -> dict[str, Any]:
  """What a finished build holds, read back from its metadata.json."""
  with FileSystems.open(_join(output_dir, features_lib.METADATA_FILE)) as f:
    metadata = json.load(f)
  summary = {"output_dir": output_dir, "examples": metadata["num_examples"]}
  for key in ("vocabulary_size", "class_counts"):
    if key in metadata:
      summary[key] = metadata[key]
  summary["rejected"] = metadata["rejected"]
  return summary


def count_rejection(record: dict[str, str]) -> dict[str, str]:
  counter(f"rejected_{record['reason']}").inc()
  return record


# ---------------------------------------------------------------------------
# What every builder's command line shares.

class BoolFlag(argparse.Action):
  """A boolean as absl spells it, like every alti2v command: --name sets it, --noname clears it.

  parser.add_argument("--overwrite", action=BoolFlag, default=False, help=...);
  the last of the two on the command line wins.
  """

  def __init__(self, option_strings, dest, default=False, help=None):  # pylint: disable=redefined-builtin
    (name,) = option_strings
    super().__init__([name, "--no" + name[2:]], dest, nargs=0, default=default, help=help)

  def __call__(self, parser, namespace, values, option_string=None):
    setattr(namespace, self.dest, option_string == self.option_strings[0])

  def format_usage(self) -> str:
    return " | ".join(self.option_strings)


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
  """An empty parser for a Beam job's own flags (parse it with parse_args)."""
  return argparse.ArgumentParser(
      prog=prog, description=description + " Other flags must be Beam's pipeline options "
      "(e.g. --runner=DataflowRunner --project ... --region ...); any other is an error.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter,
      allow_abbrev=False)  # A prefix of one of our flags could also be one of Beam's.


def _beam_option_parser() -> argparse.ArgumentParser:
  """The parser Beam itself builds from every PipelineOptions class (public API only)."""
  parsers = []
  PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
  return parsers[0]


def _option_names(parser: argparse.ArgumentParser) -> list[str]:
  return [name for action in parser._actions  # pylint: disable=protected-access
          for name in action.option_strings]


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
               ) -> tuple[argparse.Namespace, list[str]]:
  """The job's flags, and the rest for PipelineOptions; a flag neither knows is an error.

  PipelineOptions only logs "Discarding unparseable args" and runs on: a misspelt
  flag (--imagesize, --noretry_errror) would be dropped and its default used.

  Returns:
    (the job's arguments, Beam's arguments).

  Raises:
    SystemExit (2): after one line on stderr naming the first unknown flag.
  """
  args, rest = parser.parse_known_args(argv)
  beam_parser = _beam_option_parser()
  _, unknown = beam_parser.parse_known_args(rest)
  if unknown:
    flag = next((a for a in unknown if a.startswith("-")), unknown[0]).split("=", 1)[0]
    close = difflib.get_close_matches(
        flag, _option_names(parser) + _option_names(beam_parser), n=1)
    # parser.error's format without its usage block: the one line that matters.
    parser.exit(2, f"{parser.prog}: error: unrecognized argument {flag}: neither this "
                "job's flag nor a Beam pipeline option"
                + (f" (did you mean {close[0]}?)" if close else " (--help lists ours)") + "\n")
  return args, rest


def base_parser(prog: str, description: str, input_help: str,
                default_name: str) -> argparse.ArgumentParser:
  """The flags of every builder; a builder adds its own."""
  parser = job_parser(prog, description)
  parser.add_argument("--input_dir", required=True, help=input_help)
  parser.add_argument("--output_dir", required=True,
                      help="Dataset directory to create; local or gs://.")
  parser.add_argument("--dataset_name", default=default_name,
                      help="Name in the shard file names and dataset_info.json.")
  parser.add_argument("--image_size", type=int, default=256,
                      help="Longer side of the stored images, in pixels (never upscaled).")
  parser.add_argument("--max_pixels", type=int, default=imaging.DEFAULT_MAX_PIXELS,
                      help="Images with more pixels are rejected (too_many_pixels).")
  parser.add_argument("--val_fraction", type=float, default=0.1,
                      help="Share of images in the validation split.")
  parser.add_argument("--test_fraction", type=float, default=0.1,
                      help="Share of images in the test split.")
  parser.add_argument("--num_shards", type=int, default=0,
                      help="Shards per split (capped at its example count); 0 = "
                      "automatic, shards of about 150 MB.")
  parser.add_argument("--overwrite", action=BoolFlag, default=False,
                      help="Replace the dataset in a non-empty output directory.")
  return parser


def validate_common_args(args: argparse.Namespace) -> None:
  """Raises ValueError naming the first common flag whose value cannot work."""
  if args.image_size < 8:
    raise ValueError(f"--image_size must be >= 8, got {args.image_size}")
  if args.num_shards < 0:
    raise ValueError(f"--num_shards must be >= 0, got {args.num_shards}")
  for name in ("val_fraction", "test_fraction"):
    value = getattr(args, name)
    if not 0.0 <= value < 1.0:
      raise ValueError(f"--{name} must be in [0, 1), got {value}")
  if args.val_fraction + args.test_fraction >= 1.0:
    raise ValueError("--val_fraction + --test_fraction must be < 1 (no train split left)")
  if not re.fullmatch(r"[a-z][a-z0-9_]*", args.dataset_name):
    raise ValueError(f"--dataset_name must be snake_case, got {args.dataset_name!r}")


@beam.ptransform_fn
def ImagesBySplit(pbegin, args: argparse.Namespace,  # pylint: disable=invalid-name
                  label_extension: Optional[str], read_label: Callable[[Candidate], Any]):
  """discover → read+decode → dedupe → split: the front of every builder.

  Returns:
    ((split, ImageRecord) PCollection, tuple of rejection PCollections).
  """
  discovered = pbegin | "Discover" >> DiscoverImages(args.input_dir, label_extension)
  with_split, rejected = discovered.candidates | "DecodeAndSplit" >> DecodeAndSplit(
      args, read_label)
  return with_split, (discovered[REJECTED], *rejected)


@beam.ptransform_fn
def DecodeAndSplit(candidates, args: argparse.Namespace,  # pylint: disable=invalid-name
                   read_label: Callable[[Candidate], Any]):
  """Candidate → read+decode → dedupe → (split, ImageRecord), and the rejections."""
  decoded = (
      candidates
      # Candidate
      | "ReadAndDecode" >> beam.ParDo(ReadAndDecode(
          read_label, args.image_size, args.max_pixels)).with_outputs(
              REJECTED, main="records"))
  # ImageRecord with its raw label
  unique = decoded.records | "DropDuplicates" >> DropDuplicates()
  with_split = unique.unique | "AssignSplit" >> beam.Map(
      lambda r: (split_of(r.content_hash, args.val_fraction, args.test_fraction), r))
  # (split, ImageRecord)
  return with_split, (decoded[REJECTED], unique[REJECTED])


@beam.ptransform_fn
def WriteDataset(examples, args: argparse.Namespace,  # pylint: disable=invalid-name
                 rejected: Sequence[beam.PCollection],
                 make_features: Callable[[Sequence[str]], tfds.features.FeaturesDict],
                 to_example: Callable[[ImageRecord], dict], vocabulary,
                 label_counts, describe: Callable, description: str):
  """(split, ImageRecord) → shards, rejected.jsonl and the TFDS metadata: the back of every builder.

  Args:
    vocabulary: the label names, as a side input (AsSingleton) or a constant list.
    label_counts: a PCollection with one element (the builder's label counts).
    describe: (vocabulary, label_counts) → (metadata dict for metadata.json,
      tag_counts.tsv text or None).
    description: the dataset's description in dataset_info.json.
  """
  serialized = examples | "Serialize" >> beam.ParDo(
      Serialize(make_features, to_example), vocabulary)
  # (split, content_hash, serialized tf.train.Example)
  shard_infos, split_sizes = serialized | "WriteShards" >> WriteShards(
      args.output_dir, args.dataset_name, args.num_shards)
  rejections = (tuple(rejected) | "AllRejections" >> beam.Flatten()
                | "CountRejections" >> beam.Map(count_rejection))
  build_args = {k: v for k, v in vars(args).items() if k != "overwrite"}

  def finalize(infos, vocabulary, split_sizes, rejections, label_counts):
    metadata, counts_tsv = describe(vocabulary, label_counts)
    return finalize_dataset(
        infos, output_dir=args.output_dir, dataset_name=args.dataset_name,
        features=make_features(vocabulary), split_sizes=split_sizes,
        rejections=rejections, label_counts_tsv=counts_tsv,
        metadata={"build_args": build_args, **metadata}, description=description)

  return (
      shard_infos
      | "GatherShardInfos" >> beam.combiners.ToList()
      | "FinalizeDataset" >> beam.Map(
          finalize, vocabulary, split_sizes=beam.pvalue.AsDict(split_sizes),
          rejections=beam.pvalue.AsList(rejections),
          label_counts=beam.pvalue.AsSingleton(label_counts)))


def _prepare_dataset_dir(args: argparse.Namespace) -> None:
  prepare_output_dir(args.output_dir, args.overwrite, args.dataset_name)


def run_job(argv: Optional[Sequence[str]], parser: argparse.ArgumentParser,
            validate: Callable[[argparse.Namespace], None],
            build_pipeline: Callable[[beam.Pipeline, argparse.Namespace], None],
            prepare: Callable[[argparse.Namespace], None] = _prepare_dataset_dir
            ) -> beam.runners.runner.PipelineResult:
  """Parses argv, checks the paths, prepares the output directory, runs the pipeline to the end.

  Raises:
    SystemExit: a flag that is neither the job's nor Beam's (see parse_args).
  """
  args, beam_args = parse_args(parser, argv)
  validate(args)
  for flag in ("input_dir", "output_dir"):
    check_filesystem(getattr(args, flag))
    check_no_glob(f"--{flag}", getattr(args, flag))
  prepare(args)
  p = beam.Pipeline(options=pipeline_options(beam_args))
  build_pipeline(p, args)
  result = p.run()
  result.wait_until_finish()
  return result


def main(run: Callable, parser: argparse.ArgumentParser) -> None:
  """A builder's __main__: run it, then print the summary of what it built."""
  logging.getLogger().setLevel(logging.INFO)
  args, _ = parse_args(parser, None)
  run(None)
  print(json.dumps(summarize(args.output_dir), indent=2))
