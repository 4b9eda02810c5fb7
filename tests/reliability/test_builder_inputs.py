"""A builder's input that is missing, or gives nothing usable, is an error and no dataset."""
import json
import os
import subprocess
import sys

import pytest

from alti2v.data import features as features_lib
from beam_jobs import build_folder_dataset
from beam_jobs import build_tagged_dataset
from beam_jobs.stages import job

LOCAL = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def run_command(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args, *LOCAL],
                        capture_output=True, text=True)


@pytest.mark.parametrize("module", [build_tagged_dataset, build_folder_dataset])
def test_a_missing_input_is_refused_before_anything_is_written(tmp_path, module):
  out = tmp_path / "out"
  with pytest.raises(FileNotFoundError, match="--input_dir .*missing.* does not exist"):
    module.run(["--input_dir", str(tmp_path / "missing"), "--output_dir", str(out), *LOCAL])
  assert not out.exists()


def test_the_command_says_so_in_one_line_with_status_2(tmp_path):
  out = tmp_path / "out"
  proc = run_command("beam_jobs.build_tagged_dataset", "--input_dir",
                     str(tmp_path / "missing"), "--output_dir", str(out))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: --input_dir {tmp_path / 'missing'} does not exist; nothing was written")
  assert "Traceback" not in proc.stderr
  assert not out.exists()


def test_nothing_usable_leaves_only_rejected_jsonl_and_says_where(tmp_path):
  scrape, out = tmp_path / "scrape", tmp_path / "out"
  scrape.mkdir()
  (scrape / "a.jpg").write_bytes(b"")
  (scrape / "a.txt").write_text("red")
  (scrape / "b.jpg").write_bytes(b"not an image")
  proc = run_command("beam_jobs.build_tagged_dataset", "--input_dir", str(scrape),
                     "--output_dir", str(out))
  assert proc.returncode == 1
  rejected = out / features_lib.REJECTED_FILE
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: no image was usable: every input was rejected "
      f"(empty_file: 1, no_tag_file: 1); see {rejected}")
  assert "Traceback" not in proc.stderr
  assert os.listdir(out) == [features_lib.REJECTED_FILE]  # Nothing that looks like a dataset.
  lines = [json.loads(line) for line in rejected.read_text().splitlines()]
  assert [(os.path.basename(r["path"]), r["reason"]) for r in lines] == [
      ("a.jpg", "empty_file"), ("b.jpg", "no_tag_file")]


def test_an_input_without_any_file_writes_nothing(tmp_path):
  scrape, out = tmp_path / "scrape", tmp_path / "out"
  scrape.mkdir()
  with pytest.raises(job.NothingUsable, match=f"no image found under {scrape}; nothing "
                     "was written"):
    build_tagged_dataset.run(["--input_dir", str(scrape), "--output_dir", str(out), *LOCAL])
  assert not out.exists() or os.listdir(out) == []
