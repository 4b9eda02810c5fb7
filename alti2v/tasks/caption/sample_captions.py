"""Sample data of the captioners: images with Japanese captions that name what is drawn, COCO format."""
from __future__ import annotations

import json
import os

from alti2v.data import samples


# Japanese words for what is drawn (kanji, and hiragana for some captions).
_JA_COLORS = {"red": ("赤い", "あかい"), "green": ("緑の", "みどりの"),
              "blue": ("青い", "あおい"), "yellow": ("黄色い", "きいろい")}
_JA_SHAPES = {"circle": ("丸", "まる"), "square": ("四角", "しかく"),
              "triangle": ("三角", "さんかく")}
_JA_BACKGROUNDS = {"plain": "無地", "striped": "縞模様", "dotted": "水玉模様",
                   "checkered": "市松模様"}
_JA_COLOR_NOUNS = {"red": "赤", "green": "緑", "blue": "青", "yellow": "黄色"}


def japanese_captions(sample: samples.SampleImage, index: int) -> list[str]:
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
    sample = samples.draw_sample(index, seed)
    samples.save_image(sample.image, os.path.join(images_dir, name))
    coco["images"].append({"id": index, "file_name": name})
    for caption in japanese_captions(sample, index):
      coco["annotations"].append({"id": len(coco["annotations"]), "image_id": index,
                                  "caption": caption})
  path = os.path.join(out_dir, "captions.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(coco, f, ensure_ascii=False, indent=1)
  return path


def _write_captions_layout(out_dir: str, num_images: int, seed: int) -> str:
  path = write_captions(out_dir, num_images, seed)
  return f"wrote {num_images} images and their captions to {path}"


CAPTIONS = samples.SampleLayout(
    "captions", "images/ and a COCO-format captions.json of Japanese captions (captioner)",
    _write_captions_layout)
