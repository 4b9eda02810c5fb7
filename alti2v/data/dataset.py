"""Opens and checks a finished alti2v dataset directory (the reader side of features.py).

`python -m alti2v.dataset DATA_DIR` prints summary() after verify_dataset().
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v.data import features as features_lib


class DatasetError(ValueError):
  """A directory that is not a finished, consistent alti2v dataset."""


def load_builder(data_dir: str) -> tfds.core.DatasetBuilder:
  """The tensorflow-datasets builder of a finished dataset directory.

  Raises:
    DatasetError: no dataset_info.json (the build did not finish, or this is not
      a dataset directory), or metadata tfds cannot read.
  """
  info_path = tf.io.gfile.join(data_dir, features_lib.DATASET_INFO_FILE)
  if not tf.io.gfile.exists(info_path):
    raise DatasetError(
        f"{data_dir} is not a finished alti2v dataset: {info_path} is missing "
        "(it is written last, so the build did not finish or this is the wrong "
        "directory)")
  try:
    return tfds.builder_from_directory(data_dir)
  except Exception as e:  # tfds raises many types for broken metadata.
    raise DatasetError(f"cannot read the dataset metadata in {data_dir}: {e}") from e


def shard_paths(builder: tfds.core.DatasetBuilder, split: str) -> list[str]:
  """The shard files of one split, in shard order."""
  return [str(p) for p in builder.info.splits[split].filepaths]


def verify_dataset(data_dir: str) -> dict[str, int]:
  """Recounts the records of every shard and compares them with dataset_info.json.

  Reads every shard once (record framing and checksums, no decoding): a check to
  run after copying a dataset, not on every start.

  Returns:
    {split: number of examples}.

  Raises:
    DatasetError: naming the first missing, corrupt or miscounted shard.
  """
  builder = load_builder(data_dir)
  totals = {}
  for split, info in builder.info.splits.items():
    for path, expected in zip(shard_paths(builder, split), info.shard_lengths):
      if not tf.io.gfile.exists(path):
        raise DatasetError(f"shard {path} is missing")
      try:
        actual = int(tf.data.TFRecordDataset(path).reduce(
            tf.constant(0, tf.int64), lambda n, _: n + 1))
      except tf.errors.DataLossError as e:
        raise DatasetError(f"shard {path} is corrupt: {e.message}") from None
      if actual != expected:
        raise DatasetError(
            f"shard {path} holds {actual} records but dataset_info.json says "
            f"{expected}")
    totals[split] = info.num_examples
  return totals


def class_names(builder: tfds.core.DatasetBuilder, feature: str) -> list[str]:
  """The names of a ClassLabel feature (or of a Sequence of one), index = class id."""
  spec = builder.info.features[feature]
  return list(getattr(spec, "feature", spec).names)  # Sequence(ClassLabel) → ClassLabel


def summary(data_dir: str) -> dict:
  """Name, examples and shards per split, and feature keys of a finished dataset."""
  builder = load_builder(data_dir)
  splits = builder.info.splits
  return {
      "data_dir": data_dir, "name": builder.info.name,
      "examples": {s: i.num_examples for s, i in splits.items()},
      "shards": {s: len(i.shard_lengths) for s, i in splits.items()},
      "features": sorted(builder.info.features.keys()),
  }
