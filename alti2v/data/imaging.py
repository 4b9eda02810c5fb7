"""Decode, validate, normalise and shrink one image file with Pillow: the only image-file code.

Every input becomes an RGB JPEG whose longer side is at most `max_side`, or a `Rejected`
with a reason code (REASONS: why the bytes are no usable image).
"""
from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Settings shared by the builder and the benchmark's ceiling loop, so both do the same work.
RESAMPLE = Image.Resampling.BICUBIC
JPEG_QUALITY = 90
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit.
BACKGROUND = (255, 255, 255)  # Transparent pixels are composited on white.

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")

# Reason codes of an image file that cannot be used (rejected.jsonl "reason" field). The
# reasons a builder gives about labels are in features.py and in each task's module.
UNREADABLE = "unreadable"
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_MANY_PIXELS = "too_many_pixels"
REASONS = (UNREADABLE, EMPTY_FILE, NOT_AN_IMAGE, TRUNCATED, CORRUPT, TOO_MANY_PIXELS)


class Rejected(Exception):
  """An input that cannot be used, with a reason code and a detail.

  The reason is one of REASONS here, features.REJECTION_REASONS, or a task's own.
  """

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class EncodedImage:
  jpeg: bytes
  height: int
  width: int


def is_image_path(path: str) -> bool:
  return path.lower().endswith(IMAGE_EXTENSIONS)


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
  """(width, height) with the longer side at most max_side, aspect kept, never upscaled."""
  longer = max(width, height)
  if longer <= max_side:
    return width, height
  scale = max_side / longer
  return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(image: Image.Image) -> Image.Image:
  """Any Pillow mode to RGB; transparency composited on BACKGROUND."""
  if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    # convert("RGB") would clip 16-bit values at 255 (an almost white image).
    array = np.asarray(image, dtype=np.int64)
    if image.mode != "I" or array.max(initial=0) > 255:
      array = array >> 8
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
  elif image.mode == "F":
    array = np.asarray(image, dtype=np.float64)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
  has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
      "transparency" in image.info)
  if has_alpha:
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")
  return image.convert("RGB")


def decode_and_resize(data: bytes, max_side: int,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> EncodedImage:
  """Decodes image bytes once and returns the stored form: an RGB JPEG, longer side <= max_side.

  EXIF orientation is applied, the first frame of an animation is used, and
  large JPEGs are decoded at a reduced scale (Pillow's draft) when that still
  leaves at least the target size.

  Args:
    data: the file's bytes.
    max_side: the longer side of the result, in pixels (never upscaled).
    max_pixels: inputs with more pixels than this are rejected unread.

  Returns:
    The re-encoded image and its size.

  Raises:
    Rejected: the bytes are empty, not an image, truncated, corrupt or too large.
  """
  if not data:
    raise Rejected(EMPTY_FILE, "0 bytes")
  if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
    # Pillow refuses twice its own limit before our check runs: a larger max_pixels is
    # honoured by raising Pillow's (never lowered: a smaller one is held by our check).
    Image.MAX_IMAGE_PIXELS = max_pixels
  with warnings.catch_warnings():
    # We check the pixel count ourselves, below, against max_pixels.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    try:
      image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
      raise Rejected(TOO_MANY_PIXELS, str(e)) from None
    except UnidentifiedImageError:
      raise Rejected(NOT_AN_IMAGE, "Pillow cannot identify the format") from None
    except (OSError, SyntaxError, ValueError) as e:
      raise Rejected(CORRUPT, f"{type(e).__name__}: {e}") from None
    width, height = image.size
    if width * height > max_pixels:
      raise Rejected(TOO_MANY_PIXELS,
                     f"{width}x{height} > {max_pixels} pixels")
    if width < 1 or height < 1:
      raise Rejected(CORRUPT, f"size {width}x{height}")
    orientation = image.getexif().get(0x0112, 1)
    # Orientations 5-8 swap width and height.
    if orientation in (5, 6, 7, 8):
      oriented = (height, width)
    else:
      oriented = (width, height)
    final_size = target_size(*oriented, max_side)
    if image.format == "JPEG":
      # Decode at 1/2, 1/4 or 1/8 scale where the result is still >= final size.
      draft_size = final_size if oriented == (width, height) else final_size[::-1]
      image.draft(image.mode, draft_size)
    try:
      image.load()  # First frame of an animation.
      image = ImageOps.exif_transpose(image)
      image = _to_rgb(image)
    except Image.DecompressionBombError as e:
      raise Rejected(TOO_MANY_PIXELS, str(e)) from None
    except OSError as e:
      message = str(e)
      if "truncated" in message or "broken data stream" in message:
        raise Rejected(TRUNCATED, message) from None
      raise Rejected(CORRUPT, f"{type(e).__name__}: {message}") from None
    except (SyntaxError, ValueError, IndexError, EOFError) as e:
      raise Rejected(CORRUPT, f"{type(e).__name__}: {e}") from None
  if image.size != final_size:
    image = image.resize(final_size, RESAMPLE)
  out = io.BytesIO()
  image.save(out, format="JPEG", quality=JPEG_QUALITY)
  return EncodedImage(jpeg=out.getvalue(), height=image.height, width=image.width)
