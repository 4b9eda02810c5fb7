"""A folder that cannot be listed is reported by build, predict and screen, never skipped.

Tests run as root, whom chmod 000 does not stop: the listing error is injected (os.scandir,
which os.walk lists with, raises PermissionError for one folder). The last test runs the
real thing as the user nobody where this machine lets nobody run this Python.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from apache_beam.metrics.metric import MetricsFilter
import pytest

from alti2v.data import features as features_lib
from alti2v.data import image_files
from alti2v.data import samples
from alti2v.tasks import tagger
from alti2v.tasks.screen import sorting
from alti2v.training import run_dir
from beam_jobs import build_tagged_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


@pytest.fixture
def locked(monkeypatch):
  """locked(folder): from then on, listing that folder raises PermissionError; .clear()."""
  real_scandir = os.scandir
  folders = set()

  def scandir(path="."):
    if not isinstance(path, int) and os.path.realpath(os.fsdecode(path)) in folders:
      raise PermissionError(13, "Permission denied", os.fsdecode(path))
    return real_scandir(path)

  monkeypatch.setattr(os, "scandir", scandir)

  class Locked:
    def __call__(self, folder):
      folders.add(os.path.realpath(str(folder)))

    def clear(self):
      folders.clear()

  return Locked()


def test_a_build_rejects_an_unreadable_folder_and_counts_it(tmp_path, locked):
  images, out = tmp_path / "images", tmp_path / "out"
  tagger.write_corpus(str(images / "open"), 12, seed=1)
  tagger.write_corpus(str(images / "shut"), 4, seed=2)
  locked(images / "shut")
  result = build_tagged_dataset.run([
      "--input_dir", str(images), "--output_dir", str(out), "--image_size", "32",
      "--num_shards", "1", *LOCAL])
  rejected = [json.loads(line) for line in
              (out / features_lib.REJECTED_FILE).read_text().splitlines()]
  assert rejected == [{"path": str(images / "shut"), "reason": "unreadable_folder",
                       "detail": "PermissionError: Permission denied; its files were not "
                       "listed"}]
  counters = {c.key.metric.name: c.committed for c in
              result.metrics().query(MetricsFilter().with_namespace("alti2v"))["counters"]}
  assert counters["rejected_unreadable_folder"] == 1
  assert counters["images_read"] == 12
  with open(out / features_lib.METADATA_FILE, encoding="utf-8") as f:
    assert json.load(f)["rejected"] == {"unreadable_folder": 1}


def test_the_reason_is_documented():
  assert features_lib.UNREADABLE_FOLDER in features_lib.REJECTION_REASONS
  with open(os.path.join(REPO, "BUILD.md"), encoding="utf-8") as f:
    assert "| `unreadable_folder` |" in f.read()


def test_predict_gives_an_unreadable_folder_an_error_line(trained_tagger, tmp_path, locked):
  _, model_dir = trained_tagger
  images = tmp_path / "images"
  tagger.write_corpus(str(images / "open"), 2, seed=1)
  tagger.write_corpus(str(images / "shut"), 2, seed=2)
  locked(images / "shut")
  paths = image_files.expand_paths([str(images)])
  assert str(images / "shut") in paths and len(paths) == 3
  lines = {line["path"]: line for line in tagger.tag_lines(
      run_dir.load(model_dir), paths, top_k=3, threshold=None, vector=False,
      batch_size=4, progress=False)}
  assert lines[str(images / "shut")] == {
      "path": str(images / "shut"),
      "error": "unreadable_folder: PermissionError: Permission denied; its files were not "
               "read"}
  assert sum("tags" in line for line in lines.values()) == 2


LOCKED_CLI = """
import os, runpy, sys
real_scandir = os.scandir
def scandir(path="."):
  if os.path.basename(os.fsdecode(path)) == "shut":
    raise PermissionError(13, "Permission denied", os.fsdecode(path))
  return real_scandir(path)
os.scandir = scandir
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__")
"""


def scrape_with_a_shut_folder(root):
  samples.write_flat(str(root), 3, seed=11)
  samples.write_flat(str(root / "shut"), 2, seed=12)
  return root


def test_screen_counts_it_and_screens_it_once_readable(screen_model, tmp_path, locked):
  scraped = scrape_with_a_shut_folder(tmp_path / "scraped")
  out = tmp_path / "out"
  locked(scraped / "shut")
  counts = sorting.screen(screen_model, str(scraped), str(out), mode="copy", threshold=0.5)
  assert counts["unreadable_folders"] == 1 and counts["ok"] + counts["ng"] == 3
  with open(out / sorting.SCORES_FILE, encoding="utf-8") as f:
    assert "shut" not in f.read()  # Not decided: a later run screens it.
  locked.clear()
  counts = sorting.screen(screen_model, str(scraped), str(out), mode="copy", threshold=0.5)
  assert (counts["unreadable_folders"], counts["skipped"], counts["ok"] + counts["ng"]) == (
      0, 3, 2)


def test_the_screen_command_names_the_folder_and_exits_1(screen_model, tmp_path):
  scraped = scrape_with_a_shut_folder(tmp_path / "scraped")
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-c", LOCKED_CLI, "alti2v.screen", "--model_dir", screen_model,
       "--input_dir", str(scraped), "--output_dir", str(out), "--mode", "manifest",
       "--threshold", "0.5", "--noprogress"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 1, result.stderr
  assert json.loads(result.stdout.strip().splitlines()[-1])["unreadable_folders"] == 1
  assert f"cannot list {scraped / 'shut'} (PermissionError: Permission denied)" in (
      result.stderr)
  assert "error: 1 folders could not be listed (named above)" in result.stderr


def _nobody_can_run_python():
  if os.getuid() != 0 or not shutil.which("setpriv"):
    return False
  probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          sys.executable, "-c", "import apache_beam, alti2v"],
                         capture_output=True, env={**os.environ, "PYTHONPATH": REPO})
  return probe.returncode == 0


@pytest.mark.skipif(not _nobody_can_run_python(),
                    reason="needs root, setpriv, and a Python the user nobody can run")
def test_as_a_user_whom_chmod_000_stops(tmp_path):
  root = tempfile.mkdtemp(prefix="alti2v-nobody-")
  try:
    os.chmod(root, 0o777)
    images = os.path.join(root, "images")
    tagger.write_corpus(os.path.join(images, "open"), 8, seed=1)
    tagger.write_corpus(os.path.join(images, "shut"), 2, seed=2)
    os.chmod(os.path.join(images, "shut"), 0)
    for folder, dirs, names in os.walk(root):
      os.chmod(folder, 0o777)
    os.chmod(os.path.join(images, "shut"), 0)
    out = os.path.join(root, "out")
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
         "-m", "beam_jobs.build_tagged_dataset", "--input_dir", images, "--output_dir", out,
         "--image_size", "32", *LOCAL], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr
    with open(os.path.join(out, features_lib.REJECTED_FILE), encoding="utf-8") as f:
      rejected = [json.loads(line) for line in f]
    assert [(r["path"], r["reason"]) for r in rejected] == [
        (os.path.join(images, "shut"), "unreadable_folder")]
  finally:
    os.chmod(os.path.join(root, "images", "shut"), 0o755)
    shutil.rmtree(root)
