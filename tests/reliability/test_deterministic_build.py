"""BUILD.md's promise: the same build, run twice, gives byte-identical files."""
import filecmp
import os
import subprocess
import sys

from alti2v.tasks import tagger

# Files of a build that hold times: none (metadata.json records versions, not dates).
TIMED_FILES = ()


def build_in_a_new_process(images, out, hash_seed):
  env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
  subprocess.run(
      [sys.executable, "-m", "beam_jobs.build_tagged_dataset", "--input_dir", str(images),
       "--output_dir", str(out), "--image_size", "32", "--num_shards", "2",
       "--val_fraction", "0.25", "--test_fraction", "0.25",
       "--direct_running_mode=in_memory", "--direct_num_workers=1"],
      check=True, env=env, capture_output=True)


def test_two_builds_in_two_processes_are_byte_identical(tmp_path):
  images, out = tmp_path / "images", tmp_path / "dataset"
  tagger.write_corpus(str(images), 24, seed=5)
  build_in_a_new_process(images, out, 1)
  first = tmp_path / "first"
  out.rename(first)  # The same --output_dir both times: build_args name it.
  build_in_a_new_process(images, out, 2)
  names = sorted(os.listdir(out))
  assert names == sorted(os.listdir(first))
  assert any(".tfrecord-" in n for n in names)
  differ = [n for n in names
            if n not in TIMED_FILES and not filecmp.cmp(out / n, first / n, shallow=False)]
  assert differ == []
