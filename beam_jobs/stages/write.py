"""The back of every builder: serialise with the feature spec → shard → write, counting.

  (split, ImageRecord[stored label]) → (split, content hash, serialised example)
  → ((split, shard), [(hash, example)]) → ShardInfo → metadata.finalize_dataset
  rejections → rejections.WriteRejections (shards, counts per reason) ↗
Shards are TFRecord files named as tensorflow-datasets names them; records in a shard are
sorted by content hash, so a build gives byte-identical shards on any runner.
"""
from __future__ import annotations

import argparse
import os
import struct
import uuid
from typing import Callable, Iterable, Sequence

import apache_beam as beam
import google_crc32c
import tensorflow_datasets as tfds
from apache_beam.io.filesystems import FileSystems

from alti2v.data import features as features_lib
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages import metadata
from beam_jobs.stages import rejections as rejections_lib
from beam_jobs.stages.elements import ImageRecord, ShardInfo

TARGET_SHARD_BYTES = 150 * 2**20  # --num_shards=0 aims at 100-200 MB shards.
MakeFeatures = Callable[[Sequence[str]], tfds.features.FeaturesDict]
ToExample = Callable[[ImageRecord], dict]


def example_fields(record: ImageRecord) -> dict:
  """The feature values every dataset has: the image and where it came from.

  The path is stored as its name's bytes (os.fsencode): TFDS encodes a str as strict UTF-8,
  and a name that is not UTF-8 is surrogate-escaped; a reader gets it back with os.fsdecode.
  """
  return {
      features_lib.IMAGE: record.jpeg,
      features_lib.PATH: os.fsencode(record.path),
      features_lib.CONTENT_HASH: record.content_hash,
      features_lib.HEIGHT: record.height,
      features_lib.WIDTH: record.width,
  }


class Serialize(beam.DoFn):
  """(split, ImageRecord) → (split, content_hash, serialised tf.train.Example), by the spec."""

  def __init__(self, make_features: MakeFeatures, to_example: ToExample):
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
    # Deterministic: protobuf writes a map (tf.train.Example's features) in an order that
    # differs between processes otherwise, and shards are promised byte-identical.
    serialized = serializer.get_tf_example(example).SerializeToString(deterministic=True)
    yield split, record.content_hash, serialized


def _masked_crc32c(data: bytes) -> bytes:
  crc = google_crc32c.value(data)
  return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord_frame(data: bytes) -> bytes:
  """One TFRecord: length, its masked crc32c, the data, the data's masked crc32c.

  The format tf.data.TFRecordDataset reads (tensorflow.org/tutorials/load_data/tfrecord);
  written here because Beam's own framing is private (apache_beam.io.tfrecordio).
  """
  length = struct.pack("<Q", len(data))
  return length + _masked_crc32c(length) + data + _masked_crc32c(data)


def num_shards_for(split_bytes: int, split_examples: int, requested: int) -> int:
  """requested shards (capped at one example each), or 0 = shards of ~TARGET_SHARD_BYTES."""
  if requested > 0:
    return max(1, min(requested, split_examples))
  return max(1, -(-split_bytes // TARGET_SHARD_BYTES))


def shard_of(content_hash: str, num_shards: int) -> int:
  # Other bits than read.split_of's, so that shards are balanced within a split.
  return int(content_hash[16:32], 16) % num_shards


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
    tmp_path = files.join(files.join(self._output_dir, features_lib.TMP_DIR),
                          f"{name}.{uuid.uuid4().hex}")
    num_bytes = 0
    with FileSystems.create(tmp_path) as f:
      for _, serialized in examples:
        f.write(tfrecord_frame(serialized))
        num_bytes += len(serialized)
    final_path = files.join(self._output_dir, name)
    if FileSystems.exists(final_path):  # A retried bundle wrote it before.
      files.delete_paths([final_path])
    FileSystems.rename([tmp_path], [final_path])
    elements.counter(f"written_{split}").inc(len(examples))
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


@beam.ptransform_fn
def WriteDataset(examples, args: argparse.Namespace,  # pylint: disable=invalid-name
                 rejected: Sequence[beam.PCollection], make_features: MakeFeatures,
                 to_example: ToExample, vocabulary, label_counts,
                 describe: metadata.Describe, description: str):
  """(split, ImageRecord) → shards, the rejections and the TFDS metadata: the back of every builder.

  Args:
    args: the common flags (--output_dir, --dataset_name, --num_shards, ...); all but
      --overwrite are recorded in metadata.json's build_args.
    rejected: every rejection PCollection of the build.
    make_features: vocabulary → the dataset's FeaturesDict.
    to_example: ImageRecord[stored label] → the feature dict of one example.
    vocabulary: the label names, as a side input (AsSingleton) or a constant list.
    label_counts: a PCollection with one element (the builder's label counts).
    describe: (vocabulary, label_counts) → (metadata.json entries, tag_counts.tsv or None).
    description: the dataset's description in dataset_info.json.
  """
  serialized = examples | "Serialize" >> beam.ParDo(
      Serialize(make_features, to_example), vocabulary)
  # (split, content_hash, serialised tf.train.Example)
  shard_infos, split_sizes = serialized | "WriteShards" >> WriteShards(
      args.output_dir, args.dataset_name, args.num_shards)
  rejections = (tuple(rejected) | "AllRejections" >> beam.Flatten()
                | "CountRejections" >> beam.Map(elements.count_rejection))
  # The workers write the rejections; finalize sees only their files' names and counts.
  written_rejections = rejections | "WriteRejections" >> rejections_lib.WriteRejections(
      args.output_dir, files.join(args.output_dir, features_lib.TMP_DIR))
  build_args = {k: v for k, v in vars(args).items() if k != "overwrite"}

  def finalize(infos, vocabulary, split_sizes, rejected_files, reason_counts, label_counts):
    entries, counts_tsv = describe(vocabulary, label_counts)
    return metadata.finalize_dataset(
        infos, output_dir=args.output_dir, dataset_name=args.dataset_name,
        features=make_features(vocabulary), split_sizes=split_sizes,
        rejected_files=rejected_files, reason_counts=reason_counts,
        label_counts_tsv=counts_tsv,
        metadata={"build_args": build_args, **entries}, description=description)

  return (
      shard_infos
      # One ShardInfo per shard: bounded by the shards, not by the images.
      | "GatherShardInfos" >> beam.combiners.ToList()
      | "FinalizeDataset" >> beam.Map(
          finalize, vocabulary, split_sizes=beam.pvalue.AsDict(split_sizes),
          rejected_files=beam.pvalue.AsSingleton(written_rejections.files),
          reason_counts=beam.pvalue.AsDict(written_rejections.reason_counts),
          label_counts=beam.pvalue.AsSingleton(label_counts)))
