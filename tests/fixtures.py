"""Fake data shared by the tests: images in every awkward format, and a scrape with broken files."""
from __future__ import annotations

import io
import os
import shutil

import numpy as np
from PIL import Image

from alti2v.tasks import tagger

write_corpus = tagger.write_corpus  # The sample corpus in the Safebooru layout.


def make_image_bytes(image: Image.Image, fmt: str, **save_args) -> bytes:
  out = io.BytesIO()
  image.save(out, format=fmt, **save_args)
  return out.getvalue()


def solid(color, size=(40, 30), mode="RGB") -> Image.Image:
  return Image.new(mode, size, color)


def exif_rotated_jpeg() -> bytes:
  """A 40x20 (w x h) JPEG, red on its left half, with EXIF orientation 6 (rotate 90° clockwise).

  Displayed upright it is 20x40 with red on the top half.
  """
  array = np.zeros((20, 40, 3), np.uint8)
  array[:, :20] = (255, 0, 0)
  array[:, 20:] = (0, 0, 255)
  image = Image.fromarray(array)
  exif = Image.Exif()
  exif[0x0112] = 6
  return make_image_bytes(image, "JPEG", quality=95, exif=exif)


def cmyk_jpeg() -> bytes:
  return make_image_bytes(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG",
                          quality=95)  # Pure red in CMYK.


def palette_png_with_transparency() -> bytes:
  """Left half transparent (index 0), right half green (index 1)."""
  image = Image.new("P", (32, 16), 0)
  image.putpalette([0, 0, 0, 0, 200, 0] + [0] * (256 * 3 - 6))
  image.paste(1, (16, 0, 32, 16))
  return make_image_bytes(image, "PNG", transparency=0)


def png_16bit() -> bytes:
  """A 16-bit grayscale PNG: left half 65535 (white), right half 32768 (mid grey)."""
  array = np.full((16, 32), 32768, np.uint16)
  array[:, :16] = 65535
  return make_image_bytes(Image.fromarray(array), "PNG")


def animated_gif() -> bytes:
  """Two frames: red first, blue second."""
  frames = [solid((255, 0, 0), (24, 24)).convert("P"),
            solid((0, 0, 255), (24, 24)).convert("P")]
  return make_image_bytes(frames[0], "GIF", save_all=True,
                          append_images=frames[1:], duration=100, loop=0)


def rgba_png() -> bytes:
  """Left half fully transparent, right half opaque blue."""
  array = np.zeros((16, 32, 4), np.uint8)
  array[:, 16:] = (0, 0, 255, 255)
  return make_image_bytes(Image.fromarray(array, "RGBA"), "PNG")


def truncated_jpeg() -> bytes:
  data = make_image_bytes(
      Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3),
                                                        dtype=np.uint8)),
      "JPEG", quality=90)
  return data[: len(data) // 2]


# name → (bytes, its tags or None for "no tag file", the reason it must be rejected or None).
VALID_ODD_FILES = {
    "odd/cmyk.jpg": (cmyk_jpeg, "cmyk_image"),
    "odd/palette.PNG": (palette_png_with_transparency, "palette_image"),
    "odd/gray16.png": (png_16bit, "gray16_image"),
    "odd/rotated.jpeg": (exif_rotated_jpeg, "rotated_image"),
    "odd/animated.gif": (animated_gif, "animated_image"),
    "odd/alpha.webp": (lambda: make_image_bytes(Image.open(io.BytesIO(rgba_png())),
                                                "WEBP", lossless=True), "webp_image"),
    "odd/plain.BMP": (lambda: make_image_bytes(solid((10, 200, 10)), "BMP"), "bmp_image"),
}
BROKEN_FILES = {
    "broken/truncated.jpg": (truncated_jpeg, "red_circle", "truncated"),
    "broken/empty.jpg": (lambda: b"", "red_circle", "empty_file"),
    "broken/text.jpg": (lambda: b"this is not an image\n" * 10, "red_circle", "not_an_image"),
    "broken/untagged.jpg": (lambda: make_image_bytes(solid((1, 2, 3)), "JPEG"), None,
                            "no_tag_file"),
    "broken/empty_tags.jpg": (lambda: make_image_bytes(solid((4, 5, 6)), "JPEG"), " , \n",
                              "no_tags"),
    "broken/huge.png": (lambda: make_image_bytes(solid((9, 9, 9), (3000, 2000)), "PNG"),
                        "red_circle", "too_many_pixels"),
}
MAX_PIXELS = 5_000_000  # The build in the tests runs with this --max_pixels (huge.png: 6M).


def write_scrape(root: str, num_images: int = 60, seed: int = 0) -> dict[str, tuple]:
  """Sample corpus + every odd valid format + every broken case + a duplicate.

  Returns:
    expected: path → ("ok", tags) for every image that must be in the dataset,
    or ("rejected", reason) for every input that must be in rejected.jsonl.
  """
  expected: dict[str, tuple] = {}
  for path in write_corpus(root, num_images, seed):
    tags = open(os.path.splitext(path)[0] + ".txt", encoding="utf-8").read()
    expected[path] = ("ok", tags)
  for name, (make, tag) in VALID_ODD_FILES.items():
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(make())
    # Every odd image also carries "circle", a tag the sample corpus trains on.
    with open(os.path.splitext(path)[0] + ".txt", "w", encoding="utf-8") as f:
      f.write(f"{tag} circle")
    expected[path] = ("ok", f"{tag} circle")
  for name, (make, tags, reason) in BROKEN_FILES.items():
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(make())
    if tags is not None:
      with open(os.path.splitext(path)[0] + ".txt", "w", encoding="utf-8") as f:
        f.write(tags)
    expected[path] = ("rejected", reason)
  # An exact copy of a corpus image: the first path in sort order is kept.
  original = sorted(p for p, v in expected.items() if v[0] == "ok")[0]
  copy = os.path.join(root, "zz_copies", "copy_of_first.jpg" if original.endswith(
      ".jpg") else "copy_of_first.png")
  os.makedirs(os.path.dirname(copy), exist_ok=True)
  shutil.copyfile(original, copy)
  with open(os.path.join(root, "zz_copies", os.path.basename(
      os.path.splitext(copy)[0]) + ".txt"), "w", encoding="utf-8") as f:
    f.write("other_tag")
  expected[copy] = ("rejected", "duplicate")
  # A stray tag file with no image, and a file that is neither (ignored).
  with open(os.path.join(root, "odd", "orphan.txt"), "w", encoding="utf-8") as f:
    f.write("red_circle")
  expected[os.path.join(root, "odd", "orphan.txt")] = ("rejected", "no_image_file")
  with open(os.path.join(root, "odd", "notes.json"), "w", encoding="utf-8") as f:
    f.write("{}")
  return expected
