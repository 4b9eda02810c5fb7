"""The Beam tagging job: real files → RunInference → the very lines predict writes, rejections aside."""
import glob
import json
import os
import shutil
import subprocess
import sys

from apache_beam.metrics.metric import MetricsFilter
import numpy as np
import pytest

from alti2v import similarity
from alti2v.tasks import tagger
from alti2v.training import run_dir
from beam_jobs import inference
from beam_jobs import tag_images
from beam_jobs.stages import elements
from tests import fixtures

NUM_IMAGES = 20
BAD_NAME = b"bad\xff name.jpg"  # Not UTF-8.


@pytest.fixture(scope="module")
def images(tiny_dataset, tmp_path_factory):
  """20 sample images (jpg and png, two folders), one truncated, one named in Latin-1, one text."""
  corpus, _ = tiny_dataset
  root = tmp_path_factory.mktemp("to_tag")
  found = sorted(p for p in glob.glob(os.path.join(corpus, "**", "*"), recursive=True)
                 if p.endswith((".jpg", ".png")))[:NUM_IMAGES]
  for i, path in enumerate(found):
    folder = root / f"part{i % 2}"
    folder.mkdir(exist_ok=True)
    shutil.copy(path, folder / os.path.basename(path))
  (root / "broken.jpg").write_bytes(fixtures.truncated_jpeg())
  shutil.copy(found[0], os.path.join(os.fsencode(root), BAD_NAME))
  (root / "notes.txt").write_text("not an image: ignored")
  return root


def run_job(model_dir, input_dir, output_dir, *extra):
  return tag_images.run([
      "--model_dir", model_dir, "--input_dir", str(input_dir), "--output_dir",
      str(output_dir), "--max_batch_size", "8", "--direct_running_mode=in_memory",
      "--direct_num_workers=2", *extra])


def read_lines(output_dir, prefix):
  lines = []
  for path in sorted(glob.glob(os.path.join(output_dir, f"{prefix}-*-of-*.jsonl"))):
    with open(path, encoding="utf-8") as f:  # Strict UTF-8: a bad name is escaped.
      lines.extend(f.read().splitlines())
  return lines


def by_path(lines):
  return sorted(lines, key=lambda line: json.loads(line)["path"])


# Per-category thresholds low enough that every image gets its top 3 (the flags predict has).
SCORING = ("--top_k", "3", "--general_threshold", "0", "--character_threshold", "0",
           "--category_thresholds", "copyright=0,meta=0", "--vector")


@pytest.fixture(scope="module")
def tagged(trained_tagger, images, tmp_path_factory):
  _, model_dir = trained_tagger
  out = tmp_path_factory.mktemp("tagged") / "out"
  result = run_job(model_dir, images, out, *SCORING, "--num_shards", "2")
  return out, result


def test_lines_are_predicts_lines(trained_tagger, images, tagged, tmp_path):
  _, model_dir = trained_tagger
  out, _ = tagged
  predicted = tmp_path / "predict.jsonl"
  subprocess.run([sys.executable, "-m", "alti2v.predict", "--model_dir", model_dir,
                  *SCORING, "--noprogress",
                  "--output", str(predicted), str(images)], check=True, capture_output=True)
  expected = [line for line in predicted.read_text(encoding="utf-8").splitlines()
              if "error" not in json.loads(line)]
  lines = read_lines(out, tag_images.TAGS_PREFIX)
  assert len(glob.glob(os.path.join(out, "tags-*-of-00002.jsonl"))) == 2
  assert len(lines) == NUM_IMAGES + 1
  # The same text, byte for byte: paths, tags, scores to 4 decimals, the vector to 6.
  assert by_path(lines) == by_path(expected)
  paths = {os.fsencode(json.loads(line)["path"]) for line in lines}
  assert os.path.join(os.fsencode(images), BAD_NAME) in paths
  assert all(len(tagger.line_tags(json.loads(line))) == 3 for line in lines)
  # Grouped by category, as predict's (the fixture's dataset has a categories file).
  assert {"general", "character"} <= set(json.loads(lines[0])["tags"])


def test_unusable_files_are_rejected_with_their_reason(images, tagged):
  out, result = tagged
  (rejection,) = [json.loads(line) for line in read_lines(out, tag_images.REJECTED_PREFIX)]
  assert rejection["path"] == str(images / "broken.jpg")
  assert rejection["reason"] == "truncated" and rejection["detail"]
  counters = {c.key.metric.name: c.committed for c in result.metrics().query(
      MetricsFilter().with_namespace(elements.NAMESPACE))["counters"]}
  assert counters["images_read"] == NUM_IMAGES + 2
  assert counters[tag_images.TAGGED] == NUM_IMAGES + 1
  assert counters["rejected_truncated"] == 1
  assert counters["files_ignored"] == 1  # notes.txt


def test_summary_is_written_last_and_printed(tagged, trained_tagger):
  out, _ = tagged
  summary = json.loads((out / tag_images.SUMMARY_FILE).read_text(encoding="utf-8"))
  assert summary["tagged"] == NUM_IMAGES + 1
  assert summary["rejected"] == {"truncated": 1}
  assert summary["model_dir"] == trained_tagger[1]
  assert sorted(summary["files"]) == sorted(
      os.path.basename(p) for p in glob.glob(os.path.join(out, "*-of-*.jsonl")))
  assert not glob.glob(os.path.join(out, "beam-temp-*")) and not glob.glob(
      os.path.join(out, "*.tmp"))


def test_a_used_output_dir_is_refused_then_replaced(trained_tagger, images, tmp_path):
  _, model_dir = trained_tagger
  out = tmp_path / "out"
  out.mkdir()
  (out / "tags-00000-of-00009.jsonl").write_text("old\n")
  (out / "mine.txt").write_text("kept")
  with pytest.raises(FileExistsError, match="--overwrite"):
    run_job(model_dir, images, out)
  run_job(model_dir, images, out, "--overwrite", "--top_k", "1")
  assert sorted(os.listdir(out)) == [
      "mine.txt", "rejected-00000-of-00001.jsonl", "summary.json",
      *sorted(n for n in os.listdir(out) if n.startswith("tags-"))]
  lines = [json.loads(l) for l in read_lines(out, tag_images.TAGS_PREFIX)]
  assert len(lines) == NUM_IMAGES + 1 and all(len(tagger.line_tags(l)) <= 1 for l in lines)


@pytest.mark.parametrize("flag, message", [
    (["--top_k", "-1"], "--top_k must be >= 0"),
    (["--threshold", "2"], r"--threshold must be in \[0, 1\]"),
    (["--character_threshold", "-0.5"], r"--character_threshold must be in \[0, 1\]"),
    (["--category_thresholds", "colour=0.5"], "expected category=threshold"),
    (["--min_batch_size", "4", "--max_batch_size", "2"], "--max_batch_size must be >="),
])
def test_bad_values_are_refused_before_anything_is_written(trained_tagger, images, tmp_path,
                                                           flag, message):
  _, model_dir = trained_tagger
  with pytest.raises(ValueError, match=message):
    run_job(model_dir, images, tmp_path / "out", *flag)
  assert not (tmp_path / "out").exists()


def test_a_dir_without_a_run_is_refused_in_one_line(images, tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no finished training run"):
    run_job(str(tmp_path), images, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_a_run_is_copied_with_the_files_it_is_opened_with(trained_tagger, tmp_path):
  """What a worker does with --model_dir gs://… (here through the same FileSystems calls)."""
  _, model_dir = trained_tagger
  local = inference.copy_run(model_dir, str(tmp_path))
  info = run_dir.read_info(model_dir)
  # The fixture's dataset was built with tag categories: they travel with the vocabulary.
  expected = {run_dir.MODEL_INFO_FILE, info["model"], info["vocabulary_file"],
              "tags.categories.txt"} | {
      n for n in run_dir.CALIBRATION_FILES if os.path.exists(os.path.join(model_dir, n))}
  assert set(os.listdir(local)) == expected
  copy, original = inference.open_run(local), run_dir.load(model_dir)
  assert copy.vocabulary == original.vocabulary
  assert (tagger.read_categories(local, copy.vocabulary)
          == tagger.read_categories(model_dir, original.vocabulary))
  assert set(tagger.read_categories(local, copy.vocabulary)) > {"general"}
  assert copy.model.count_params() == original.model.count_params()
  with pytest.raises(FileNotFoundError, match="holds no finished training run"):
    inference.copy_run(str(tmp_path / "nothing"), str(tmp_path))


def test_feature_vectors_are_a_vectors_folder_for_similar(trained_tagger, tagger_index,
                                                          tmp_path):
  """--feature_vectors: vectors/ is embed's folder for the same images; `similar` reads it."""
  _, model_dir = trained_tagger
  index_dir, indexed = tagger_index  # `python -m alti2v.embed` over 20 sample images.
  source = tmp_path / "images"
  copies = {}
  for i, path in enumerate(indexed[:12]):
    folder = source / f"part{i % 3}"
    folder.mkdir(parents=True, exist_ok=True)
    copies[str(folder / os.path.basename(path))] = path
    shutil.copy(path, folder / os.path.basename(path))
  (source / "broken.jpg").write_bytes(fixtures.truncated_jpeg())
  out = tmp_path / "out"
  result = run_job(model_dir, source, out, "--feature_vectors", "--vectors_shard_size", "5")

  vectors = similarity.read_vectors(str(out / tag_images.VECTORS_DIR))
  assert vectors.meta["count"] == 12 and vectors.meta["errors"] == 1
  assert [s["vectors"] for s in vectors.meta["shards"]] == [
      similarity.VECTORS_SHARD.format(i, 3) for i in range(3)]
  assert sorted(os.listdir(out / tag_images.VECTORS_DIR)) == sorted(
      [similarity.META_FILE, similarity.PATHS_FILE, similarity.ERRORS_FILE]
      + [s[kind] for s in vectors.meta["shards"] for kind in ("vectors", "bits")])
  (error,) = similarity.read_errors(str(out / tag_images.VECTORS_DIR))
  assert error["path"] == str(source / "broken.jpg") and error["error"].startswith("truncated")
  assert sorted(vectors.paths) == sorted(copies)
  # The same vectors as embed's for the same images, to float16 precision, and the same bits.
  embedded = similarity.read_vectors(index_dir)
  row_of = {path: i for i, path in enumerate(embedded.paths)}
  rows = [row_of[copies[path]] for path in vectors.paths]
  np.testing.assert_allclose(vectors.vectors.astype(np.float32),
                             embedded.vectors[rows].astype(np.float32), atol=1e-3, rtol=0)
  np.testing.assert_array_equal(vectors.bits, embedded.bits[rows])
  assert vectors.meta["model_sha256"] == embedded.meta["model_sha256"]
  counters = {c.key.metric.name: c.committed for c in result.metrics().query(
      MetricsFilter().with_namespace(elements.NAMESPACE))["counters"]}
  assert counters[tag_images.EMBEDDED] == counters[tag_images.TAGGED] == 12
  summary = json.loads((out / tag_images.SUMMARY_FILE).read_text(encoding="utf-8"))
  assert summary["vectors"] == {"folder": "vectors", "count": 12,
                                "dimension": embedded.meta["dimension"]}

  query = sorted(copies)[4]
  found = subprocess.run(
      [sys.executable, "-m", "alti2v.similar", "--index", str(out / "vectors"), "--k", "3",
       query], capture_output=True, text=True, check=True, timeout=300)
  (line,) = [json.loads(l) for l in found.stdout.splitlines()]
  assert line["neighbours"][0]["path"] == query
  assert line["neighbours"][0]["score"] == pytest.approx(1.0, abs=1e-3)
