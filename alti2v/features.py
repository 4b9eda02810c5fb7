"""The one feature spec of alti2v datasets, shared by the Beam writer and the tf.data reader.

Owns the feature names, the tensorflow-datasets FeaturesDict, the file names of a dataset
directory and the shard naming, so writer and reader cannot drift apart.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

# Feature keys (the field names inside every tf.train.Example).
IMAGE = "image"
TAGS = "tags"
PATH = "path"
CONTENT_HASH = "content_hash"
HEIGHT = "height"
LABEL = "label"  # Binary class of folder-labelled data (screening filter).
LABELS = "labels"  # Vision API labels (ids), with LABEL_SCORES (the API's scores).
LABEL_SCORES = "label_scores"
CAPTIONS = "captions"  # Katakana captions (text), all of an image's references.
CAPTION_IDS = "caption_ids"  # The same, as fixed-length character ids.
WIDTH = "width"

SPLITS = ("train", "validation", "test")
FILE_FORMAT = "tfrecord"

# Files of a dataset directory, besides the shards.
DATASET_INFO_FILE = "dataset_info.json"  # Written last: its presence = complete.
FEATURES_FILE = "features.json"
METADATA_FILE = "metadata.json"
VOCABULARY_FILE = f"{TAGS}.labels.txt"  # tfds names a ClassLabel's file after it.
REJECTED_FILE = "rejected.jsonl"
TAG_COUNTS_FILE = "tag_counts.tsv"
TMP_DIR = "_tmp"  # Shards being written; removed when the build finishes.


def tagged_features(vocabulary: Sequence[str]) -> tfds.features.FeaturesDict:
  """The features of a tagged-image dataset.

  Args:
    vocabulary: tag names; a tag's index in it is its class id.

  Returns:
    A FeaturesDict: a JPEG-encoded RGB image, its tags (ids into vocabulary),
    its source path, the sha256 of the source file, and the stored height/width.
  """
  return tfds.features.FeaturesDict({
      IMAGE: tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      TAGS: tfds.features.Sequence(tfds.features.ClassLabel(names=list(vocabulary))),
      PATH: tfds.features.Text(doc="Source file the image was read from."),
      CONTENT_HASH: tfds.features.Text(doc="sha256 of the source file's bytes."),
      HEIGHT: tfds.features.Scalar(np.int32, doc="Stored image height."),
      WIDTH: tfds.features.Scalar(np.int32, doc="Stored image width."),
  })


CLASS_NAMES = ("negative", "positive")  # Binary ClassLabel: index 1 = keep.


def binary_features(class_names: Sequence[str] = CLASS_NAMES) -> tfds.features.FeaturesDict:
  """The features of a folder-labelled (keep/drop) dataset: like tagged_features, one class id.

  Args:
    class_names: [negative, positive] names; the label is the index (1 = positive).
  """
  return tfds.features.FeaturesDict({
      IMAGE: tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      LABEL: tfds.features.ClassLabel(names=list(class_names)),
      PATH: tfds.features.Text(doc="Source file the image was read from."),
      CONTENT_HASH: tfds.features.Text(doc="sha256 of the source file's bytes."),
      HEIGHT: tfds.features.Scalar(np.int32, doc="Stored image height."),
      WIDTH: tfds.features.Scalar(np.int32, doc="Stored image width."),
  })


def scored_features(vocabulary: Sequence[str]) -> tfds.features.FeaturesDict:
  """The features of a dataset with soft labels (Cloud Vision label scores).

  `labels` are ids into vocabulary (labels.labels.txt), `label_scores` the teacher's
  score of each, in the same order.
  """
  return tfds.features.FeaturesDict({
      IMAGE: tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      LABELS: tfds.features.Sequence(tfds.features.ClassLabel(names=list(vocabulary))),
      LABEL_SCORES: tfds.features.Sequence(tfds.features.Scalar(np.float32)),
      PATH: tfds.features.Text(doc="Source file the image was read from."),
      CONTENT_HASH: tfds.features.Text(doc="sha256 of the source file's bytes."),
      HEIGHT: tfds.features.Scalar(np.int32, doc="Stored image height."),
      WIDTH: tfds.features.Scalar(np.int32, doc="Stored image width."),
  })


def caption_features(length: int) -> tfds.features.FeaturesDict:
  """The features of a caption dataset: every caption of an image, as text and as ids.

  The character vocabulary of the ids is metadata.json's "caption_vocabulary" (a nested
  Sequence of ClassLabel, which would carry it, does not read back in tfds 4.9).

  Args:
    length: ids per caption (characters, END, padding).
  """
  return tfds.features.FeaturesDict({
      IMAGE: tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
      CAPTIONS: tfds.features.Sequence(tfds.features.Text()),
      CAPTION_IDS: tfds.features.Tensor(shape=(None, length), dtype=np.int32),
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
