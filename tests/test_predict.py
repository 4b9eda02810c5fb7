"""Tagging files (alti2v.predict): the training road, JSON lines, unreadable files reported."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import image_files
from alti2v.data import input_pipeline
from alti2v.tasks import tagger as tagger_lib
from alti2v.training import run_dir
from tests import fixtures


@pytest.fixture(scope="module")
def files(tiny_dataset, tmp_path_factory):
  images, _ = tiny_dataset
  root = tmp_path_factory.mktemp("to_tag")
  sub = root / "sub"
  sub.mkdir()
  shutil.copy(os.path.join(images, "0000", "000000.jpg"), root / "a.jpg")
  (sub / "b.png").write_bytes(fixtures.rgba_png())
  (sub / "notes.txt").write_text("not an image, and ignored in a directory")
  (root / "broken.jpg").write_bytes(fixtures.truncated_jpeg())
  return root


def test_json_lines_for_files_dirs_and_globs(trained_tagger, files):
  _, model_dir = trained_tagger
  tagger = run_dir.load(model_dir)
  paths = image_files.expand_paths([str(files / "a.jpg"), str(files / "sub"),
                                str(files / "*.jpg")])
  assert paths == [str(files / "a.jpg"), str(files / "sub" / "b.png"),
                   str(files / "a.jpg"), str(files / "broken.jpg")]
  lines = list(tagger_lib.tag_lines(tagger, paths, top_k=3, threshold=0.0, vector=True,
                                   grouped=False))
  assert [line["path"] for line in lines] == paths
  assert lines[3] == {"path": str(files / "broken.jpg"),
                      "error": lines[3]["error"]} and lines[3]["error"].startswith("truncated")
  for line in lines[:3]:
    scores = [t["score"] for t in line["tags"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert len(line["vector"]) == len(tagger.vocabulary)
    assert line["tags"][0]["tag"] == tagger.vocabulary[int(np.argmax(line["vector"]))]
    json.dumps(line)
  with pytest.raises(FileNotFoundError):
    image_files.expand_paths([str(files / "missing*.jpg")])


def test_calibrated_thresholds_are_applied(trained_tagger, files):
  _, model_dir = trained_tagger
  tagger = run_dir.load(model_dir)
  tagger.thresholds = np.full(len(tagger.vocabulary), 1.01)  # nothing can pass
  (line,) = tagger_lib.tag_lines(tagger, [str(files / "a.jpg")])
  assert line["tags"] == {"general": [], "character": [], "copyright": [], "meta": []}


def test_prediction_follows_the_training_road(trained_tagger, tiny_dataset):
  """A scraped file scores the same as its record from the dataset (no train/serve skew)."""
  data, model_dir = trained_tagger
  tagger = run_dir.load(model_dir)
  builder = dataset_lib.load_builder(data)
  record = next(iter(builder.as_dataset(split="test", decoders={
      features_lib.IMAGE: tfds.decode.SkipDecoding()})))
  image = input_pipeline.to_model_input(record[features_lib.IMAGE], tagger.image_size)
  expected = tagger.model.predict_on_batch(image[None])[0]
  ((_, scores, error),) = tagger.score_files([record[features_lib.PATH].numpy().decode()])
  assert error == ""
  np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_cli_writes_json_lines(trained_tagger, files, tmp_path):
  import subprocess
  import sys
  _, model_dir = trained_tagger
  out = tmp_path / "tags.jsonl"
  subprocess.run([sys.executable, "-m", "alti2v.predict", "--model_dir", model_dir,
                  "--output", str(out), "--top_k", "2", str(files / "a.jpg"),
                  str(files / "broken.jpg")], check=True, capture_output=True)
  lines = [json.loads(l) for l in out.read_text().splitlines()]
  assert [("error" in l) for l in lines] == [False, True]
  assert len(tagger_lib.line_tags(lines[0])) <= 2


def test_json_line_escapes_a_name_that_is_not_utf8():
  line = image_files.json_line({"path": os.fsdecode(b"bad\xff.jpg"), "tags": ["été"]})
  assert line == '{"path": "bad\\udcff.jpg", "tags": ["été"]}'
  # JSON's own escape: Python reads back the name that opens the file.
  assert os.fsencode(json.loads(line)["path"]) == b"bad\xff.jpg"


def test_cli_tags_a_name_that_is_not_utf8(trained_tagger, files, tmp_path):
  import subprocess
  import sys
  _, model_dir = trained_tagger
  image = os.path.join(os.fsencode(tmp_path), b"bad\xff.jpg")
  shutil.copy(files / "a.jpg", os.fsdecode(image))
  out = tmp_path / "tags.jsonl"
  command = [sys.executable, "-m", "alti2v.predict", "--model_dir", model_dir,
             "--noprogress", "--top_k", "2"]
  subprocess.run(command + ["--output", str(out), os.fsdecode(image)], check=True,
                 capture_output=True)
  stdout = subprocess.run(command + [os.fsdecode(image)], check=True,
                          capture_output=True).stdout
  for text in (out.read_bytes(), stdout):
    (line,) = [json.loads(l) for l in text.decode("utf-8").splitlines()]
    assert os.fsencode(line["path"]) == image and "error" not in line
