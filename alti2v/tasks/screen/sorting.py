"""Sorting a scraped folder into OUT/ok and OUT/ng with a trained screening filter, losing no file.

What `python -m alti2v.screen` does. Every image under SCRAPED streams through tf.data in
batches (data/image_files.py: predict's road) and gets a row in OUT/scores.csv (path, score,
decision, destination, reason): ok (score >= threshold) → OUT/ok/, ng → OUT/ng/, unreadable →
OUT/unreadable/, each keeping its path below SCRAPED. A name already taken is never
overwritten ("a (1).jpg"). A copy is written under a temporary name, fsynced, then renamed; a
move is an atomic hard link + unlink on one filesystem, else such a copy and then the delete.
A journal written before each batch's file operations lets an interrupted run, re-run, finish
them and continue without scoring any file twice. A copy or move that fails (full disk, no
permission) leaves the file in place and out of scores.csv: OUT's failed list keeps its
decision, the run counts it as failed, and the next run retries it. One run at a time holds
OUT (OUT/.screen.lock), and first deletes the temporaries a killed run's copies left there.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from typing import Callable, Container, Optional, Sequence

from alti2v.data import imaging
from alti2v.tasks.screen.task import SCREEN
from alti2v.training import run_dir

MODES = ("copy", "move", "manifest")
SCORES_FILE = "scores.csv"  # One row per file; a file's row is written once.
JOURNAL_FILE = ".screen-journal.jsonl"
FAILED_FILE = ".screen-failed.jsonl"  # Decided, but the copy or move failed: retried next run.
LOCK_FILE = ".screen.lock"  # The run screening into OUT now: pid, host, start time.
FIELDS = ("path", "score", "decision", "destination", "reason")
FOLDERS = {"ok": "ok", "ng": "ng", "unreadable": "unreadable"}
PAST = {"copy": "copied", "move": "moved"}  # For messages: "not copied", "not moved".
# durable_copy's temporaries: ".NAME.<32 hex>.tmp". Nothing else in OUT is named like that.
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp", re.DOTALL)


class OutputBusy(ValueError):
  """Another screen run holds the output folder."""


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


def free_name(dest: str, *taken: Container[str]) -> str:
  """dest, or "name (1).ext", "name (2).ext", ... : the first not on disk nor in any taken."""
  stem, ext = os.path.splitext(dest)
  candidate, n = dest, 0
  while os.path.lexists(candidate) or any(candidate in names for names in taken):
    n += 1
    candidate = f"{stem} ({n}){ext}"
  return candidate


def list_images(input_dir: str, output_dir: str) -> tuple[list[str], list[OSError]]:
  """(every image file under input_dir, recursively, sorted, skipping output_dir inside it;
  the errors of the folders that could not be listed: their images are not in the list)."""
  output_dir = os.path.realpath(output_dir)
  paths, errors = [], []
  for root, dirs, names in os.walk(input_dir, onerror=errors.append):
    dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) != output_dir)
    paths.extend(os.path.join(root, n) for n in sorted(names) if imaging.is_image_path(n))
  return paths, errors


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


def check_request(input_dir: str, output_dir: str, mode: str) -> tuple[str, str]:
  """Refuses a screen that cannot be right, before anything is written.

  Returns:
    (input_dir, output_dir) as real paths.

  Raises:
    ValueError: an unknown mode, an input that is not an existing folder (a typo would
      otherwise screen nothing and bind OUT to the wrong input), or an input that is the
      output or inside it.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  real_input, real_output = os.path.realpath(input_dir), os.path.realpath(output_dir)
  if real_input == real_output or real_input.startswith(real_output + os.sep):
    raise ValueError(f"the input {input_dir} is the output {output_dir} or inside it; "
                     "screen into another folder")
  if not os.path.isdir(real_input):
    raise ValueError(f"the input {input_dir} is not an existing folder; nothing was written")
  return real_input, real_output


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Another user's process.
  return True


class OutputLock:
  """OUT/.screen.lock: one screen run per output folder at a time (a context manager).

  The file is created with O_EXCL, held with flock for the whole run and records its holder
  (pid, host, start time), so that a refused run can say who holds OUT. The kernel drops the
  flock of a killed run: a lock file whose flock is free and that names this host is stale
  and is taken over. One naming another host is refused, since that host's process cannot be
  checked from here (delete the file when that run is gone). On a filesystem without flock
  the pid decides: a lock whose pid is dead on this host is stale.
  """

  def __init__(self, directory: str):
    self.directory = directory
    self.path = os.path.join(directory, LOCK_FILE)
    self._fd: Optional[int] = None

  def __enter__(self) -> "OutputLock":
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()

  def acquire(self) -> None:
    """Takes the lock, or raises OutputBusy naming the run that holds it."""
    while self._fd is None:
      try:
        fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
      except FileExistsError:
        try:
          fd, created = os.open(self.path, os.O_RDWR), False
        except FileNotFoundError:
          continue  # Released meanwhile.
      try:
        if self._take(fd, created):
          self._fd = fd
      finally:
        if self._fd is None:
          os.close(fd)

  def _take(self, fd: int, created: bool) -> bool:
    """Locks the open lock file and writes this run into it; False to start again."""
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      flocked = True
    except BlockingIOError:
      raise OutputBusy(self._busy(self._read(fd))) from None
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        raise
      flocked = False
    if not self._is_current(fd):
      return False  # The holder released (unlinked) it after we opened it.
    if not created:
      holder = self._read(fd)
      here = holder.get("host") == socket.gethostname()
      if flocked and not here and holder:
        raise OutputBusy(self._busy(holder) + f"; if that run is gone, delete {self.path}")
      if not flocked:
        if not here or _pid_alive(holder.get("pid", 0)):
          raise OutputBusy(self._busy(holder))
        # Another run may be taking over this same stale lock: let O_EXCL pick one. (Two
        # takers whose reads and unlinks interleave can still both win; flock prevents it.)
        os.unlink(self.path)
        return False
      if holder:
        logging.warning("taking over %s: screen run pid %s (started %s) is gone", self.path,
                        holder.get("pid"), holder.get("started"))
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    os.fsync(fd)
    return True

  def _is_current(self, fd: int) -> bool:
    """Whether fd is the file now at self.path."""
    try:
      now, ours = os.stat(self.path), os.fstat(fd)
    except FileNotFoundError:
      return False
    return (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino)

  @staticmethod
  def _read(fd: int) -> dict:
    try:
      record = json.loads(os.pread(fd, 1 << 16, 0))
    except ValueError:
      return {}  # Empty: its creator is about to write it.
    return record if isinstance(record, dict) else {}

  def _busy(self, holder: dict) -> str:
    who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
           if holder else "another run (starting)")
    return (f"{self.directory} is held by the screen run {who} ({self.path}); wait for it "
            "or use another --output_dir")

  def release(self) -> None:
    if self._fd is None:
      return
    if self._is_current(self._fd):  # (Not when someone deleted it by hand meanwhile.)
      os.unlink(self.path)  # While still flocked: a waiting run then sees a new file or none.
    os.close(self._fd)
    self._fd = None


STATE_FILE = ".screen-state.json"  # The mode and input of the run that owns OUT.
_ENC = {"encoding": "utf-8", "errors": "surrogateescape"}  # Any file name round-trips.


def _write_jsonl(path: str, rows: Sequence[dict]) -> None:
  """Replaces path with rows, one JSON line each: the file is whole or absent."""
  tmp = path + ".tmp"
  with open(tmp, "w", **_ENC) as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _read_jsonl(path: str) -> list[dict]:
  """The rows of a journal or failed list, without a last line a kill tore (an appended
  failed row is also in the journal until its batch is done)."""
  if not os.path.exists(path):
    return []
  with open(path, **_ENC) as f:
    lines = f.read().split("\n")
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1:  # Only the last line, not ended by "\n", can be torn.
        raise
  return rows


class Screener:
  """The state of one output directory: what is done (scores.csv), what is pending (journal),
  what failed to transfer (the failed list). The caller holds OutputLock (screen does)."""

  def __init__(self, input_dir: str, output_dir: str, mode: str):
    self.input_dir, self.output_dir = check_request(input_dir, output_dir, mode)
    self.mode = mode
    os.makedirs(self.output_dir, exist_ok=True)
    self.scores_path = os.path.join(self.output_dir, SCORES_FILE)
    self.journal_path = os.path.join(self.output_dir, JOURNAL_FILE)
    self.failed_path = os.path.join(self.output_dir, FAILED_FILE)
    self._check_state()
    self.done: set[str] = set()
    if os.path.exists(self.scores_path):
      self._drop_torn_row()
      with open(self.scores_path, newline="", **_ENC) as f:
        self.done = {row["path"] for row in csv.DictReader(f)}
    else:
      self._append_rows([], header=True)
    self.failed = {row["path"]: row for row in _read_jsonl(self.failed_path)
                   if row["path"] not in self.done}
    self.failed_destinations: set[str] = set()  # Still theirs: a retry writes there.
    self._save_failed()  # Compacted: each file once, none done, no torn last line.

  def _check_state(self) -> None:
    """One output directory belongs to one input and one mode (a manifest run then a move
    run into the same folder would skip every file)."""
    path = os.path.join(self.output_dir, STATE_FILE)
    state = {"input_dir": self.input_dir, "mode": self.mode}
    if os.path.exists(path):
      with open(path, **_ENC) as f:
        stored = json.load(f)
      if stored == state:
        return
      if not (os.path.isdir(stored["input_dir"]) or self._holds_anything()):
        # Bound to an input that does not exist by a run that screened nothing (before
        # check_request, a mistyped --input_dir did that): the binding is void.
        logging.warning("%s was bound to the missing input %s; rebinding it to %s",
                        self.output_dir, stored["input_dir"], self.input_dir)
      else:
        raise ValueError(f"{self.output_dir} holds a screen of {stored['input_dir']} in "
                         f"mode {stored['mode']}; use another --output_dir")
    with open(path, "w", **_ENC) as f:
      json.dump(state, f)

  def _holds_anything(self) -> bool:
    """Whether OUT records any decision: a scores.csv row, a journal, a failed list."""
    if os.path.exists(self.journal_path) or os.path.exists(self.failed_path):
      return True
    if not os.path.exists(self.scores_path):
      return False
    with open(self.scores_path, newline="", **_ENC) as f:
      return any(True for _ in csv.DictReader(f))

  def remove_temporaries(self) -> int:
    """Deletes the temporaries of copies a killed run left in ok/, ng/, unreadable/.

    Only with OutputLock held: they could be a running copy's otherwise.

    Returns:
      How many were deleted.
    """
    removed = 0
    for folder in FOLDERS.values():
      for root, _, names in os.walk(os.path.join(self.output_dir, folder)):
        for name in names:
          if _TEMPORARY.fullmatch(name):
            os.unlink(os.path.join(root, name))
            removed += 1
    if removed:
      logging.info("deleted %d temporary files of an interrupted copy", removed)
    return removed

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
    return free_name(os.path.join(self.output_dir, FOLDERS[decision], relative), taken,
                     self.failed_destinations)

  def _transfer(self, row: dict) -> bool:
    """Copies or moves one file.

    Returns:
      False when that failed and the file is still there (full disk, no permission): it is
      to be retried. True otherwise; a file that vanished is noted in the row's reason.
    """
    src, dest = row["path"], row["destination"]
    if not dest:
      return True
    try:
      if os.path.lexists(dest) and (not os.path.lexists(src) or same_bytes(src, dest)):
        if self.mode == "move" and os.path.lexists(src):
          os.unlink(src)  # Interrupted after the link, before the unlink.
        return True  # Done before an interruption.
      if self.mode == "copy":
        durable_copy(src, dest)
      else:
        durable_move(src, dest)
    except OSError as e:
      if os.path.lexists(src):
        logging.warning("could not %s %s to %s: %s (left in place; a re-run retries it)",
                        self.mode, src, dest, e)
        return False
      row["destination"] = ""  # Vanished: nothing left to transfer, ever.
      row["reason"] = "; ".join(r for r in (row["reason"], f"not {PAST[self.mode]}: {e}") if r)
    return True

  def commit(self, rows: Sequence[dict]) -> list[dict]:
    """Journals the rows, does their file operations, records them, clears the journal.

    Returns:
      The rows whose copy or move failed (kept in the failed list, not in scores.csv).
    """
    _write_jsonl(self.journal_path, rows)
    failed = self._apply(rows)
    os.unlink(self.journal_path)
    return failed

  def _apply(self, rows: Sequence[dict]) -> list[dict]:
    """Transfers rows; records the finished ones in scores.csv, keeps the failed ones."""
    failed = [row for row in rows if not self._transfer(row)]
    failed_paths = {row["path"] for row in failed}
    finished = [row for row in rows if row["path"] not in failed_paths]
    if finished:
      self._append_rows(finished)
      self.done.update(row["path"] for row in finished)
      for row in finished:  # On disk, the failed list's entries of done files are ignored.
        if self.failed.pop(row["path"], None) is not None:
          self.failed_destinations.discard(row["destination"])
    if failed:
      self._append_failed(failed)
    return failed

  def _append_failed(self, rows: Sequence[dict]) -> None:
    """Adds rows to the failed list (appended: no rewrite per batch on a full disk)."""
    with open(self.failed_path, "a", **_ENC) as f:
      f.write("".join(json.dumps(row) + "\n" for row in rows))
      f.flush()
      os.fsync(f.fileno())
    self.failed.update((row["path"], row) for row in rows)
    self.failed_destinations.update(row["destination"] for row in rows)

  def _save_failed(self) -> None:
    """Rewrites the failed list whole: what is still failed, each file once."""
    if self.failed:
      _write_jsonl(self.failed_path, list(self.failed.values()))
    elif os.path.exists(self.failed_path):
      os.unlink(self.failed_path)
    self.failed_destinations = {row["destination"] for row in self.failed.values()}

  def retry_failed(self) -> tuple[int, int]:
    """Transfers again the files an earlier run failed to copy or move, as then decided.

    Returns:
      (files now recorded in scores.csv, files that failed again).
    """
    rows = list(self.failed.values())
    if not rows:
      return 0, 0
    renamed = False
    for row in rows:
      src, dest = row["path"], row["destination"]
      try:
        clash = os.path.lexists(dest) and os.path.lexists(src) and not same_bytes(src, dest)
      except OSError:
        clash = False  # Unreadable: the transfer says why.
      if clash:  # Something else took that name since: the file gets another.
        others = {r["destination"] for r in rows if r is not row}
        row["destination"], renamed = free_name(dest, others), True
    if renamed:
      self._save_failed()  # The new names before the transfers: a kill then loses none.
    failed = self._apply(rows)
    self._save_failed()  # Each file once, the done ones gone.
    return len(rows) - len(failed), len(failed)

  def recover(self) -> tuple[int, int]:
    """Finishes the batch an interrupted run had journaled (scores reused, not recomputed).

    Returns:
      (files now recorded in scores.csv, files whose transfer failed).
    """
    if not os.path.exists(self.journal_path):
      return 0, 0
    rows = [r for r in _read_jsonl(self.journal_path)
            if r["path"] not in self.done and r["path"] not in self.failed]
    failed = self._apply(rows)
    os.unlink(self.journal_path)
    logging.info("recovered %d journaled decisions of an interrupted run", len(rows))
    return len(rows) - len(failed), len(failed)


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
    Counts of this run's files: "ok", "ng", "unreadable" (decided and recorded), "skipped"
    (recorded by an earlier run), "recovered" (an interrupted run's journaled batch, now
    recorded), "retried" (an earlier run's failed transfers, now done), "failed" (copy or
    move failed: left in place, not recorded, retried by the next run),
    "unreadable_folders" (folders that could not be listed, each logged: their images are
    not screened nor recorded, so a later run screens them).

  Raises:
    ValueError: refused before any file was screened (see check_request, Screener);
      OutputBusy when another run holds output_dir.
  """
  if threshold is None:
    threshold = run_dir.read_keep_threshold(model_dir)
    if threshold is None:
      raise ValueError(f"no threshold: run `python -m alti2v.evaluate --model_dir "
                       f"{model_dir} ...` first, or pass --threshold")
  check_request(input_dir, output_dir, mode)  # Before OUT and its lock are created.
  os.makedirs(output_dir, exist_ok=True)
  with OutputLock(os.path.realpath(output_dir)):
    state = Screener(input_dir, output_dir, mode)
    state.remove_temporaries()
    return _screen_new_files(state, model_dir, threshold, batch_size, progress, on_batch)


def _screen_new_files(state: Screener, model_dir: str, threshold: float, batch_size: int,
                      progress: bool, on_batch: Optional[Callable[[int], None]]
                      ) -> dict[str, int]:
  """screen's work once it holds the output folder: earlier runs' leftovers, then new files."""
  counts = dict.fromkeys(("ok", "ng", "unreadable", "skipped", "recovered", "retried",
                          "failed", "unreadable_folders"), 0)
  counts["retried"], failed = state.retry_failed()
  counts["failed"] += failed
  counts["recovered"], failed = state.recover()
  counts["failed"] += failed
  paths, errors = list_images(state.input_dir, state.output_dir)
  counts["unreadable_folders"] = len(errors)
  for e in errors:
    logging.warning("cannot list %s (%s: %s): its images were not screened, nor recorded "
                    "(a later run screens them once it can)", e.filename,
                    type(e).__name__, e.strerror)
  todo = [p for p in paths if p not in state.done and p not in state.failed]
  counts["skipped"] = sum(p in state.done for p in paths)
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
    failed = {row["path"] for row in state.commit(rows)}
    counts["failed"] += len(failed)
    for row in rows:
      if row["path"] not in failed:
        counts[row["decision"]] += 1
    done += len(rows)
    rows, taken = [], set()
    if on_batch is not None:
      on_batch(done)

  for path, scores, error in run.score_files(todo, batch_size, progress, "screen"):
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
    if len(rows) >= batch_size:
      flush()
  if rows:
    flush()
  return counts
