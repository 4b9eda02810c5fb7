"""The screening filter: folder builder, training, threshold choice, and screen without losing a file."""
import collections
import csv
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from alti2v import tasks
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import samples
from alti2v.tasks import screen
from alti2v.tasks.screen import sorting
from alti2v.training import run_dir
from tests import fixtures


def test_folder_builder_labels_from_folders(screen_dataset):
  sorted_dir, data = screen_dataset
  builder = dataset_lib.load_builder(data)
  assert builder.info.features[screen.LABEL].names == ["negative", "positive"]
  seen = {}
  for split in builder.info.splits:
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      seen[ex[features_lib.PATH].decode()] = (split, int(ex[screen.LABEL]))
  expected = {os.path.join(sorted_dir, c, n): int(c == "positive")
              for c in ("positive", "negative") for n in os.listdir(os.path.join(sorted_dir, c))}
  assert {p: label for p, (_, label) in seen.items()} == expected
  with open(os.path.join(data, "metadata.json"), encoding="utf-8") as f:
    class_counts = json.load(f)["class_counts"]
  for split, counts in class_counts.items():
    assert counts == {
        "negative": sum(1 for s, l in seen.values() if s == split and l == 0),
        "positive": sum(1 for s, l in seen.values() if s == split and l == 1)}
  with open(os.path.join(data, "rejected.jsonl"), encoding="utf-8") as f:
    assert [json.loads(l)["reason"] for l in f] == ["no_class_folder"]


def test_training_steps_give_a_one_output_filter(screen_model):
  info = run_dir.read_info(screen_model)
  assert info["task"] == "screen" and info["num_outputs"] == 1
  with open(os.path.join(screen_model, info["vocabulary_file"]), encoding="utf-8") as f:
    assert f.read().split() == ["negative", "positive"]


def test_evaluate_screen_saves_the_threshold(screen_model, screen_dataset):
  _, data = screen_dataset
  _, result = tasks.run_evaluation(screen_model, data,
                                   tasks.EvalOptions(split="test", target_recall=0.5))
  saved = json.loads(open(os.path.join(screen_model, run_dir.KEEP_THRESHOLD_FILE)).read())
  assert saved["threshold"] == result["threshold"] and saved["goal"] == "recall >= 0.5"
  assert saved["validation_recall"] >= 0.5
  assert sum(result["confusion"].values()) == result["num_examples"]
  assert run_dir.read_keep_threshold(screen_model) == saved["threshold"]


def file_bytes(*roots, skip=()):
  """Multiset of the bytes of every file under roots (scores.csv and journal excepted)."""
  found = collections.Counter()
  for root in roots:
    for folder, _, names in os.walk(root):
      for name in names:
        path = os.path.join(folder, name)
        if name in (sorting.SCORES_FILE, sorting.JOURNAL_FILE, sorting.STATE_FILE,
                    sorting.FAILED_FILE, sorting.LOCK_FILE) or path in skip:
          continue
        with open(path, "rb") as f:
          found[f.read()] += 1
  return found


@pytest.fixture
def scrape(tmp_path):
  """A scraped folder: 10 images, a same-named one in a sub-folder, an unreadable one."""
  root = tmp_path / "scraped"
  samples.write_flat(str(root), 10, seed=11)
  (root / "sub").mkdir()
  shutil.copy(root / "scraped_000001.jpg", root / "sub" / "scraped_000000.jpg")
  (root / "broken.jpg").write_bytes(fixtures.truncated_jpeg())
  (root / "notes.txt").write_text("not an image: left where it is")
  return root


def read_scores(out):
  with open(os.path.join(out, sorting.SCORES_FILE), newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize("mode", sorting.MODES)
def test_screen_each_mode_loses_nothing_and_never_overwrites(screen_model, scrape, tmp_path,
                                                             mode):
  out = tmp_path / "out"
  # Files already in the output folders with the names screen would choose.
  for folder in ("ok", "ng"):
    (out / folder).mkdir(parents=True)
    (out / folder / "scraped_000002.jpg").write_bytes(b"already here: " + folder.encode())
  before_in = file_bytes(scrape)
  before_out = file_bytes(out)
  counts = sorting.screen(screen_model, str(scrape), str(out), mode=mode, threshold=0.5,
                         batch_size=4)
  rows = read_scores(out)
  assert counts["ok"] + counts["ng"] == 11 and counts["unreadable"] == 1
  assert len(rows) == len({r["path"] for r in rows}) == 12
  broken = next(r for r in rows if r["path"].endswith("broken.jpg"))
  assert broken["decision"] == "unreadable" and broken["reason"].startswith("truncated")
  for r in rows:
    if r["decision"] != "unreadable":
      assert (float(r["score"]) >= 0.5) == (r["decision"] == "ok")
  if mode == "manifest":
    assert all(r["destination"] == "" for r in rows)
    assert file_bytes(scrape) == before_in and file_bytes(out) == before_out
    return
  for r in rows:
    assert r["destination"].startswith(os.path.join(str(out), r["decision"]))
    assert os.path.exists(r["destination"])
  # The pre-existing files are untouched; the newcomer got another name.
  for folder in ("ok", "ng"):
    assert (out / folder / "scraped_000002.jpg").read_bytes() == (
        b"already here: " + folder.encode())
  moved = next(r for r in rows if r["path"].endswith("/scraped_000002.jpg"))
  assert moved["destination"].endswith("scraped_000002 (1).jpg")
  if mode == "copy":
    assert file_bytes(scrape) == before_in
    assert file_bytes(out) - before_out == before_in - collections.Counter(
        {(scrape / "notes.txt").read_bytes(): 1})
  else:  # move: every byte is still somewhere, exactly once.
    assert file_bytes(scrape) + file_bytes(out) == before_in + before_out
    assert sorted(os.listdir(scrape)) == ["notes.txt", "sub"]


def test_interrupted_screen_resumes_without_scoring_twice(screen_model, scrape, tmp_path):
  out = tmp_path / "out"
  before = file_bytes(scrape)

  def stop(done):
    raise KeyboardInterrupt(f"killed after {done}")

  with pytest.raises(KeyboardInterrupt):
    sorting.screen(screen_model, str(scrape), str(out), mode="move", threshold=0.5,
                  batch_size=4, on_batch=stop)
  assert len(read_scores(out)) == 4
  counts = sorting.screen(screen_model, str(scrape), str(out), mode="move", threshold=0.5,
                         batch_size=4)
  assert counts["skipped"] == 0  # moved files left the input: nothing to skip
  assert counts["ok"] + counts["ng"] + counts["unreadable"] == 8
  rows = read_scores(out)
  assert len(rows) == len({r["path"] for r in rows}) == 12
  assert file_bytes(scrape) + file_bytes(out) == before
  again = sorting.screen(screen_model, str(scrape), str(out), mode="move", threshold=0.5)
  assert again["ok"] + again["ng"] + again["unreadable"] == 0


def test_a_journaled_batch_is_finished_with_its_recorded_score(screen_model, scrape, tmp_path):
  """Killed after moving a file but before recording it: the rerun records it, unscored."""
  out = tmp_path / "out"
  state = sorting.Screener(str(scrape), str(out), "move")
  src = os.path.join(str(scrape), "scraped_000004.jpg")
  row = {"path": src, "score": "0.123456", "decision": "ng",
         "destination": state.destination(src, "ng", set()), "reason": ""}
  with open(state.journal_path, "w", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")
  sorting.durable_move(src, row["destination"])  # done, then "killed"
  counts = sorting.screen(screen_model, str(scrape), str(out), mode="move", threshold=0.5)
  assert counts["recovered"] == 1
  rows = read_scores(out)
  (recorded,) = [r for r in rows if r["path"] == src]
  assert recorded["score"] == "0.123456"
  assert len(rows) == 12 and not os.path.exists(state.journal_path)


def test_copy_copies_durably_and_refuses_to_overwrite(tmp_path):
  src = tmp_path / "a.jpg"
  src.write_bytes(b"abc")
  dest = tmp_path / "o" / "a.jpg"
  sorting.durable_copy(str(src), str(dest))
  assert dest.read_bytes() == b"abc" and src.exists()
  with pytest.raises(FileExistsError):
    sorting.durable_copy(str(src), str(dest))
  assert sorting.free_name(str(dest), set()) == str(tmp_path / "o" / "a (1).jpg")
  assert not [n for n in os.listdir(tmp_path / "o") if n.endswith(".tmp")]


def test_cli_and_refusals(screen_model, trained_tagger, scrape, tmp_path):
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "alti2v.screen", "--model_dir", screen_model, "--input_dir",
       str(scrape), "--output_dir", str(out), "--mode", "manifest", "--threshold", "0.5",
       "--noprogress"], check=True, capture_output=True, text=True)
  counts = json.loads(result.stdout.strip().splitlines()[-1])
  assert counts["ok"] + counts["ng"] + counts["unreadable"] == 12
  _, tagger_dir = trained_tagger
  with pytest.raises(ValueError, match="holds a tagger model"):
    sorting.screen(tagger_dir, str(scrape), str(tmp_path / "o2"), threshold=0.5)
  with pytest.raises(ValueError, match="mode must be one of"):
    sorting.screen(screen_model, str(scrape), str(tmp_path / "o3"), mode="delete",
                  threshold=0.5)


def test_torn_rows_vanished_files_and_mismatched_runs(screen_model, scrape, tmp_path):
  out = tmp_path / "out"
  first = sorting.screen(screen_model, str(scrape), str(out), mode="copy", threshold=0.5)
  assert first["ok"] + first["ng"] == 11
  # A kill tore the last row of scores.csv: it is cut, and that file is screened again once.
  scores = out / sorting.SCORES_FILE
  data = scores.read_bytes()
  last_row = data[:-1].rfind(b"\n") + 1
  scores.write_bytes(data[:last_row + 5])
  torn_path = data[last_row:].split(b",")[0].decode()
  again = sorting.screen(screen_model, str(scrape), str(out), mode="copy", threshold=0.5)
  assert again["ok"] + again["ng"] + again["unreadable"] == 1
  rows = read_scores(out)
  assert len(rows) == 12 and sum(r["path"] == torn_path for r in rows) == 1
  # Another mode into the same output folder is refused, as is an input inside the output.
  with pytest.raises(ValueError, match="holds a screen of"):
    sorting.screen(screen_model, str(scrape), str(out), mode="move", threshold=0.5)
  with pytest.raises(ValueError, match="inside it"):
    sorting.screen(screen_model, str(out / "ok"), str(out), mode="copy", threshold=0.5)
  # A file that vanishes between scoring and moving stays recorded, nothing is lost.
  state = sorting.Screener(str(scrape), str(tmp_path / "out2"), "move")
  row = {"path": str(scrape / "gone.jpg"), "score": "0.9", "decision": "ok",
         "destination": str(tmp_path / "out2" / "ok" / "gone.jpg"), "reason": ""}
  state.commit([row])
  (recorded,) = read_scores(tmp_path / "out2")
  assert recorded["destination"] == "" and "not moved" in recorded["reason"]


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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
