"""The deterministic sample corpus: images of coloured shapes on patterned backgrounds.

Owns the drawing (what is drawn is each image's ground truth) and the sample layouts that
`python -m alti2v.sample_data OUT --layout NAME` writes; each task adds the layouts of its
own data (alti2v/tasks/), the scraped-folder layout ("flat": images only) is here.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("plain", "striped", "dotted", "checkered")
BACKGROUND_COLORS = ((245, 245, 240), (200, 200, 205), (60, 60, 70))
COUNT_TAGS = {1: "one_shape", 2: "two_shapes", 3: "three_shapes"}


@dataclasses.dataclass(frozen=True)
class SampleImage:
  """What was drawn: the ground truth behind an image's tags and captions.

  Attributes:
    image: the drawing.
    tags: its tags, sorted.
    pattern: the background pattern (a BACKGROUNDS name).
    shapes: (colour, shape) of each shape, left to right.
  """
  image: Image.Image
  tags: tuple[str, ...]
  pattern: str = "plain"
  shapes: tuple[tuple[str, str], ...] = ()


def _draw_background(draw: ImageDraw.ImageDraw, size: tuple[int, int],
                     pattern: str, rng: np.random.Generator) -> None:
  width, height = size
  base = BACKGROUND_COLORS[rng.integers(len(BACKGROUND_COLORS))]
  # Strong contrast, lighter on dark backgrounds, darker on light ones.
  ink = tuple(c - 90 if c > 127 else c + 90 for c in base)
  draw.rectangle([0, 0, width, height], fill=base)
  # Bold patterns (about 1/8 of the short side) survive downscaling to 64 px.
  step = max(8, int(min(width, height) * rng.uniform(0.10, 0.14)))
  if pattern == "striped":
    for x in range(-height, width, step * 2):
      draw.polygon([(x, 0), (x + step, 0), (x + step + height, height),
                    (x + height, height)], fill=ink)
  elif pattern == "dotted":
    for y in range(step // 2, height, step):
      for x in range(step // 2, width, step):
        r = step // 4
        draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
  elif pattern == "checkered":
    for y in range(0, height, step):
      for x in range(0, width, step):
        if (x // step + y // step) % 2:
          draw.rectangle([x, y, x + step - 1, y + step - 1], fill=ink)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int],
                color: tuple[int, int, int]) -> None:
  x0, y0, x1, y1 = box
  outline = (0, 0, 0)
  if shape == "circle":
    draw.ellipse(box, fill=color, outline=outline, width=2)
  elif shape == "square":
    draw.rectangle(box, fill=color, outline=outline, width=2)
  else:
    draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=color,
                 outline=outline)


def draw_sample(index: int, seed: int) -> SampleImage:
  """Draws image `index` of the corpus for `seed`; the same arguments always give the same image."""
  rng = np.random.default_rng([seed, index])
  width, height = (int(v) for v in rng.integers(160, 321, size=2))
  pattern = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
  image = Image.new("RGB", (width, height))
  draw = ImageDraw.Draw(image)
  _draw_background(draw, (width, height), pattern, rng)

  count = int(rng.integers(1, 4))
  # One shape per column so that shapes never hide each other.
  column = width / count
  tags = {f"{pattern}_background", COUNT_TAGS[count]}
  shapes = []
  for i in range(count):
    shape = SHAPES[rng.integers(len(SHAPES))]
    color_name = list(COLORS)[rng.integers(len(COLORS))]
    side = int(min(column, height) * rng.uniform(0.55, 0.85))
    x0 = int(i * column + rng.integers(0, max(1, int(column) - side)))
    y0 = int(rng.integers(0, max(1, height - side)))
    _draw_shape(draw, shape, (x0, y0, x0 + side, y0 + side), COLORS[color_name])
    tags.update({shape, f"{color_name}_{shape}", color_name})
    shapes.append((color_name, shape))
  return SampleImage(image=image, tags=tuple(sorted(tags)), pattern=pattern,
                     shapes=tuple(shapes))


def save_image(image: Image.Image, path: str) -> None:
  """PNG when path ends in .png, else JPEG (quality 92), as a scrape would hold them."""
  if path.endswith(".png"):
    image.save(path, format="PNG")
  else:
    image.save(path, format="JPEG", quality=92)


def image_extension(index: int) -> str:
  """Mostly JPEG like a scrape; every seventh a PNG."""
  return ".png" if index % 7 == 3 else ".jpg"


def write_flat(out_dir: str, num_images: int, seed: int = 0) -> list[str]:
  """A scraped folder to screen: images only, no tags, one folder."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for index in range(num_images):
    path = os.path.join(out_dir, f"scraped_{index:06d}{image_extension(index)}")
    save_image(draw_sample(index, seed).image, path)
    paths.append(path)
  return paths


@dataclasses.dataclass(frozen=True)
class SampleLayout:
  """One layout `python -m alti2v.sample_data OUT --layout NAME` can write.

  Attributes:
    name: the --layout value.
    help: what it writes, for --help.
    write: (out_dir, num_images, seed) → the line the command prints; the same
      arguments give the same files.
  """
  name: str
  help: str
  write: Callable[[str, int, int], str]


def _write_flat_layout(out_dir: str, num_images: int, seed: int) -> str:
  return f"wrote {len(write_flat(out_dir, num_images, seed))} images to {out_dir}"


FLAT = SampleLayout("flat", "images only (a scraped folder to screen or label)",
                    _write_flat_layout)
SHARED_LAYOUTS = (FLAT,)  # Each task adds its own (Task.sample_layouts).
