"""The stages on names that are not UTF-8 and tag files that are not text (moved from
tests/test_stages.py)."""
import argparse
import codecs
import os

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
import pytest

from alti2v import tasks
from alti2v.data import features as features_lib
from alti2v.data import imaging
from alti2v.tasks import tagger
from beam_jobs import build_tagged_dataset as job
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages import read
from beam_jobs.stages import vocabulary


# Names that are not UTF-8, and tag files that are not text: scraped data has both.

BAD_NAME = os.fsdecode(b"bad\xff")  # Python's surrogate-escaped form of the raw byte.


def test_printable_shows_the_bytes_that_are_not_utf8():
  assert files.printable(BAD_NAME + ".jpg") == "bad\\xff.jpg"
  assert files.printable("dossier/été.jpg") == "dossier/été.jpg"


def test_discover_pairs_names_that_are_not_utf8(tmp_path):
  root = os.fsencode(tmp_path)
  for name in [b"bad\xff.jpg", b"bad\xff.txt", b"orphan\xfe.txt"]:
    with open(os.path.join(root, name), "wb") as f:
      f.write(b"x")
  image, tags, orphan = (os.fsdecode(os.path.join(root, n))
                         for n in [b"bad\xff.jpg", b"bad\xff.txt", b"orphan\xfe.txt"])
  with TestPipeline() as p:
    found = p | read.DiscoverImages(str(tmp_path), ".txt")
    assert_that(found.candidates, equal_to([elements.Candidate(image, tags)]),
                label="candidates")
    assert_that(found[elements.REJECTED] | beam.Map(lambda r: (r["path"], r["reason"])),
                equal_to([(files.printable(orphan), features_lib.NO_IMAGE_FILE)]),
                label="rejected")


def test_rejections_escape_a_name_that_is_not_utf8(tmp_path):
  image = os.path.join(str(tmp_path), BAD_NAME + ".jpg")
  with open(image, "wb") as f:
    f.write(b"not an image")
  decode = read.ReadAndDecode(lambda c: None, 64, 10**6)
  decode.setup()
  (out,) = decode.process(elements.Candidate(image))
  assert out.value == elements.rejection(files.printable(image), "not_an_image",
                                         "Pillow cannot identify the format")
  out.value["path"].encode("utf-8")  # What Beam's coders and rejected.jsonl need.


def _read_tags(tmp_path, data, max_tags=200):
  label = tmp_path / "tags.txt"
  label.write_bytes(data)
  args = argparse.Namespace(max_tags_per_image=max_tags)
  return job.BUILDER.read_label(elements.Candidate(str(tmp_path / "a.jpg"), str(label)),
                                args).names


@pytest.mark.parametrize("data", [
    "red_circle blue".encode("utf-8"), codecs.BOM_UTF8 + "red_circle blue".encode("utf-8"),
    "red_circle blue".encode("utf-16"), codecs.BOM_UTF16_BE + "red_circle blue".encode(
        "utf-16-be"), "ＲＥＤ＿ＣＩＲＣＬＥ　Ｂｌｕｅ".encode("utf-8")])
def test_tag_files_are_utf8_or_carry_a_bom_and_are_nfkc_folded(tmp_path, data):
  assert _read_tags(tmp_path, data) == ("red_circle", "blue")


@pytest.mark.parametrize("data", [
    "café rouge".encode("latin-1"),  # Latin-1: not UTF-8.
    "red_circle blue".encode("utf-16-le"),  # UTF-16 without a BOM: NULs.
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # Binary.
    "red \ufffd blue".encode("utf-8"),  # Already lost in a conversion.
])
def test_tag_files_in_another_encoding_are_rejected(tmp_path, data):
  with pytest.raises(imaging.Rejected) as e:
    _read_tags(tmp_path, data)
  assert e.value.reason == tagger.BAD_TAG_ENCODING == "bad_tag_encoding"
  assert tagger.BAD_TAG_ENCODING in tasks.rejection_reasons()


def test_tags_per_image_are_capped_keeping_the_first(tmp_path):
  data = " ".join(f"tag{i}" for i in range(1000)).encode()
  assert _read_tags(tmp_path, data, max_tags=50) == tuple(f"tag{i}" for i in range(50))
  assert job.parse_tags("Ｒｅｄ，ｂｌｕｅ") == ("red", "blue")
  assert vocabulary.normalize_name(" ＬＯＮＧ　Ｈａｉｒ") == "long_hair"
