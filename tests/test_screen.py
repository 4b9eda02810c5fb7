"""The screening filter: folder builder, training, threshold choice, and screen without losing a file."""
import collections
import csv
import json
import os
import shutil
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
