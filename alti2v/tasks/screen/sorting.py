"""Sorting a scraped folder into OUT/ok and OUT/ng with a trained screening filter, losing no file.

What `python -m alti2v.screen` does. Every image under SCRAPED streams through tf.data in
batches (data/image_files.py: predict's road) and gets a row in OUT/scores.csv (path, score,
decision, destination, reason): ok (score >= threshold) → OUT/ok/, ng → OUT/ng/, unreadable →
OUT/unreadable/, each keeping its path below SCRAPED. A name already taken is never
overwritten ("a (1).jpg"). A copy is written under a temporary name, fsynced, then renamed; a
move is an atomic hard link + unlink on one filesystem, else such a copy and then the delete.
A journal written before each batch's file operations lets an interrupted run, re-run, finish
them and continue without scoring any file twice.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import shutil
import uuid
from typing import Callable, Optional, Sequence

from alti2v.data import imaging
from alti2v.tasks.screen.task import SCREEN
from alti2v.training import run_dir

MODES = ("copy", "move", "manifest")
SCORES_FILE = "scores.csv"  # One row per file; a file's row is written once.
JOURNAL_FILE = ".screen-journal.jsonl"
FIELDS = ("path", "score", "decision", "destination", "reason")
FOLDERS = {"ok": "ok", "ng": "ng", "unreadable": "unreadable"}


def _fsync_dir(directory: str) -> None:
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def durable_copy(src: str, dest: str) -> None:
  """Copies src to dest (which must not exist): temporary name, fsync, rename, fsync the folder."""
  directory = os.path.dirname(dest)
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{os.path.basename(dest)}.{uuid.uuid4().hex}.tmp")
  try:
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
      shutil.copyfileobj(fin, fout, 1 << 20)
      fout.flush()
      os.fsync(fout.fileno())
    shutil.copystat(src, tmp)
    os.link(tmp, dest)  # Fails if dest appeared meanwhile: never overwrite.
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  _fsync_dir(directory)


def durable_move(src: str, dest: str) -> None:
  """Moves src to dest (which must not exist); at every instant at least one of them is whole."""
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  try:
    os.link(src, dest)  # Same filesystem: atomic, and refuses an existing dest.
  except OSError as e:
    if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
      raise
    durable_copy(src, dest)
  _fsync_dir(os.path.dirname(dest))
  os.unlink(src)
  _fsync_dir(os.path.dirname(src))


def free_name(dest: str, taken: set[str]) -> str:
  """dest, or "name (1).ext", "name (2).ext", ... : the first not on disk nor taken."""
  stem, ext = os.path.splitext(dest)
  candidate, n = dest, 0
  while os.path.lexists(candidate) or candidate in taken:
    n += 1
    candidate = f"{stem} ({n}){ext}"
  return candidate


def list_images(input_dir: str, output_dir: str) -> list[str]:
  """Every image file under input_dir (recursively, sorted), skipping output_dir inside it."""
  output_dir = os.path.realpath(output_dir)
  paths = []
  for root, dirs, names in os.walk(input_dir):
    dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) != output_dir)
    paths.extend(os.path.join(root, n) for n in sorted(names) if imaging.is_image_path(n))
  return paths


def same_bytes(a: str, b: str) -> bool:
  if os.path.getsize(a) != os.path.getsize(b):
    return False
  with open(a, "rb") as fa, open(b, "rb") as fb:
    while True:
      x, y = fa.read(1 << 20), fb.read(1 << 20)
      if x != y:
        return False
      if not x:
        return True


STATE_FILE = ".screen-state.json"  # The mode and input of the run that owns OUT.
_ENC = {"encoding": "utf-8", "errors": "surrogateescape"}  # Any file name round-trips.


class Screener:
  """The state of one output directory: what is done (scores.csv), what is pending (journal)."""

  def __init__(self, input_dir: str, output_dir: str, mode: str):
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    self.input_dir = os.path.realpath(input_dir)
    self.output_dir = os.path.realpath(output_dir)
    if self.input_dir == self.output_dir or self.input_dir.startswith(
        self.output_dir + os.sep):
      raise ValueError(f"the input {input_dir} is the output {output_dir} or inside it; "
                       "screen into another folder")
    self.mode = mode
    os.makedirs(self.output_dir, exist_ok=True)
    self._check_state()
    self.scores_path = os.path.join(self.output_dir, SCORES_FILE)
    self.journal_path = os.path.join(self.output_dir, JOURNAL_FILE)
    self.done: set[str] = set()
    if os.path.exists(self.scores_path):
      self._drop_torn_row()
      with open(self.scores_path, newline="", **_ENC) as f:
        self.done = {row["path"] for row in csv.DictReader(f)}
    else:
      self._append_rows([], header=True)

  def _check_state(self) -> None:
    """One output directory belongs to one input and one mode (a manifest run then a move
    run into the same folder would skip every file)."""
    path = os.path.join(self.output_dir, STATE_FILE)
    state = {"input_dir": self.input_dir, "mode": self.mode}
    if os.path.exists(path):
      with open(path, **_ENC) as f:
        stored = json.load(f)
      if stored != state:
        raise ValueError(f"{self.output_dir} holds a screen of {stored['input_dir']} in "
                         f"mode {stored['mode']}; use another --output_dir")
      return
    with open(path, "w", **_ENC) as f:
      json.dump(state, f)

  def _drop_torn_row(self) -> None:
    """Cuts scores.csv back to its last complete row (a kill can tear the last one)."""
    with open(self.scores_path, "rb+") as f:
      data = f.read()
      end = data.rfind(b"\n") + 1
      if end < len(data):
        f.truncate(end)

  def _append_rows(self, rows: Sequence[dict], header: bool = False) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS)
    if header:
      writer.writeheader()
    writer.writerows(rows)
    with open(self.scores_path, "a", newline="", **_ENC) as f:
      f.write(out.getvalue())  # One write per batch.
      f.flush()
      os.fsync(f.fileno())

  def destination(self, path: str, decision: str, taken: set[str]) -> str:
    if self.mode == "manifest":
      return ""
    relative = os.path.relpath(path, self.input_dir)
    return free_name(os.path.join(self.output_dir, FOLDERS[decision], relative), taken)

  def _transfer(self, row: dict) -> None:
    """Copies or moves one file; a file that cannot be transferred stays where it is."""
    src, dest = row["path"], row["destination"]
    if not dest:
      return
    if os.path.lexists(dest) and (not os.path.lexists(src) or same_bytes(src, dest)):
      if self.mode == "move" and os.path.lexists(src):
        os.unlink(src)  # Interrupted after the link, before the unlink.
      return  # Done before an interruption.
    try:
      if self.mode == "copy":
        durable_copy(src, dest)
      else:
        durable_move(src, dest)
    except OSError as e:  # Vanished, unreadable, no permission: left in place, noted.
      row["destination"] = ""
      row["reason"] = "; ".join(r for r in (row["reason"], f"not {self.mode}d: {e}") if r)

  def commit(self, rows: Sequence[dict]) -> None:
    """Journal the rows, do their file operations, record them in scores.csv, clear the journal."""
    tmp = self.journal_path + ".tmp"
    with open(tmp, "w", **_ENC) as f:
      for row in rows:
        f.write(json.dumps(row) + "\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.journal_path)  # A journal is whole or absent.
    self._apply(rows)

  def _apply(self, rows: Sequence[dict]) -> None:
    for row in rows:
      self._transfer(row)
    self._append_rows(rows)
    self.done.update(row["path"] for row in rows)
    os.unlink(self.journal_path)

  def recover(self) -> int:
    """Finishes the batch an interrupted run had journaled (scores reused, not recomputed)."""
    if not os.path.exists(self.journal_path):
      return 0
    with open(self.journal_path, **_ENC) as f:
      rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if r["path"] not in self.done]
    self._apply(rows)
    logging.info("recovered %d journaled decisions of an interrupted run", len(rows))
    return len(rows)


def screen(model_dir: str, input_dir: str, output_dir: str, *, mode: str = "copy",
           threshold: Optional[float] = None, batch_size: int = 32, progress: bool = False,
           on_batch: Optional[Callable[[int], None]] = None) -> dict[str, int]:
  """Scores every image under input_dir not yet in output_dir's scores.csv, and sorts it.

  Args:
    threshold: keep when score >= threshold; None = the one evaluate saved
      (run_dir.KEEP_THRESHOLD_FILE).
    on_batch: called with the number of files done after each batch (tests use it
      to interrupt a run).

  Returns:
    Counts of this run's decisions: {"ok", "ng", "unreadable", "skipped", "recovered"}.
  """
  if threshold is None:
    threshold = run_dir.read_keep_threshold(model_dir)
    if threshold is None:
      raise ValueError(f"no threshold: run `python -m alti2v.evaluate --model_dir "
                       f"{model_dir} ...` first, or pass --threshold")
  state = Screener(input_dir, output_dir, mode)
  counts = {"ok": 0, "ng": 0, "unreadable": 0, "skipped": 0,
            "recovered": state.recover()}
  paths = [p for p in list_images(state.input_dir, state.output_dir)]
  todo = [p for p in paths if p not in state.done]
  counts["skipped"] = len(paths) - len(todo)
  if not todo:
    return counts
  run = run_dir.load(model_dir)
  run.require_task([SCREEN.name], "screen needs a screening filter "
                     f"(--task={SCREEN.name})")
  rows: list[dict] = []
  taken: set[str] = set()
  done = 0

  def flush():
    nonlocal rows, taken, done
    state.commit(rows)
    done += len(rows)
    rows, taken = [], set()
    if on_batch is not None:
      on_batch(done)

  for path, scores, error in run.score_files(todo, batch_size, progress):
    if scores is None:
      decision, score, reason = "unreadable", "", error
      if not os.path.lexists(path):  # Gone since the listing: nothing to transfer.
        reason += " (vanished)"
    else:
      decision = "ok" if scores[0] >= threshold else "ng"
      score, reason = f"{scores[0]:.6f}", ""
    dest = state.destination(path, decision, taken) if os.path.lexists(path) else ""
    taken.add(dest)
    rows.append({"path": path, "score": score, "decision": decision, "destination": dest,
                 "reason": reason})
    counts[decision] += 1
    if len(rows) >= batch_size:
      flush()
  if rows:
    flush()
  return counts
