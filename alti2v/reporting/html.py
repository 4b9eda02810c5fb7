"""Writes a report: report.html with its figures as PNG files beside it and its thumbnails inline.

Every text is escaped (tags, captions and paths are user data); a name that is not UTF-8
(surrogate-escaped by Python) is shown with backslash escapes. Files are written atomically.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
import re
from typing import Any, Sequence

import numpy as np
from PIL import Image

from alti2v.reporting import panels
from alti2v.reporting import plots

REPORT_FILE = "report.html"
_FIGURE_NAME = re.compile(r"\d\d_[a-z0-9_]*\.png")  # The names add() gives figures.
_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; }
.note { color: #555; font-size: 90%; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
.cell { width: 140px; font-size: 80%; word-wrap: break-word; }
.cell img, td img { width: 128px; image-rendering: pixelated; }
"""


def escape(value: Any) -> str:
  """str(value) safe in HTML: escaped, and a surrogate-escaped (non-UTF-8) name as \\x.. text."""
  text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
  return html.escape(text)


def data_uri(image: Any) -> str:
  """An image (encoded JPEG/PNG bytes, or a uint8 [H, W, 3] array) as a data: URI."""
  if isinstance(image, (bytes, bytearray)):
    data = bytes(image)
    mime = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
  else:
    out = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(out, format="PNG")
    data, mime = out.getvalue(), "image/png"
  return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def lowest(panel: panels.Ranked) -> list[tuple[str, float]]:
  """The panel's `highlight` lowest (name, value), lowest first, NaN left out."""
  values = np.asarray(panel.values, np.float64)
  order = [i for i in np.argsort(values, kind="stable") if not np.isnan(values[i])]
  return [(panel.names[i], float(values[i])) for i in order[:panel.highlight]]


def _cell(value: Any) -> str:
  if isinstance(value, (int, np.integer)):
    return f'<td class="n">{int(value):,}</td>'
  if isinstance(value, (float, np.floating)):
    return f'<td class="n">{float(value):.4g}</td>'
  return f"<td>{escape(value)}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  head = "".join(f"<th>{escape(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
  return f"<table><tr>{head}</tr>{body}</table>"


@dataclasses.dataclass
class Report:
  """A report being assembled: sections of panels, then write().

  Attributes:
    title: the page title.
    output_dir: where report.html and its PNGs go (created).
  """
  title: str
  output_dir: str
  parts: list[str] = dataclasses.field(default_factory=list)
  pngs: list[str] = dataclasses.field(default_factory=list)

  def section(self, title: str, text: str = "") -> None:
    self.parts.append(f"<h2>{escape(title)}</h2>")
    if text:
      self.parts.append(f"<p>{escape(text)}</p>")

  def paragraph(self, text: str) -> None:
    self.parts.append(f'<p class="note">{escape(text)}</p>')

  def add(self, panel: panels.Panel) -> None:
    """Adds a panel: a figure drawn to NN_title.png beside the page, or an HTML table."""
    if isinstance(panel, panels.FIGURES):
      slug = re.sub(r"[^a-z0-9]+", "_", panel.title.lower()).strip("_")[:40]
      name = f"{len(self.pngs) + 1:02d}_{slug}.png"
      os.makedirs(self.output_dir, exist_ok=True)
      plots.write_png(panel, os.path.join(self.output_dir, name))
      self.pngs.append(name)
      self.parts.append(f'<p><img src="{escape(name)}" alt="{escape(panel.title)}"></p>')
      if isinstance(panel, panels.Matrix):  # The counts as text too.
        self.parts.append(_table(["", *panel.columns], [
            (row, *(int(v) for v in values)) for row, values in zip(panel.rows, panel.values)]))
      if isinstance(panel, panels.Ranked):
        self.paragraph("lowest: " + ", ".join(
            f"{name} ({value:.3f})" for name, value in lowest(panel)))
    elif isinstance(panel, panels.Table):
      self.parts.append(f"<h3>{escape(panel.title)}</h3>" + _table(panel.header, panel.rows))
    elif isinstance(panel, panels.ImageTable):
      rows = "".join(
          f'<tr><td><img src="{data_uri(image)}" alt=""></td>'
          + "".join(f"<td>{escape(t)}</td>" for t in texts) + "</tr>"
          for image, texts in panel.rows)
      head = "".join(f"<th>{escape(c)}</th>" for c in ["image", *panel.columns])
      self.parts.append(f"<h3>{escape(panel.title)}</h3><table><tr>{head}</tr>{rows}</table>")
    else:
      raise TypeError(f"not a panel: {type(panel).__name__}")
    if panel.note:
      self.paragraph(panel.note)

  def image_grid(self, title: str, cells: Sequence[tuple[Any, str]]) -> None:
    """Thumbnails (inline) each with its text below."""
    self.parts.append(f"<h3>{escape(title)}</h3><div class=\"grid\">" + "".join(
        f'<div class="cell"><img src="{data_uri(image)}" alt=""><br>{escape(text)}</div>'
        for image, text in cells) + "</div>")

  def write(self) -> str:
    """Writes report.html (atomically); returns its path."""
    os.makedirs(self.output_dir, exist_ok=True)
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(self.title)}'
            f"</title><style>{_STYLE}</style></head><body><h1>{escape(self.title)}</h1>\n"
            + "\n".join(self.parts) + "\n</body></html>\n")
    path = os.path.join(self.output_dir, REPORT_FILE)
    for name in os.listdir(self.output_dir):  # An earlier report's figures, not this one's.
      if _FIGURE_NAME.fullmatch(name) and name not in self.pngs:
        os.unlink(os.path.join(self.output_dir, name))
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(page)
    os.replace(path + ".tmp", path)
    return path
