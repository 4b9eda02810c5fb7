"""The tagged build on names that are not UTF-8 and tag files that are not text (moved from
tests/test_build_tagged_dataset.py)."""
import json
import os

from apache_beam.metrics.metric import MetricsFilter
import tensorflow_datasets as tfds

from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.tasks import tagger
from tests import fixtures
from tests.test_build_tagged_dataset import build, vocabulary


def _write(path, data):
  with open(path, "wb") as f:
    f.write(data)


def test_names_that_are_not_utf8_are_built_or_rejected_by_name(tmp_path):
  scrape, out = tmp_path / "in", tmp_path / "out"
  tagger.write_corpus(str(scrape), 8, seed=9)
  root = os.fsencode(scrape)
  image = fixtures.make_image_bytes(fixtures.solid((200, 10, 10)), "PNG")
  for name, data in [(b"bad\xff.png", image), (b"bad\xff.txt", b"odd_name"),
                     (b"dup\xfc.png", image), (b"dup\xfc.txt", b"odd_name"),
                     (b"broken\xfe.jpg", b"not an image"), (b"broken\xfe.txt", b"x"),
                     (b"alone\xfd.png", image + b"!")]:
    _write(os.path.join(root, name), data)
  build(scrape, out, "--val_fraction", "0", "--test_fraction", "0", "--num_shards", "1")
  builder = dataset_lib.load_builder(str(out))
  names = builder.info.features[tagger.TAGS].feature.names
  stored = {ex[features_lib.PATH]: {names[i] for i in ex[tagger.TAGS]}
            for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
  # The path feature holds the name's own bytes: os.fsdecode gives a path that opens.
  assert stored[os.path.join(root, b"bad\xff.png")] == {"odd_name"}
  with open(os.fsdecode(os.path.join(root, b"bad\xff.png")), "rb") as f:
    assert f.read() == image
  # rejected.jsonl stays UTF-8: a name's bytes that are not UTF-8 are written as \xNN.
  with open(out / features_lib.REJECTED_FILE, encoding="utf-8") as f:
    rejected = {r["path"]: r for r in map(json.loads, f)}
  prefix = str(scrape) + os.sep
  assert {p: r["reason"] for p, r in rejected.items()} == {
      prefix + "alone\\xfd.png": "no_tag_file", prefix + "broken\\xfe.jpg": "not_an_image",
      prefix + "dup\\xfc.png": "duplicate"}
  assert rejected[prefix + "dup\\xfc.png"]["detail"] == f"duplicate of {prefix}bad\\xff.png"


def test_tag_files_are_decoded_strictly_and_capped_per_image(tmp_path):
  scrape, out = tmp_path / "in", tmp_path / "out"
  tagger.write_corpus(str(scrape), 8, seed=9)
  image = fixtures.make_image_bytes(fixtures.solid((10, 200, 10)), "PNG")
  for name, tags in [("latin1", "café".encode("latin-1")),
                     ("utf16", "red_circle".encode("utf-16-le")),
                     ("wide", "ＷＩＤＥ＿ＴＡＧ".encode("utf-8")),
                     ("many", " ".join(f"spam{i:03d}" for i in range(300)).encode())]:
    _write(scrape / f"{name}.png", image + name.encode())  # Distinct content hashes.
    _write(scrape / f"{name}.txt", tags)
  result = build(scrape, out, "--val_fraction", "0", "--test_fraction", "0",
                 "--num_shards", "1", "--max_tags_per_image", "20")
  with open(out / features_lib.REJECTED_FILE, encoding="utf-8") as f:
    rejected = {os.path.basename(r["path"]): r["reason"] for r in map(json.loads, f)}
  assert rejected == {"latin1.png": "bad_tag_encoding", "utf16.png": "bad_tag_encoding"}
  vocab = vocabulary(out)
  assert "wide_tag" in vocab and not [t for t in vocab if "\x00" in t or "\ufffd" in t]
  assert [t for t in vocab if t.startswith("spam")] == [f"spam{i:03d}" for i in range(20)]
  counters = {c.key.metric.name: c.committed for c in
              result.metrics().query(MetricsFilter().with_namespace("alti2v"))["counters"]}
  assert counters["tags_capped"] == 1
  assert counters["rejected_bad_tag_encoding"] == 2
