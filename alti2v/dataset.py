"""Opens and checks a finished alti2v dataset directory (the reader side of alti2v.features).

  python -m alti2v.dataset DATA_DIR          # summary + recount every shard against its metadata
"""
from __future__ import annotations

import json
import sys
from typing import Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v import features as features_lib


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


def main(argv: Sequence[str]) -> int:
  if len(argv) != 2:
    print(__doc__, file=sys.stderr)
    return 2
  try:
    totals = verify_dataset(argv[1])
  except DatasetError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  builder = load_builder(argv[1])
  print(json.dumps({
      "data_dir": argv[1], "name": builder.info.name, "examples": totals,
      "shards": {s: len(i.shard_lengths) for s, i in builder.info.splits.items()},
      "features": sorted(builder.info.features.keys()),
  }, indent=2))
  print("ok: every shard holds the number of records its metadata says")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
