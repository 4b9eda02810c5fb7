"""The tagger as WD14/DeepDanbooru users run it: tag categories (build → run → evaluate →
predict), caption files beside images, resumable --output, progress lines."""
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from alti2v import tasks
from alti2v.data import features as features_lib
from alti2v.data import image_files
from alti2v.data import progress as progress_lib
from alti2v.tasks import tagger
from alti2v.tasks.tagger import captions
from beam_jobs import build_tagged_dataset
from alti2v.training import run_dir
from tests import fixtures

PREDICT = [sys.executable, "-m", "alti2v.predict", "--noprogress"]


# Categories files.


def test_categories_by_name_number_header_and_wd14_columns():
  assert tagger.parse_categories_csv("long_hair,0\nhatsune miku,4\nvocaloid,3\n"
                                     "someone,1\ncommentary,5\nexplicit,9\n") == {
      "long_hair": "general", "hatsune miku": "character", "vocaloid": "copyright",
      "someone": "artist", "commentary": "meta", "explicit": "rating"}
  assert tagger.parse_categories_csv("name,category\nred_circle,Character\n") == {
      "red_circle": "character"}
  wd14 = "tag_id,name,category,count\n9999999,general,9,807366\n470575,1girl,0,4225150\n"
  assert tagger.parse_categories_csv(wd14) == {"general": "rating", "1girl": "general"}
  with pytest.raises(ValueError, match=r"t.csv line 2: unknown category '7' for 'b'"):
    tagger.parse_categories_csv("a,0\nb,7\n", "t.csv")


def test_tags_missing_from_the_file_are_general_and_rating_prefix_is_rating():
  assert tagger.vocabulary_categories(
      ["long_hair", "rating:safe", "miku"], {"Miku": "character"}, str.lower) == [
          "general", "rating", "character"]


def test_a_bad_categories_file_is_refused_before_the_build(tmp_path):
  (tmp_path / "in").mkdir()
  bad = tmp_path / "tags.csv"
  bad.write_text("red_circle,villain\n")
  with pytest.raises(ValueError, match=r"line 1: unknown category 'villain'"):
    build_tagged_dataset.run(["--input_dir", str(tmp_path / "in"), "--output_dir",
                              str(tmp_path / "out"), "--tag_categories", str(bad)])
  assert not (tmp_path / "out").exists()


# Lines: grouping, per-category thresholds, the rating.


def _rules(**overrides):
  values = dict(vocabulary=("long_hair", "miku", "rating:safe", "rating:explicit", "smile"),
                categories=("general", "character", "rating", "rating", "general"),
                thresholds=np.array([0.5, 0.5, 0.5, 0.5, 0.5]))
  values.update(overrides)
  return tagger.TagRules(**values)


def test_a_line_groups_tags_by_category_and_gives_the_best_rating():
  scores = np.array([0.9, 0.4, 0.2, 0.3, 0.6], np.float32)
  assert tagger.tag_line("a.jpg", scores, _rules()) == {
      "path": "a.jpg",
      "tags": {"general": [{"tag": "long_hair", "score": 0.9}, {"tag": "smile", "score": 0.6}],
               "character": []},
      "rating": {"tag": "rating:explicit", "score": 0.3}}  # Below 0.5, still the rating.
  top1 = tagger.tag_line("a.jpg", scores, _rules(top_k=1, grouped=False))
  assert top1["tags"] == [{"tag": "long_hair", "score": 0.9}]


def test_category_thresholds_override_the_calibrated_ones_and_threshold_wins(trained_tagger):
  _, model_dir = trained_tagger
  run = run_dir.load(model_dir)
  categories = tagger.read_categories(model_dir, run.vocabulary)
  rules = tagger.tag_rules(run, category_thresholds={"character": 0.0, "meta": 1.0})
  per_tag = (run.thresholds if run.thresholds is not None
             else np.full(len(run.vocabulary), run_dir.DEFAULT_THRESHOLD))
  for tag, category, value, calibrated in zip(run.vocabulary, categories, rules.thresholds,
                                              per_tag):
    expected = {"character": 0.0, "meta": 1.0}.get(category, calibrated)
    assert value == expected, tag
  assert set(tagger.tag_rules(run, threshold=0.3,
                              category_thresholds={"meta": 1.0}).thresholds) == {0.3}
  assert tagger.parse_category_thresholds("copyright=0.5, Meta=0.9") == {
      "copyright": 0.5, "meta": 0.9}
  with pytest.raises(ValueError, match="villain"):
    tagger.parse_category_thresholds("villain=0.5")


# Categories from the build to predict and evaluate.


def test_categories_are_stored_with_the_vocabulary_and_go_with_the_run(trained_tagger):
  data_dir, model_dir = trained_tagger
  vocabulary = open(os.path.join(data_dir, features_lib.vocabulary_file("tags")),
                    encoding="utf-8").read().split()
  sample = tagger.sample_categories()
  expected = [sample.get(t, "general") for t in vocabulary]
  assert tagger.read_categories(data_dir, vocabulary) == expected
  assert tagger.read_categories(model_dir, vocabulary) == expected
  assert {"general", "character", "copyright", "meta"} == set(expected)
  # An old run without the file: every tag general.
  assert tagger.read_categories(os.path.dirname(model_dir), vocabulary) == [
      "general"] * len(vocabulary)


def test_evaluate_reports_each_category_beside_its_baseline(trained_tagger):
  data_dir, model_dir = trained_tagger
  task, result = tasks.run_evaluation(model_dir, data_dir,
                                      tasks.EvalOptions(split="validation"))
  assert list(result["per_category"]) == ["general", "character", "copyright", "meta"]
  sizes = {c: v["num_tags"] for c, v in result["per_category"].items()}
  vocabulary = run_dir.load(model_dir).vocabulary
  categories = tagger.read_categories(model_dir, vocabulary)
  assert sizes == {c: categories.count(c) for c in sizes}
  assert sum(sizes.values()) == len(vocabulary)
  report = task.report(result, model_dir)
  meta = result["per_category"]["meta"]
  assert (f"meta       {sizes['meta']:>4} tags: mAP {meta['map']:.4f}  (baseline "
          f"{meta['constant_map']:.4f}") in report


@pytest.fixture(scope="module")
def folder(tiny_dataset, tmp_path_factory):
  """A copy of 3 sample images (one with a name that is not UTF-8) and a broken one."""
  images, _ = tiny_dataset
  root = tmp_path_factory.mktemp("captions")
  (root / "sub").mkdir()
  shutil.copy(os.path.join(images, "0000", "000000.jpg"), root / "a.jpg")
  shutil.copy(os.path.join(images, "0000", "000001.jpg"), root / "sub" / "b.jpg")
  shutil.copy(os.path.join(images, "0000", "000002.jpg"),
              os.fsdecode(os.path.join(os.fsencode(root), b"bad\xff.jpg")))
  (root / "broken.jpg").write_bytes(fixtures.truncated_jpeg())
  return root


def test_predict_writes_caption_files_beside_images(trained_tagger, folder):
  _, model_dir = trained_tagger
  (folder / "sub" / "b.txt").write_text("my_tag, other\n", encoding="utf-8")
  done = subprocess.run(
      PREDICT + ["--model_dir", model_dir, "--write_captions", "--threshold", "0",
                 "--top_k", "3", "--always_first_tags", "trigger", "--replace_underscores",
                 "--undesired_tags", "circle", str(folder)],
      check=True, capture_output=True)
  lines = {os.fsencode(json.loads(l)["path"]): json.loads(l)
           for l in done.stdout.decode("utf-8").splitlines()}
  bad = os.path.join(os.fsencode(folder), b"bad\xff.jpg")
  for image in (os.fsencode(folder / "a.jpg"), bad):
    line = lines[image]
    assert line["caption"]["status"] == "written"
    text = open(os.fsdecode(image[:-4] + b".txt"), encoding="utf-8").read()
    expected = ["trigger"] + [t.replace("_", " ") for t in tagger.line_tags(line)
                              if t != "circle"]
    assert text == ", ".join(expected) + "\n"
  # An existing file is left alone by default; an unreadable image gets no caption.
  assert lines[os.fsencode(folder / "sub" / "b.jpg")]["caption"]["status"] == "skipped"
  assert (folder / "sub" / "b.txt").read_text() == "my_tag, other\n"
  assert "error" in lines[os.fsencode(folder / "broken.jpg")]
  assert not (folder / "broken.txt").exists()
  assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
  assert (b"captions: 1 skipped, 1 unreadable images (no caption), 2 written (.txt files)"
          in done.stderr)


def test_caption_modes_skip_append_overwrite(tmp_path):
  image = str(tmp_path / "x.jpg")
  skip = captions.CaptionOptions()
  assert captions.write_caption(image, ["a", "b"], skip) == (str(tmp_path / "x.txt"),
                                                             "written")
  assert captions.write_caption(image, ["c"], skip)[1] == "skipped"
  assert (tmp_path / "x.txt").read_text() == "a, b\n"
  append = captions.CaptionOptions(mode="append")
  assert captions.write_caption(image, ["b", "c"], append)[1] == "appended"
  assert (tmp_path / "x.txt").read_text() == "a, b, c\n"
  overwrite = captions.CaptionOptions(mode="overwrite", separator=" ",
                                      extension=".caption")
  assert captions.write_caption(image, ["d"], overwrite)[1] == "written"
  assert captions.write_caption(image, ["e", "f"], overwrite)[1] == "overwritten"
  assert (tmp_path / "x.caption").read_text() == "e f\n"
  (tmp_path / "y.txt").write_bytes(b"caf\xe9")  # Latin-1: appending refuses, file kept.
  with pytest.raises(UnicodeDecodeError):
    captions.write_caption(str(tmp_path / "y.png"), ["a"], append)
  assert (tmp_path / "y.txt").read_bytes() == b"caf\xe9"
  assert sorted(os.listdir(tmp_path)) == ["x.caption", "x.txt", "y.txt"]


# Resumable --output.


def test_resume_cuts_a_torn_line_and_returns_the_paths_done(tmp_path):
  out = tmp_path / "tags.jsonl"
  bad = os.fsdecode(b"bad\xff.jpg")
  good = (image_files.json_line({"path": "a.jpg", "tags": {}}) + "\n"
          + image_files.json_line({"path": bad, "error": "truncated"}) + "\n")
  out.write_text(good + '{"path": "c.jpg", "ta', encoding="utf-8")
  assert image_files.resume_json_lines(str(out)) == {"a.jpg", bad}
  assert out.read_text(encoding="utf-8") == good
  out.write_text(good + "not json\n", encoding="utf-8")  # A complete but broken last line.
  assert image_files.resume_json_lines(str(out)) == {"a.jpg", bad}
  assert out.read_text(encoding="utf-8") == good
  out.write_text("not json\n" + good, encoding="utf-8")
  with pytest.raises(ValueError, match="line 1 is not a JSON line"):
    image_files.resume_json_lines(str(out))


def test_predict_output_resumes_where_a_killed_run_stopped(trained_tagger, folder, tmp_path):
  _, model_dir = trained_tagger
  characters = tagger.read_categories(model_dir, run_dir.load(model_dir).vocabulary).count(
      "character")
  out = tmp_path / "tags.jsonl"
  first = json.dumps({"path": str(folder / "a.jpg"), "tags": {}})
  out.write_text(first + "\n" + '{"path": "' + str(folder / "broken.jpg"))  # Torn.
  done = subprocess.run(PREDICT + ["--model_dir", model_dir, "--output", str(out),
                                   "--character_threshold", "0", str(folder)],
                        check=True, capture_output=True, text=True)
  assert "1 of 4 files already tagged, skipped" in done.stderr
  text = out.read_text(encoding="utf-8")
  assert text.startswith(first + "\n")
  lines = [json.loads(l) for l in text.splitlines()]
  paths = [os.fsencode(l["path"]) for l in lines]
  assert len(paths) == len(set(paths)) == 4
  for line in lines[1:]:
    if "error" in line:
      continue
    assert set(line["tags"]) == {"general", "character", "copyright", "meta"}
    assert len(line["tags"]["character"]) == characters  # Every one: threshold 0.


# Progress.


def test_progress_writes_a_line_every_interval_when_not_a_terminal():
  now = [100.0]
  stream = io.StringIO()
  with progress_lib.Progress(100, "predict", stream=stream, tty=False, interval=5,
                             clock=lambda: now[0]) as bar:
    for _ in range(10):
      now[0] += 1
      bar.update(10)
  assert stream.getvalue().splitlines() == [
      "predict: 50/100 images (50%), 10.0 images/s, ETA 0:00:05",
      "predict: 100/100 images (100%), 10.0 images/s, in 0:00:10"]  # Not twice at the end.
  stream = io.StringIO()
  with progress_lib.Progress(0, "vision_labels", stream=stream, tty=False,
                             clock=lambda: now[0]) as bar:
    now[0] += 2
    bar.update(3)
  assert stream.getvalue() == "vision_labels: 3 images, 1.5 images/s, in 0:00:02\n"
