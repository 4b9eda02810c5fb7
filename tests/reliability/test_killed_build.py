"""kill -9 of a build just before its last file: no dataset, and a re-run with --overwrite
gives the very bytes of an uninterrupted build."""
import filecmp
import os
import subprocess
import sys

import pytest

from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.tasks import tagger
from beam_jobs import build_tagged_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The build, SIGKILLed by itself when tfds starts writing the metadata (dataset_info.json
# is the last file it writes): every shard and rejected.jsonl are already there.
KILLED_BUILD = """
import os, runpy, signal, sys
import tensorflow_datasets as tfds
def killed(*args, **kwargs):
  os.kill(os.getpid(), signal.SIGKILL)
tfds.folder_dataset.write_metadata = killed
sys.argv = ["build"] + sys.argv[1:]
runpy.run_module("beam_jobs.build_tagged_dataset", run_name="__main__")
"""
FLAGS = ["--image_size", "32", "--num_shards", "2", "--val_fraction", "0.25",
         "--test_fraction", "0.25", "--direct_running_mode=in_memory",
         "--direct_num_workers=1"]


def test_a_killed_build_is_no_dataset_and_the_rerun_is_the_clean_build(tmp_path):
  images, out, clean = tmp_path / "images", tmp_path / "out", tmp_path / "clean"
  tagger.write_corpus(str(images), 16, seed=7)
  args = ["--input_dir", str(images), "--output_dir", str(out), *FLAGS]
  killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, *args], cwd=REPO,
                          capture_output=True)
  assert killed.returncode == -9
  left = os.listdir(out)
  assert features_lib.DATASET_INFO_FILE not in left and any(".tfrecord-" in n for n in left)
  with pytest.raises(dataset_lib.DatasetError, match="not a finished alti2v dataset"):
    dataset_lib.load_builder(str(out))
  with pytest.raises(FileExistsError, match="pass --overwrite"):
    build_tagged_dataset.run(args)
  build_tagged_dataset.run(args + ["--overwrite"])
  out.rename(clean)
  build_tagged_dataset.run(args)  # Uninterrupted, into the same --output_dir.
  names = sorted(os.listdir(out))
  assert sorted(os.listdir(clean)) == names
  assert [n for n in names if not filecmp.cmp(out / n, clean / n, shallow=False)] == []
