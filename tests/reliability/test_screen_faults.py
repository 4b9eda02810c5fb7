"""screen's faults (moved from tests/test_screen.py): names that are not UTF-8, two runs at
once, failed transfers (a full disk), a mistyped input, a killed copy's leftovers."""
import collections
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from alti2v.data import samples
from alti2v.tasks.screen import sorting
from alti2v.training import run_dir
from tests.test_screen import file_bytes, read_scores, scrape  # noqa: F401 (a fixture)


def test_non_utf8_file_names(screen_model, tmp_path):
  scraped = tmp_path / "scraped"
  scraped.mkdir()
  name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes, not UTF-8
  samples.draw_sample(3, 1).image.save(os.path.join(str(scraped), name), format="JPEG")
  counts = sorting.screen(screen_model, str(scraped), str(tmp_path / "out"), mode="move",
                         threshold=0.5)
  assert counts["ok"] + counts["ng"] == 1
  assert not os.listdir(scraped)
  with open(tmp_path / "out" / sorting.SCORES_FILE, encoding="utf-8",
            errors="surrogateescape") as f:
    assert name in f.read()


# Faults: two runs at once, failed transfers, a mistyped input, a killed copy's leftovers.

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD_LOCK = """
import sys
from alti2v.tasks.screen import sorting
sorting.OutputLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()  # Until the test kills this process.
"""


def test_a_second_run_is_refused_and_a_killed_runs_lock_taken_over(screen_model, scrape,
                                                                     tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(sorting.OutputBusy,
                       match=f"pid {holder.pid} on {re.escape(socket.gethostname())} since "):
      sorting.screen(screen_model, str(scrape), str(out), mode="move", threshold=0.5)
    assert os.listdir(out) == [sorting.LOCK_FILE]  # The refused run wrote nothing.
  finally:
    holder.kill()  # SIGKILL: its lock file stays, naming a dead process.
    holder.wait()
  assert json.loads((out / sorting.LOCK_FILE).read_text())["pid"] == holder.pid
  counts = sorting.screen(screen_model, str(scrape), str(out), mode="move", threshold=0.5)
  assert counts["ok"] + counts["ng"] + counts["unreadable"] == 12
  assert len(read_scores(out)) == 12
  assert not (out / sorting.LOCK_FILE).exists()  # Released at the end.


def test_a_lock_of_another_host_is_refused_and_a_held_lock_in_process_too(scrape, tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / sorting.LOCK_FILE).write_text(json.dumps(
      {"pid": 1, "host": "another-host", "started": "2026-01-01T00:00:00+0000"}))
  with pytest.raises(sorting.OutputBusy, match="pid 1 on another-host .* delete "):
    sorting.screen("no-model-needed", str(scrape), str(out), threshold=0.5)
  (out / sorting.LOCK_FILE).unlink()
  with sorting.OutputLock(str(out)):
    with pytest.raises(sorting.OutputBusy, match=f"pid {os.getpid()} "):
      sorting.screen("no-model-needed", str(scrape), str(out), threshold=0.5)
  assert os.listdir(out) == []


FULL = ("scraped_000001.jpg", "scraped_000004.jpg", "broken.jpg")  # Their transfers fail.


def fail_transfers(monkeypatch, mode, names):
  """Makes the copy or move of the files named names fail with ENOSPC (a full disk): in
  the middle of the write for a copy, at the hard link for a move."""
  def enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  if mode == "copy":
    real_copy = shutil.copyfileobj

    def copyfileobj(fin, fout, length=0):
      if os.path.basename(str(getattr(fin, "name", ""))) in names:
        fout.write(fin.read(100))
        raise enospc()
      real_copy(fin, fout, length)
    monkeypatch.setattr(shutil, "copyfileobj", copyfileobj)
  else:
    real_link = os.link

    def link(src, dst, **kwargs):
      if os.path.basename(dst) in names:
        raise enospc()
      real_link(src, dst, **kwargs)
    monkeypatch.setattr(os, "link", link)


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_failed_transfers_are_counted_kept_in_place_and_retried(screen_model, scrape, tmp_path,
                                                                monkeypatch, mode):
  out = tmp_path / "out"
  before = file_bytes(scrape)
  failing = collections.Counter((scrape / name).read_bytes() for name in FULL)
  notes = collections.Counter({(scrape / "notes.txt").read_bytes(): 1})
  fail_transfers(monkeypatch, mode, FULL)
  counts = sorting.screen(screen_model, str(scrape), str(out), mode=mode, threshold=0.5,
                          batch_size=4)
  assert counts["failed"] == 3
  assert counts["ok"] + counts["ng"] == 9 and counts["unreadable"] == 0  # broken.jpg failed
  rows = read_scores(out)
  assert len(rows) == 9 and not [r for r in rows if os.path.basename(r["path"]) in FULL]
  # Only the recorded files arrived; the failed ones are still in the input, whole; no
  # temporary is left.
  assert file_bytes(out) == before - notes - failing
  assert file_bytes(scrape) == (before if mode == "copy" else notes + failing)
  assert not [n for _, _, names in os.walk(out) for n in names if n.endswith(".tmp")]

  monkeypatch.undo()  # The disk has room again. A re-run scores nothing: it only retries.
  monkeypatch.setattr(run_dir, "load", lambda _: pytest.fail("scored again"))
  again = sorting.screen(screen_model, str(scrape), str(out), mode=mode, threshold=0.5)
  assert again["retried"] == 3 and again["failed"] == 0
  assert again["ok"] + again["ng"] + again["unreadable"] == 0
  rows = read_scores(out)
  assert len(rows) == len({r["path"] for r in rows}) == 12
  for r in rows:
    assert os.path.exists(r["destination"])
    assert os.path.basename(r["destination"]) == os.path.basename(r["path"])  # No "(1)".
  broken = next(r for r in rows if r["path"].endswith("broken.jpg"))
  assert broken["decision"] == "unreadable" and broken["reason"].startswith("truncated")
  assert not (out / sorting.FAILED_FILE).exists()
  if mode == "copy":
    assert file_bytes(scrape) == before
  else:
    assert file_bytes(scrape) + file_bytes(out) == before
  assert sorting.screen(screen_model, str(scrape), str(out), mode=mode,
                        threshold=0.5)["retried"] == 0


FULL_DISK_CLI = """
import errno, os, runpy, shutil, sys
real_copy = shutil.copyfileobj
def copyfileobj(fin, fout, length=0):
  if os.path.basename(str(getattr(fin, "name", ""))) in {names!r}:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  real_copy(fin, fout, length)
shutil.copyfileobj = copyfileobj
sys.argv = ["screen"] + sys.argv[1:]
runpy.run_module("alti2v.screen", run_name="__main__")
"""


def test_cli_exits_non_zero_when_transfers_fail(screen_model, scrape, tmp_path):
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-c", FULL_DISK_CLI.format(names=set(FULL)), "--model_dir",
       screen_model, "--input_dir", str(scrape), "--output_dir", str(out), "--mode", "copy",
       "--threshold", "0.5", "--noprogress"], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 1, result.stderr
  assert json.loads(result.stdout.strip().splitlines()[-1])["failed"] == 3
  assert "error: 3 files could not be copied" in result.stderr
  assert "No space left on device" in result.stderr  # Each file's reason is logged.


def test_a_missing_input_is_refused_before_anything_is_written(screen_model, scrape, tmp_path):
  out, typo = tmp_path / "out", str(tmp_path / "scrapd")
  with pytest.raises(ValueError, match="not an existing folder"):
    sorting.screen(screen_model, typo, str(out), mode="manifest", threshold=0.5)
  assert not out.exists()
  result = subprocess.run(
      [sys.executable, "-m", "alti2v.screen", "--model_dir", screen_model, "--input_dir", typo,
       "--output_dir", str(out), "--mode", "manifest", "--threshold", "0.5", "--noprogress"],
      cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2 and "not an existing folder" in result.stderr
  assert "Traceback" not in result.stderr and not out.exists()
  counts = sorting.screen(screen_model, str(scrape), str(out), mode="manifest", threshold=0.5)
  assert counts["ok"] + counts["ng"] + counts["unreadable"] == 12
  # An output bound to a missing input by the old code (nothing screened) is rebound.
  bound = tmp_path / "bound"
  bound.mkdir()
  (bound / sorting.STATE_FILE).write_text(json.dumps({"input_dir": typo, "mode": "manifest"}))
  (bound / sorting.SCORES_FILE).write_text(",".join(sorting.FIELDS) + "\n")
  counts = sorting.screen(screen_model, str(scrape), str(bound), mode="manifest",
                          threshold=0.5)
  assert counts["ok"] + counts["ng"] + counts["unreadable"] == 12


def test_a_killed_copys_temporaries_are_deleted_on_start(screen_model, scrape, tmp_path):
  out = tmp_path / "out"
  sorting.screen(screen_model, str(scrape), str(out), mode="copy", threshold=0.5)
  hex32 = "0123456789abcdef" * 2
  leftovers = [out / "ok" / f".scraped_000001.jpg.{hex32}.tmp",
               out / "ng" / "sub" / f".scraped_000000.jpg.{hex32}.tmp"]
  not_ours = [out / "ok" / ".keep.tmp", out / "ok" / f"a.jpg.{hex32}.tmp", out / "notes.tmp"]
  for path in leftovers + not_ours:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a copy")
  counts = sorting.screen(screen_model, str(scrape), str(out), mode="copy", threshold=0.5)
  assert counts["skipped"] == 12
  assert not [p for p in leftovers if p.exists()]
  assert all(p.exists() for p in not_ours)
