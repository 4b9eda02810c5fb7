"""The feature spec every alti2v dataset shares, imported by the Beam writer and the tf.data reader.

Owns the common fields of a record, the file names of a dataset directory, the shard naming and
the rejection reasons every builder may give; a task adds its own fields (alti2v/tasks/).
"""
from __future__ import annotations

import json
import re
from typing import Callable, Iterable, Iterator, Mapping, Union

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Feature keys every record has (the field names inside every tf.train.Example).
IMAGE = "image"
PATH = "path"
CONTENT_HASH = "content_hash"
HEIGHT = "height"
WIDTH = "width"

SPLITS = ("train", "validation", "test")
FILE_FORMAT = "tfrecord"

# Files of a dataset directory, besides the shards.
DATASET_INFO_FILE = "dataset_info.json"  # Written last: its presence = complete.
FEATURES_FILE = "features.json"
METADATA_FILE = "metadata.json"
REJECTED_FILE = "rejected.jsonl"  # The rejections, when one file holds them (else shards).
REJECTED_SHARD = re.compile(r"rejected-\d{5}-of-\d{5}\.jsonl")  # rejected-00000-of-00003.jsonl
TAG_COUNTS_FILE = "tag_counts.tsv"  # Per-label counts of a dataset with a vocabulary.
TMP_DIR = "_tmp"  # Shards being written; removed when the build finishes.


def vocabulary_file(feature: str) -> str:
  """The file tfds names a ClassLabel's names after ("tags" → "tags.labels.txt")."""
  return f"{feature}.labels.txt"


def categories_file(feature: str) -> str:
  """The file beside the vocabulary naming each label's category, one a line ("tags" →
  "tags.categories.txt"); only a tagged dataset built with categories has it."""
  return f"{feature}.categories.txt"


# Reasons in rejected.jsonl that any builder may give (decoding reasons: imaging.py; a
# task's own: its module's REJECTION_REASONS).
NO_IMAGE_FILE = "no_image_file"  # A label file or entry without its image.
NO_LABEL_FILE = "no_label_file"  # An image without its label file or entry.
NO_TAGS = "no_tags"  # A label file that names no label.
NO_TAGS_IN_VOCABULARY = "no_tags_in_vocabulary"  # None of its labels made the vocabulary.
DUPLICATE = "duplicate"  # The same bytes as an image kept.
UNREADABLE_FOLDER = "unreadable_folder"  # A folder that cannot be listed: its files unseen.
REJECTION_REASONS = (NO_IMAGE_FILE, NO_LABEL_FILE, NO_TAGS, NO_TAGS_IN_VOCABULARY, DUPLICATE,
                     UNREADABLE_FOLDER)


def features_dict(own: Mapping[str, tfds.features.FeatureConnector]
                  ) -> tfds.features.FeaturesDict:
  """The common fields around a task's own: a JPEG-encoded RGB image, the task's fields,
  its source path, the sha256 of the source file, and the stored height/width.

  Args:
    own: the task's fields, by key (e.g. {"tags": Sequence(ClassLabel(...))}).
  """
  return tfds.features.FeaturesDict({
      IMAGE: tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      **own,
      PATH: tfds.features.Text(doc="Source file the image was read from."),
      CONTENT_HASH: tfds.features.Text(doc="sha256 of the source file's bytes."),
      HEIGHT: tfds.features.Scalar(np.int32, doc="Stored image height."),
      WIDTH: tfds.features.Scalar(np.int32, doc="Stored image width."),
  })


def shard_filename(dataset_name: str, split: str, shard_index: int,
                   num_shards: int) -> str:
  """The file name tensorflow-datasets gives a shard.

  Returns:
    e.g. "tagged_images-train.tfrecord-00003-of-00032".
  """
  template = tfds.core.ShardedFileTemplate(
      data_dir="/", template=tfds.core.naming.DEFAULT_FILENAME_TEMPLATE,
      dataset_name=dataset_name, split=split, filetype_suffix=FILE_FORMAT)
  return template.sharded_filepath(
      shard_index=shard_index, num_shards=num_shards).name


def rejected_filename(shard_index: int, num_shards: int) -> str:
  """The file of one shard of a build's rejections: REJECTED_FILE when there is one shard.

  Returns:
    "rejected.jsonl", or e.g. "rejected-00003-of-00012.jsonl".
  """
  if num_shards == 1:
    return REJECTED_FILE
  return f"rejected-{shard_index:05d}-of-{num_shards:05d}.jsonl"


def rejection_files(data_dir: str) -> list[str]:
  """The files holding a build's rejections (rejected.jsonl or its shards), in shard order.

  [] when the build rejected nothing that was written (or wrote no rejections file).
  Local or gs:// (tf.io.gfile); listed, not globbed, so a [ or * in data_dir is literal.
  """
  if not tf.io.gfile.isdir(data_dir):
    return []
  names = sorted(n for n in tf.io.gfile.listdir(data_dir)
                 if n == REJECTED_FILE or REJECTED_SHARD.fullmatch(n))
  return [f"{data_dir.rstrip('/')}/{n}" for n in names]


def read_rejections(data_dir: str) -> Iterator[dict[str, str]]:
  """Every rejection of a build, {"path", "reason", "detail"}, streamed shard by shard.

  The one reader of rejected.jsonl and its shards (rejected-SSSSS-of-NNNNN.jsonl, written
  by the workers when the rejections are many): memory stays one line, whatever their number.
  """
  for path in rejection_files(data_dir):
    with tf.io.gfile.GFile(path, "rb") as f:
      for line in f:
        if line.strip():
          yield json.loads(line.decode("utf-8"))


def batch_parser(features: tfds.features.FeaturesDict, names: Iterable[str]
                 ) -> Callable[[tf.Tensor], dict[str, Union[tf.Tensor, tf.RaggedTensor]]]:
  """serialized records [B] → {name: batch} for the named top-level features: one
  tf.io.parse_example per batch, the features' own dtypes.

  The reader's side of features_dict, for the hot path: tensorflow-datasets' reader
  parses and decodes one record at a time (measured: README, Benchmarks). An encoded
  image or a text comes back as its bytes [B]; a fixed-shape feature as [B, ...]; a
  sequence (first dimension None) as a RaggedTensor [B, None, ...] with ragged_rank 1.

  Raises:
    KeyError: a name that is not a feature.
    ValueError: a feature this parser cannot read (a nested dict, or a sequence of
      sequences).
  """
  infos = features.get_serialized_info()
  spec, shapes = {}, {}
  for name in names:
    info = infos[name]
    if not isinstance(info, tfds.features.TensorInfo):
      raise ValueError(f"feature {name!r} is nested ({info}): not readable by batch_parser")
    shape, dtype = tuple(info.shape), tf.as_dtype(info.dtype)
    # tf.train.Example holds int64, float32 and bytes lists.
    stored = (tf.string if dtype == tf.string
              else tf.float32 if dtype.is_floating else tf.int64)
    if None not in shape:
      spec[name] = tf.io.FixedLenFeature(shape, stored)
    elif shape[0] is None and None not in shape[1:]:
      spec[name] = tf.io.RaggedFeature(stored, row_splits_dtype=tf.int64)
    else:
      raise ValueError(f"feature {name!r} of shape {shape}: not readable by batch_parser")
    shapes[name] = (shape, dtype)

  def parse(serialized: tf.Tensor) -> dict:
    parsed = tf.io.parse_example(serialized, spec)
    out = {}
    for name, value in parsed.items():
      shape, dtype = shapes[name]
      if isinstance(value, tf.RaggedTensor):
        inner = shape[1:]
        if inner:  # Rows of a (None, L) tensor are stored flat: L values per row.
          size = int(np.prod(inner))
          value = tf.RaggedTensor.from_row_lengths(
              tf.reshape(value.values, (-1,) + inner), value.row_lengths() // size)
        value = tf.cast(value, dtype) if value.dtype != dtype else value
      elif value.dtype != dtype:
        value = tf.cast(value, dtype)
      out[name] = value
    return out
  return parse
