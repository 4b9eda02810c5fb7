"""The caption builder and the Vision job take file names that are not UTF-8."""
import json
import os

import pytest

from alti2v.data import features as features_lib
from alti2v.data import samples
from beam_jobs import build_caption_dataset

LOCAL = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
BAD = os.fsdecode(b"bad\xff")  # A Latin-1 name: "bad\udcff" to Python.


def test_a_name_that_is_not_utf8_joins_its_captions(tmp_path):
  pytest.importorskip("fugashi")
  images = tmp_path / "images"
  images.mkdir()
  names = ["ok.jpg", BAD + ".jpg", "lonely.jpg"]
  for i, name in enumerate(names):
    samples.draw_sample(i, 2).image.save(os.path.join(images, name), format="JPEG")
  # COCO JSON names a Latin-1 file with the \\udcff escape that json.loads gives back.
  coco = {"images": [{"id": 0, "file_name": "ok.jpg"}, {"id": 1, "file_name": BAD + ".jpg"},
                     {"id": 2, "file_name": BAD + "_gone.jpg"}],
          "annotations": [{"id": 0, "image_id": 0, "caption": "赤い丸"},
                          {"id": 1, "image_id": 1, "caption": "青い四角"},
                          {"id": 2, "image_id": 2, "caption": "丸"}]}
  coco_path = tmp_path / "captions.json"
  coco_path.write_text(json.dumps(coco), encoding="utf-8")
  out = tmp_path / "out"
  build_caption_dataset.run(["--input_dir", str(images), "--captions_json", str(coco_path),
                             "--output_dir", str(out), "--image_size", "32",
                             "--val_fraction", "0", "--test_fraction", "0", *LOCAL])
  with open(out / features_lib.METADATA_FILE, encoding="utf-8") as f:
    assert json.load(f)["num_examples"] == {"train": 2}
  with open(out / features_lib.REJECTED_FILE, encoding="utf-8") as f:
    rejected = [json.loads(line) for line in f]
  assert [(os.path.basename(r["path"]), r["reason"]) for r in rejected] == [
      ("bad\\xff_gone.jpg", "no_image_file"), ("lonely.jpg", "no_label_file")]


def test_the_vision_job_labels_a_name_that_is_not_utf8_and_escapes_its_rejections(
    tmp_path, monkeypatch):
  from beam_jobs import vision_labels
  from tests import fixtures
  from tests.fake_vision_server import FakeVisionServer
  key = "test-key-0d1e"
  monkeypatch.setenv("VISION_API_KEY", key)
  images, out = tmp_path / "images", tmp_path / "json"
  images.mkdir()
  good = os.path.join(images, BAD + ".jpg")
  samples.draw_sample(1, 2).image.save(good, format="JPEG")
  with open(os.path.join(images, os.fsdecode(b"broken\xfe.jpg")), "wb") as f:
    f.write(fixtures.truncated_jpeg())
  with FakeVisionServer(key) as server:
    vision_labels.run(["--input_dir", str(images), "--output_dir", str(out),
                       "--endpoint", server.url, *LOCAL])
  with open(vision_labels.json_path(good, str(images), str(out)), encoding="utf-8") as f:
    assert json.load(f)["labelAnnotations"]
  data = (out / "rejected.jsonl").read_bytes()
  rejected = [json.loads(line) for line in data.decode("utf-8").splitlines()]
  assert [(os.path.basename(r["path"]), r["reason"]) for r in rejected] == [
      ("broken\\xfe.jpg", "truncated")]
