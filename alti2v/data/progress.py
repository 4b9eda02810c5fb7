"""Progress of a long command (predict, evaluate, screen, caption): one helper for all of them.

On a terminal, a tqdm bar on stderr (stdout may carry the results) with the count, rate and
ETA; otherwise (a log file, CI, a pipe) one plain line every few seconds and one at the end,
so that a log shows how far a run got without a carriage-return bar filling it.
"""
from __future__ import annotations

import datetime
import sys
import time
from typing import Callable, Optional, TextIO

import tqdm

LOG_INTERVAL_S = 5.0  # Seconds between two log lines when stderr is not a terminal.


def _duration(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(round(seconds))))


class Progress:
  """Counts work done out of a known total; a bar on a terminal, else a line every few seconds.

  Use as a context manager (or call close()): the last line or the bar's end is written then.

  Args:
    total: the amount of work (0 or None: unknown; the lines then have no percentage or ETA).
    label: what the command does ("predict"), the start of every log line.
    unit: what is counted ("images").
    stream: where it goes (default stderr).
    tty: bar or lines; None = the stream's isatty().
    interval: seconds between log lines.
    clock: the time source (monotonic seconds); tests give a fake one.
  """

  def __init__(self, total: Optional[int], label: str, unit: str = "images",
               stream: Optional[TextIO] = None, tty: Optional[bool] = None,
               interval: float = LOG_INTERVAL_S,
               clock: Callable[[], float] = time.monotonic):
    self.total = total or 0
    self.done = 0
    self._label = label
    self._unit = unit
    self._stream = stream or sys.stderr
    self._interval = interval
    self._clock = clock
    self._start = self._last = clock()
    self._written = -1  # The count of the last line written.
    if tty is None:
      tty = bool(getattr(self._stream, "isatty", lambda: False)())
    self._bar = tqdm.tqdm(total=self.total or None, desc=label, unit=f" {unit}",
                          file=self._stream, dynamic_ncols=True) if tty else None

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def update(self, n: int = 1) -> None:
    """Adds n to the work done; writes a line when interval seconds passed since the last."""
    self.done += n
    if self._bar is not None:
      self._bar.update(n)
      return
    now = self._clock()
    if now - self._last >= self._interval:
      self._last = now
      self._write_line(now)

  def line(self, now: Optional[float] = None) -> str:
    """The log line: "predict: 120/1000 images (12%), 24.0 images/s, ETA 0:00:36"."""
    now = self._clock() if now is None else now
    elapsed = max(1e-9, now - self._start)
    rate = self.done / elapsed
    text = f"{self._label}: {self.done}"
    if self.total:
      text += f"/{self.total} {self._unit} ({100 * self.done / self.total:.0f}%)"
    else:
      text += f" {self._unit}"
    text += f", {rate:.1f} {self._unit}/s"
    if self.total and self.done < self.total:
      text += (f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0
               else ", ETA unknown")
    elif self.done:
      text += f", in {_duration(elapsed)}"
    return text

  def _write_line(self, now: float) -> None:
    self._written = self.done
    self._stream.write(self.line(now) + "\n")
    self._stream.flush()

  def close(self) -> None:
    """Ends the bar, or writes the final line (once, unless the last line said it)."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    elif self._stream is not None and self._written != self.done:
      self._write_line(self._clock())
    self._stream = None


def maybe(enabled: bool, total: Optional[int], label: str, unit: str = "images"
          ) -> Optional[Progress]:
  """A Progress on stderr when enabled, else None (callers skip their updates)."""
  return Progress(total, label, unit) if enabled else None
