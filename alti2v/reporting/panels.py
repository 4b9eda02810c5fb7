"""The figures a report shows, as plain data: what a task gives for its run report (Task.report_panels)
and what the dataset report computes; plots.py and html.py draw them.

No plotting here, so that a task can describe its figures without importing matplotlib.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence, Union

import numpy as np

from alti2v import metrics


@dataclasses.dataclass(frozen=True)
class Ranked:
  """Values per name, drawn sorted (ascending), the first `highlight` named.

  Attributes:
    title: the figure's title.
    names: one name per value.
    values: e.g. AP per tag (NaN values are left out).
    xlabel: what a value is.
    highlight: how many of the lowest values are named in the note.
    note: a sentence under the figure.
  """
  title: str
  names: Sequence[str]
  values: np.ndarray
  xlabel: str
  highlight: int = 10
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Curves:
  """Lines: series = [(label, x, y)], e.g. PR curves; marks = {label: x} and
  level_marks = {label: y} as vertical and horizontal lines."""
  title: str
  xlabel: str
  ylabel: str
  series: Sequence[tuple[str, np.ndarray, np.ndarray]]
  marks: dict[str, float] = dataclasses.field(default_factory=dict)
  level_marks: dict[str, float] = dataclasses.field(default_factory=dict)
  log_x: bool = False
  log_y: bool = False
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Histogram:
  """Overlaid histograms: series = {label: values}, each value counted weights[label] times
  when given (a histogram from counts); marks = {label: x} as vertical lines."""
  title: str
  xlabel: str
  series: dict[str, np.ndarray]
  weights: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  marks: dict[str, float] = dataclasses.field(default_factory=dict)
  bins: Union[int, Sequence[float]] = 20
  log_x: bool = False
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Bars:
  """Horizontal bar charts side by side: groups = {group: [(name, value)]}, e.g. the top
  tags of each split."""
  title: str
  xlabel: str
  groups: dict[str, Sequence[tuple[str, float]]]
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Scatter:
  """Points (x, y) with the y = x diagonal, e.g. student against teacher scores."""
  title: str
  xlabel: str
  ylabel: str
  x: np.ndarray
  y: np.ndarray
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Matrix:
  """A table of counts drawn as a heat map, e.g. a confusion matrix."""
  title: str
  rows: Sequence[str]
  columns: Sequence[str]
  values: np.ndarray
  note: str = ""


@dataclasses.dataclass(frozen=True)
class ImageTable:
  """Images with text beside each (HTML, not matplotlib: any script, escaped).

  Attributes:
    columns: the headers of the text columns.
    rows: (image, texts): the image as encoded JPEG/PNG bytes or a uint8 [H, W, 3] array.
  """
  title: str
  columns: Sequence[str]
  rows: Sequence[tuple[Any, Sequence[str]]]
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  """A plain text table."""
  title: str
  header: Sequence[str]
  rows: Sequence[Sequence[Any]]
  note: str = ""


Panel = Union[Ranked, Curves, Histogram, Bars, Scatter, Matrix, ImageTable, Table]
FIGURES = (Ranked, Curves, Histogram, Bars, Scatter, Matrix)  # Drawn as PNGs by plots.py.


def pr_curves(labels: np.ndarray, scores: np.ndarray, names: Sequence[str],
              columns: Sequence[int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """[("name (positives)", recall, precision)] of the given columns that have a positive."""
  series = []
  for j in columns:
    if labels[:, j].any():
      _, precision, recall, _ = metrics.threshold_curve(labels[:, j], scores[:, j])
      series.append((f"{names[j]} ({int(labels[:, j].sum())})", np.r_[0.0, recall],
                     np.r_[precision[0], precision]))
  return series
