"""Draws a report's figure panels (panels.FIGURES) as PNG files with matplotlib.

Figures are made without pyplot (no display, no global figure state: Agg through savefig).
Text is drawn as given: "$" is escaped, so a tag like "$_$" is not read as TeX math.
"""
from __future__ import annotations

import os

import matplotlib
from matplotlib import ticker
from matplotlib.figure import Figure
import numpy as np

from alti2v.reporting import panels

DPI = 80
_STYLE = {"font.size": 9, "axes.titlesize": 10}
_LONG_NAME = 32  # Characters of a name drawn on an axis; longer ones are cut.


def _short(name: str) -> str:
  """A name as drawn: cut to _LONG_NAME characters, "$" escaped (no math), never non-UTF-8."""
  name = str(name).encode("utf-8", "backslashreplace").decode("utf-8")
  name = name if len(name) <= _LONG_NAME else name[:_LONG_NAME - 1] + "…"
  return name.replace("$", r"\$")


def _ranked(ax, p: panels.Ranked) -> None:
  values = np.asarray(p.values, np.float64)
  keep = ~np.isnan(values)
  names = [n for n, k in zip(p.names, keep) if k]
  values = values[keep]
  order = np.argsort(values, kind="stable")
  if len(values) <= 30:  # Few enough to name every one.
    ax.barh(np.arange(len(order)), values[order], color="tab:blue")
    ax.set_yticks(np.arange(len(order)), [_short(names[i]) for i in order])
    ax.invert_yaxis()
    ax.set_xlabel(p.xlabel)
  else:
    ax.plot(np.arange(1, len(order) + 1), values[order], color="tab:blue")
    for rank, i in enumerate(order[:p.highlight]):
      ax.annotate(_short(names[i]), (rank + 1, values[i]), fontsize=7,
                  xytext=(6, 4 + 9 * rank), textcoords="offset points",
                  arrowprops={"arrowstyle": "-", "lw": 0.5})
    ax.set_xlabel("rank (weakest first)")
    ax.set_ylabel(p.xlabel)


def _curves(ax, p: panels.Curves) -> None:
  for label, x, y in p.series:
    ax.plot(x, y, label=_short(label))
  for label, x in p.marks.items():
    ax.axvline(x, color="tab:red", ls="--", lw=1, label=_short(label))
  for label, y in p.level_marks.items():
    ax.axhline(y, color="tab:gray", ls=":", lw=1, label=_short(label))
  if p.log_x:
    ax.set_xscale("log")
  if p.log_y:
    ax.set_yscale("log")
  ax.set_xlabel(p.xlabel)
  ax.set_ylabel(p.ylabel)
  if p.series or p.marks or p.level_marks:
    ax.legend(fontsize=7)


def _histogram(ax, p: panels.Histogram) -> None:
  for label, values in p.series.items():
    ax.hist(np.asarray(values, np.float64), bins=p.bins, weights=p.weights.get(label),
            alpha=0.6 if len(p.series) > 1 else 0.9, label=_short(label))
  for label, x in p.marks.items():
    ax.axvline(x, color="tab:red", ls="--", lw=1.2, label=_short(label))
  if p.log_x:  # Ratios: plain numbers at powers of 2, not 10^x labels crowding each other.
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel(p.xlabel)
  ax.set_ylabel("count")
  if len(p.series) > 1 or p.marks:
    ax.legend(fontsize=7)


def _scatter(ax, p: panels.Scatter) -> None:
  x, y = np.asarray(p.x), np.asarray(p.y)
  ax.scatter(x, y, s=4, alpha=0.3 if len(x) > 2000 else 0.6)
  low = float(min(x.min(initial=0), y.min(initial=0)))
  high = float(max(x.max(initial=1), y.max(initial=1)))
  ax.plot([low, high], [low, high], color="tab:gray", ls="--", lw=1)
  ax.set_xlabel(p.xlabel)
  ax.set_ylabel(p.ylabel)


def _matrix(ax, p: panels.Matrix) -> None:
  values = np.asarray(p.values)
  ax.imshow(values, cmap="Blues")
  for (i, j), v in np.ndenumerate(values):
    ax.text(j, i, str(v), ha="center", va="center",
            color="white" if v > values.max() / 2 else "black", fontsize=12)
  ax.set_xticks(range(len(p.columns)), [_short(c) for c in p.columns])
  ax.set_yticks(range(len(p.rows)), [_short(r) for r in p.rows])


def write_png(panel: panels.Panel, path: str) -> str:
  """Draws one figure panel to path (a PNG, written atomically); returns path.

  Raises:
    TypeError: the panel is not a figure (a table: html.py writes it).
  """
  with matplotlib.rc_context(_STYLE):
    if isinstance(panel, panels.Bars):
      fig = Figure(figsize=(3.2 * max(1, len(panel.groups)), 3.6))
      axes = fig.subplots(1, max(1, len(panel.groups)), squeeze=False)
      for ax, (group, bars) in zip(axes[0], panel.groups.items()):
        ax.barh(np.arange(len(bars)), [v for _, v in bars], color="tab:blue")
        ax.set_yticks(np.arange(len(bars)), [_short(n) for n, _ in bars])
        ax.invert_yaxis()
        ax.set_title(_short(group))
        ax.set_xlabel(panel.xlabel)
    else:
      draw = {panels.Ranked: _ranked, panels.Curves: _curves, panels.Histogram: _histogram,
              panels.Scatter: _scatter, panels.Matrix: _matrix}.get(type(panel))
      if draw is None:
        raise TypeError(f"{type(panel).__name__} is not a figure")
      height = 3.6
      if isinstance(panel, panels.Ranked) and len(panel.values) <= 30:  # A row per name.
        height = max(height, 0.16 * len(panel.values) + 1.2)
      fig = Figure(figsize=(4.8, 3.2) if isinstance(panel, panels.Matrix) else (6.4, height))
      ax = fig.subplots()
      draw(ax, panel)
    fig.suptitle(panel.title.replace("$", r"\$"))
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=DPI)
  os.replace(tmp, path)
  return path
