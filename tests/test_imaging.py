"""alti2v.data.imaging: every input format to an RGB JPEG of bounded size, or a clear rejection."""
import io

import numpy as np
import pytest
from PIL import Image

from alti2v.data import imaging
from tests import fixtures


def decode(data: bytes) -> np.ndarray:
  image = Image.open(io.BytesIO(data))
  assert image.format == "JPEG"
  assert image.mode == "RGB"
  return np.asarray(image).astype(int)


def test_target_size_keeps_aspect_and_never_upscales():
  assert imaging.target_size(1000, 800, 256) == (256, 205)
  assert imaging.target_size(800, 1000, 256) == (205, 256)
  assert imaging.target_size(100, 50, 256) == (100, 50)
  assert imaging.target_size(4000, 10, 256) == (256, 1)


def test_large_jpeg_is_shrunk_to_the_longer_side():
  data = fixtures.make_image_bytes(fixtures.solid((200, 30, 30), (1000, 800)), "JPEG")
  result = imaging.decode_and_resize(data, 256)
  pixels = decode(result.jpeg)
  assert (result.width, result.height) == (256, 205)
  assert pixels.shape == (205, 256, 3)
  assert np.abs(pixels.mean(axis=(0, 1)) - (200, 30, 30)).max() < 4


def test_small_image_is_not_upscaled():
  data = fixtures.make_image_bytes(fixtures.solid((0, 0, 255), (40, 30)), "PNG")
  result = imaging.decode_and_resize(data, 256)
  assert (result.width, result.height) == (40, 30)


def test_exif_orientation_is_applied():
  result = imaging.decode_and_resize(fixtures.exif_rotated_jpeg(), 256)
  pixels = decode(result.jpeg)
  assert (result.width, result.height) == (20, 40)
  # Red was on the left of the stored pixels; rotated 90° clockwise it is on top.
  assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60
  assert pixels[35, 10, 2] > 200 and pixels[35, 10, 0] < 60


def test_exif_rotated_large_jpeg_is_drafted_to_the_right_size():
  array = np.zeros((800, 1000, 3), np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6
  data = fixtures.make_image_bytes(Image.fromarray(array), "JPEG", exif=exif)
  result = imaging.decode_and_resize(data, 256)
  assert (result.width, result.height) == (205, 256)


def test_cmyk_becomes_rgb():
  pixels = decode(imaging.decode_and_resize(fixtures.cmyk_jpeg(), 256).jpeg)
  assert np.abs(pixels.mean(axis=(0, 1)) - (255, 0, 0)).max() < 12


def test_palette_with_transparency_is_composited_on_white():
  pixels = decode(imaging.decode_and_resize(
      fixtures.palette_png_with_transparency(), 256).jpeg)
  assert pixels[8, 4].min() > 240  # transparent → white
  assert np.abs(pixels[8, 28] - (0, 200, 0)).max() < 20


def test_rgba_is_composited_on_white():
  pixels = decode(imaging.decode_and_resize(fixtures.rgba_png(), 256).jpeg)
  assert pixels[8, 4].min() > 240
  assert np.abs(pixels[8, 28] - (0, 0, 255)).max() < 20


def test_16bit_gray_is_scaled_not_clipped():
  pixels = decode(imaging.decode_and_resize(fixtures.png_16bit(), 256).jpeg)
  assert pixels[8, 4].min() > 250   # 65535 → 255
  assert abs(pixels[8, 28].mean() - 128) < 4   # 32768 → 128, not clipped to 255


def test_animated_gif_uses_the_first_frame():
  pixels = decode(imaging.decode_and_resize(fixtures.animated_gif(), 256).jpeg)
  assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


@pytest.mark.parametrize("make, reason", [
    (lambda: b"", imaging.EMPTY_FILE),
    (lambda: b"hello, not an image" * 5, imaging.NOT_AN_IMAGE),
    (fixtures.truncated_jpeg, imaging.TRUNCATED),
])
def test_bad_bytes_are_rejected_with_their_reason(make, reason):
  with pytest.raises(imaging.Rejected) as e:
    imaging.decode_and_resize(make(), 256)
  assert e.value.reason == reason


def test_too_many_pixels_is_rejected_before_decoding():
  data = fixtures.make_image_bytes(fixtures.solid((1, 1, 1), (300, 200)), "PNG")
  with pytest.raises(imaging.Rejected) as e:
    imaging.decode_and_resize(data, 256, max_pixels=300 * 200 - 1)
  assert e.value.reason == imaging.TOO_MANY_PIXELS
  assert imaging.decode_and_resize(data, 256, max_pixels=300 * 200).width == 256


def test_image_extensions_any_case():
  assert imaging.is_image_path("a/B.JPG") and imaging.is_image_path("x.WebP")
  assert not imaging.is_image_path("x.txt") and not imaging.is_image_path("x.jpg.txt")


def test_max_pixels_above_pillows_own_limit_is_honoured(monkeypatch):
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses > 2000 pixels.
  data = fixtures.make_image_bytes(fixtures.solid((1, 2, 3), (50, 50)), "PNG")  # 2500
  assert imaging.decode_and_resize(data, 64, max_pixels=10_000).width == 50
  with pytest.raises(imaging.Rejected, match="too_many_pixels"):
    imaging.decode_and_resize(data, 64, max_pixels=2_000)
