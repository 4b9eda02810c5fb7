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
