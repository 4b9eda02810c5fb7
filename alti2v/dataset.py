"""Command line: checks a finished dataset directory and prints its summary.

  python -m alti2v.dataset DATA_DIR

Recounts every shard's records against dataset_info.json (alti2v/data/dataset.py): a check to
run after copying a dataset. Exit status 1 names the first missing, corrupt or miscounted shard.
"""
import json
import sys

from absl import app

from alti2v.data import dataset as dataset_lib


def main(argv) -> int:
  if len(argv) != 2:
    raise app.UsageError("usage: python -m alti2v.dataset DATA_DIR", exitcode=2)
  try:
    dataset_lib.verify_dataset(argv[1])
  except dataset_lib.DatasetError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(json.dumps(dataset_lib.summary(argv[1]), indent=2))
  print("ok: every shard holds the number of records its metadata says")
  return 0


if __name__ == "__main__":
  app.run(main)
