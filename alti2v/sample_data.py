"""Draws a deterministic sample corpus in the Safebooru layout (`N.jpg` beside `N.txt`).

Each image shows 1-3 coloured shapes on a patterned background; its tags say what is drawn
(`red_circle`, `circle`, `two_shapes`, `striped_background`), a signal a small model learns fast.

  python -m alti2v.sample_data OUT_DIR --num_images 600 --seed 0
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np
from absl import app, flags
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


def _tag_text(tags: Sequence[str], style: int) -> str:
  """The tag file in one of the layouts found in the wild."""
  if style == 0:
    return " ".join(tags) + "\n"
  if style == 1:  # Comma separated, human spelling: "Red Circle, two shapes".
    return ", ".join(t.replace("_", " ").title() if i % 2 else t
                     for i, t in enumerate(tags))
  return "\n".join(tags) + "\n"


def write_corpus(out_dir: str, num_images: int, seed: int = 0) -> list[str]:
  """Writes `num_images` images with their tag files into out_dir (a few per sub-folder).

  Args:
    out_dir: created if missing.
    num_images: how many images.
    seed: the corpus for a seed is the same on every machine.

  Returns:
    The image paths written, in index order.
  """
  paths = []
  for index in range(num_images):
    sample = draw_sample(index, seed)
    folder = os.path.join(out_dir, f"{index // 1000:04d}")
    os.makedirs(folder, exist_ok=True)
    # Mostly JPEG like a scrape; every seventh a PNG.
    extension = ".png" if index % 7 == 3 else ".jpg"
    path = os.path.join(folder, f"{index:06d}{extension}")
    _save(sample.image, path)
    with open(os.path.join(folder, f"{index:06d}.txt"), "w", encoding="utf-8") as f:
      f.write(_tag_text(sample.tags, index % 3))
    paths.append(path)
  return paths


MOTIF = "red_circle"  # What the screening filter's positives show.


def _save(image: Image.Image, path: str) -> None:
  if path.endswith(".png"):
    image.save(path, format="PNG")
  else:
    image.save(path, format="JPEG", quality=92)


def write_folders(out_dir: str, num_images: int, seed: int = 0,
                  motif: str = MOTIF) -> dict[str, list[str]]:
  """Hand-sorted layout for the screening filter: positive/ shows the motif, negative/ not.

  Half of the images in each folder; the same arguments give the same files.

  Returns:
    {"positive": paths, "negative": paths}.
  """
  want = {"positive": (num_images + 1) // 2, "negative": num_images // 2}
  paths: dict[str, list[str]] = {"positive": [], "negative": []}
  for name in paths:
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
  index = 0
  while any(len(paths[k]) < want[k] for k in want):
    sample = draw_sample(index, seed)
    folder = "positive" if motif in sample.tags else "negative"
    if len(paths[folder]) < want[folder]:
      path = os.path.join(out_dir, folder,
                          f"{index:06d}{'.png' if index % 7 == 3 else '.jpg'}")
      _save(sample.image, path)
      paths[folder].append(path)
    index += 1
  return paths


def write_flat(out_dir: str, num_images: int, seed: int = 0) -> list[str]:
  """A scraped folder to screen: images only, no tags, one folder."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for index in range(num_images):
    path = os.path.join(out_dir, f"scraped_{index:06d}{'.png' if index % 7 == 3 else '.jpg'}")
    _save(draw_sample(index, seed).image, path)
    paths.append(path)
  return paths


# Cloud Vision-style labels of what is drawn: (description, mid).
_VISION_LABELS = {
    "red": ("Red", "/m/06fvc"), "green": ("Green", "/m/038hg"), "blue": ("Blue", "/m/01g5v"),
    "yellow": ("Yellow", "/m/088fh"), "circle": ("Circle", "/m/01jddz"),
    "square": ("Square", "/m/01j61q"), "triangle": ("Triangle", "/m/0dlpqg"),
}


def vision_response(tags: Sequence[str], rng: np.random.Generator) -> dict:
  """An AnnotateImageResponse for a drawn image: scores from its content, with noise."""
  labels = [("Illustration", "/m/01kr8f", rng.uniform(0.80, 0.95)),
            ("Shape", "/m/02csf", rng.uniform(0.70, 0.92))]
  for tag in tags:
    if tag in _VISION_LABELS:
      description, mid = _VISION_LABELS[tag]
      labels.append((description, mid, rng.uniform(0.62, 0.97)))
  if "plain_background" not in tags:
    labels.append(("Pattern", "/m/0hcr", rng.uniform(0.55, 0.85)))
  if rng.random() < 0.3:  # Labels a teacher gives that the drawing does not explain.
    labels.append(("Art", "/m/0jjw", rng.uniform(0.5, 0.7)))
  labels.sort(key=lambda label: -label[2])
  return {"labelAnnotations": [
      {"mid": mid, "description": d, "score": round(float(s), 6),
       "topicality": round(float(s), 6)} for d, mid, s in labels]}


def write_vision(out_dir: str, num_images: int, seed: int = 0) -> list[str]:
  """Images in out_dir/images and their Vision JSON (as vision_labels writes it) in out_dir/vision.

  Returns:
    The image paths.
  """
  images, vision = os.path.join(out_dir, "images"), os.path.join(out_dir, "vision")
  os.makedirs(images, exist_ok=True)
  os.makedirs(vision, exist_ok=True)
  paths = []
  for index in range(num_images):
    sample = draw_sample(index, seed)
    path = os.path.join(images, f"{index:06d}.jpg")
    _save(sample.image, path)
    response = vision_response(sample.tags, np.random.default_rng([seed, index, 1]))
    with open(os.path.join(vision, f"{index:06d}.jpg.json"), "w", encoding="utf-8") as f:
      json.dump(response, f)
    paths.append(path)
  return paths


# Japanese words for what is drawn (kanji, and hiragana for some captions).
_JA_COLORS = {"red": ("赤い", "あかい"), "green": ("緑の", "みどりの"),
              "blue": ("青い", "あおい"), "yellow": ("黄色い", "きいろい")}
_JA_SHAPES = {"circle": ("丸", "まる"), "square": ("四角", "しかく"),
              "triangle": ("三角", "さんかく")}
_JA_BACKGROUNDS = {"plain": "無地", "striped": "縞模様", "dotted": "水玉模様",
                   "checkered": "市松模様"}
_JA_COLOR_NOUNS = {"red": "赤", "green": "緑", "blue": "青", "yellow": "黄色"}


def japanese_captions(sample: SampleImage, index: int) -> list[str]:
  """Japanese phrasings of what `sample` shows, the canonical one first.

  Every phrasing is mostly words specific to the image (each shape's colour and kind, left
  to right; the background; the kinds and the colours): no phrasing is shared by every
  image, and none has a long generic part, so no constant caption scores well (the best
  constant caption's CER on the test split is about 0.4). Every fifth image also gets a
  hiragana phrasing. The canonical caption (the first) is what a one-caption model learns.
  """
  kanji = "と".join(_JA_COLORS[c][0] + _JA_SHAPES[s][0] for c, s in sample.shapes)
  kinds = "と".join(dict.fromkeys(_JA_SHAPES[s][0] for _, s in sample.shapes))
  colours = "と".join(dict.fromkeys(_JA_COLOR_NOUNS[c] for c, _ in sample.shapes))
  captions = [kanji,
              f"{_JA_BACKGROUNDS[sample.pattern]}の背景に{kanji}",
              f"{kinds}、{colours}"]
  if index % 5 == 0:
    captions.append(" と ".join(f"{_JA_COLORS[c][1]} {_JA_SHAPES[s][1]}"
                                for c, s in sample.shapes))
  return captions


def write_captions(out_dir: str, num_images: int, seed: int = 0) -> str:
  """Images in out_dir/images and a COCO-format out_dir/captions.json of Japanese captions.

  Returns:
    The path of captions.json.
  """
  images_dir = os.path.join(out_dir, "images")
  os.makedirs(images_dir, exist_ok=True)
  coco: dict = {"images": [], "annotations": []}
  for index in range(num_images):
    name = f"{index:06d}.jpg"
    sample = draw_sample(index, seed)
    _save(sample.image, os.path.join(images_dir, name))
    coco["images"].append({"id": index, "file_name": name})
    for caption in japanese_captions(sample, index):
      coco["annotations"].append({"id": len(coco["annotations"]), "image_id": index,
                                  "caption": caption})
  path = os.path.join(out_dir, "captions.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(coco, f, ensure_ascii=False, indent=1)
  return path


FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 600, "How many images to draw.")
flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same corpus.")
flags.DEFINE_enum("layout", "safebooru", ["safebooru", "folders", "flat", "vision",
                                          "captions"],
                  "safebooru: N.jpg beside N.txt (tagger); folders: positive/ (images "
                  f"with a {MOTIF}) and negative/ (screening filter); flat: images only "
                  "(a scraped folder to screen); vision: images/ and their Cloud Vision "
                  "JSON in vision/ (distillation); captions: images/ and a COCO-format "
                  "captions.json of Japanese captions (captioner).")


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError("usage: python -m alti2v.sample_data OUT_DIR "
                         "[--num_images N] [--seed S] [--layout safebooru|folders|flat|vision|captions]")
  if FLAGS.layout == "folders":
    paths = write_folders(argv[1], FLAGS.num_images, FLAGS.seed)
    print(f"wrote {len(paths['positive'])} positive ({MOTIF}) and "
          f"{len(paths['negative'])} negative images under {argv[1]}")
  elif FLAGS.layout == "captions":
    path = write_captions(argv[1], FLAGS.num_images, FLAGS.seed)
    print(f"wrote {FLAGS.num_images} images and their captions to {path}")
  elif FLAGS.layout == "vision":
    paths = write_vision(argv[1], FLAGS.num_images, FLAGS.seed)
    print(f"wrote {len(paths)} images with Vision JSON under {argv[1]}")
  elif FLAGS.layout == "flat":
    print(f"wrote {len(write_flat(argv[1], FLAGS.num_images, FLAGS.seed))} images "
          f"to {argv[1]}")
  else:
    paths = write_corpus(argv[1], FLAGS.num_images, FLAGS.seed)
    print(f"wrote {len(paths)} images with tag files under {argv[1]}")


if __name__ == "__main__":
  app.run(main)
