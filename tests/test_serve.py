"""The JSON API of `python -m alti2v.serve` (alti2v/serving): answers per task, batches in order,
tags under the run's categories (and the rating), every bad upload a clear 4xx (never a 500),
the upload cap, the similar-images hook and a real index (serve --index)."""
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fastapi import testclient
from PIL import Image

from alti2v import similarity
from alti2v.serving import answers
from alti2v.serving import app as app_lib
from alti2v.tasks import tagger as tagger_lib
from alti2v.tasks.tagger import categories as categories_lib
from alti2v.training import run_dir
from tests import fixtures

MAX_UPLOAD = 300_000
MAX_PIXELS = 1_000_000


def sample_paths(images_dir, n):
  return sorted(os.path.join(root, name) for root, _, names in os.walk(images_dir)
                for name in names if name.endswith((".jpg", ".png")))[:n]


def bomb_png() -> bytes:
  """A real decompression bomb: a 20000x20000 PNG (400M pixels) of ~60 kB."""
  return fixtures.make_image_bytes(Image.new("1", (20000, 20000)), "PNG")


@pytest.fixture(scope="module")
def tagger_run(trained_tagger):
  return run_dir.load(trained_tagger[1])


@pytest.fixture(scope="module")
def client(tagger_run):
  answerer = answers.Answerer(tagger_run, max_pixels=MAX_PIXELS)
  with testclient.TestClient(app_lib.create_app(answerer, max_upload_bytes=MAX_UPLOAD,
                                                max_files=4)) as c:
    yield c


def post_files(client, named, **params):
  return client.post("/v1/tag", params=params,
                     files=[("file", (name, data)) for name, data in named])


def test_batch_answers_in_order_as_predict(client, tagger_run, tiny_dataset, tmp_path):
  paths = sample_paths(tiny_dataset[0], 3)
  named = [(os.path.basename(p), open(p, "rb").read()) for p in paths]
  named.append(("alpha.png", fixtures.rgba_png()))
  reply = post_files(client, named, threshold=0.0)
  assert reply.status_code == 200, reply.text
  body = reply.json()
  assert body["task"] == "tagger"
  results = body["results"]
  assert [(r["index"], r["filename"]) for r in results] == [
      (i, name) for i, (name, _) in enumerate(named)]
  # The same road as predict: the same tags and scores, here with a category each.
  png = tmp_path / "alpha.png"
  png.write_bytes(fixtures.rgba_png())
  expected = list(tagger_lib.tag_lines(tagger_run, paths + [str(png)], threshold=0.0,
                                       grouped=False))
  # Each tag under the category the sample's categories file gives it (general otherwise).
  with open(os.path.join(os.path.dirname(tiny_dataset[0]), "tag_categories.csv"),
            encoding="utf-8") as f:
    in_file = categories_lib.parse_categories_csv(f.read())
  for tag, category in (("red_circle", "character"), ("striped_background", "copyright"),
                        ("one_shape", "meta"), ("red", "general")):
    assert in_file.get(tag, "general") == category
  for result, line in zip(results, expected):
    assert len(result["tags"]) == len(tagger_run.vocabulary)
    assert {t["tag"]: t["score"] for t in result["tags"]} == pytest.approx(
        {t["tag"]: t["score"] for t in line["tags"]}, abs=2e-4)
    assert {t["tag"]: t["category"] for t in result["tags"]} == {
        t: in_file.get(t, "general") for t in tagger_run.vocabulary}
    assert "rating" not in result  # The sample has no rating tags.
    scores = [t["score"] for t in result["tags"]]
    assert scores == sorted(scores, reverse=True)
    assert "similar" not in result  # No index given: the hook is absent.
  assert results[0]["tags"] != results[1]["tags"]


def test_threshold_top_k_and_a_raw_image_body(client, tagger_run, tiny_dataset):
  (path,) = sample_paths(tiny_dataset[0], 1)
  data = open(path, "rb").read()
  all_tags = post_files(client, [("a.jpg", data)], threshold=0.0).json()["results"][0]["tags"]
  k = len(all_tags) // 2  # Between two rounded scores: the rounding cannot decide it.
  middle = (all_tags[k - 1]["score"] + all_tags[k]["score"]) / 2
  above = post_files(client, [("a.jpg", data)], threshold=middle).json()["results"][0]["tags"]
  assert above == [t for t in all_tags if t["score"] >= middle] and 0 < len(above) < len(all_tags)
  top = post_files(client, [("a.jpg", data)], threshold=0.0, top_k=2).json()["results"][0]
  assert top["tags"] == all_tags[:2]
  # Default: predict's own default (no calibration here: 0.5 for every tag).
  (line,) = tagger_lib.tag_lines(tagger_run, [path])
  default = post_files(client, [("a.jpg", data)]).json()["results"][0]["tags"]
  assert [t["tag"] for t in default] == tagger_lib.line_tags(line)
  raw = client.post("/v1/tag", content=data, headers={"Content-Type": "image/jpeg"},
                    params={"threshold": 0.0})
  assert raw.status_code == 200 and raw.json()["results"] == [
      {"index": 0, "filename": "", "tags": all_tags}]


@pytest.mark.parametrize("name,make,reason", [
    ("text.jpg", lambda: b"this is not an image\n" * 10, "not_an_image"),
    ("cut.jpg", fixtures.truncated_jpeg, "truncated"),
    ("bomb.png", bomb_png, "too_many_pixels"),
    ("large.png", lambda: fixtures.make_image_bytes(Image.new("L", (1200, 1000)), "PNG"),
     "too_many_pixels"),
    ("empty.jpg", lambda: b"", "empty_file"),
])
def test_a_bad_upload_is_a_422_naming_the_file(client, tiny_dataset, name, make, reason):
  data = make()
  assert len(data) < MAX_UPLOAD
  (good,) = sample_paths(tiny_dataset[0], 1)
  reply = post_files(client, [("good.jpg", open(good, "rb").read()), (name, data)])
  assert reply.status_code == 422, reply.text
  body = reply.json()
  assert body["error"] == "1 of 2 files are not usable images; nothing was scored"
  ((bad,),) = [body["files"]]
  assert (bad["index"], bad["filename"], bad["reason"]) == (1, name, reason)


def test_requests_without_images_or_over_the_limits_are_4xx(client, tiny_dataset):
  (good,) = sample_paths(tiny_dataset[0], 1)
  good_bytes = open(good, "rb").read()
  cases = {
      "no body": client.post("/v1/tag"),
      "no file field": client.post("/v1/tag", data={"note": "hello"},
                                   files=[("other", ("", b""))]),
      "json": client.post("/v1/tag", json={"image": "x"}),
      "threshold": post_files(client, [("a.jpg", good_bytes)], threshold=2),
      "top_k": post_files(client, [("a.jpg", good_bytes)], top_k=-1),
      "too many files": post_files(client, [(f"{i}.jpg", good_bytes) for i in range(5)]),
      "declared too large": post_files(client, [("big.bin", os.urandom(MAX_UPLOAD + 1))]),
      # No Content-Length (chunked): cut off once the stream passes the cap.
      "streamed too large": client.post(
          "/v1/tag", content=iter([b"\0" * 100_000] * 4),
          headers={"Content-Type": "application/octet-stream"}),
  }
  statuses = {name: reply.status_code for name, reply in cases.items()}
  assert statuses == {"no body": 400, "no file field": 400, "json": 415, "threshold": 422,
                      "top_k": 422, "too many files": 400, "declared too large": 413,
                      "streamed too large": 413}
  for name, reply in cases.items():
    assert reply.headers["content-type"] == "application/json", name
    assert reply.json()["error"], name
  assert "at most 300000 bytes per request" in cases["declared too large"].json()["error"]
  assert "--max_upload_mb" in cases["streamed too large"].json()["error"]
  assert "Maximum number of files is 4" in cases["too many files"].json()["error"]
  assert "threshold" in cases["threshold"].json()["error"]


def test_info_and_page(client, tagger_run):
  info = client.get("/v1/info").json()
  # "calibrated": whether evaluate has written the shared fixture run's thresholds (another
  # test may have evaluated it before this one).
  assert info == {"task": "tagger", "kind": "tags", "image_size": 32, "similar": False,
                  "threshold": 0.5, "calibrated": tagger_run.thresholds is not None,
                  "rating": False,
                  "categories": ["general", "character", "copyright", "meta"],
                  "max_upload_bytes": MAX_UPLOAD, "max_files": 4, "max_pixels": MAX_PIXELS}
  page = client.get("/")
  assert page.status_code == 200 and 'id="threshold"' in page.text
  assert "/v1/tag" in client.get("/openapi.json").json()["paths"]


def test_the_similar_images_hook(tagger_run, tiny_dataset):
  """What --index will plug in: per image its neighbours, beside the task's answer."""
  calls = []

  def neighbours(images, outputs):
    calls.append((images.shape, outputs.shape))
    return [[{"path": f"indexed/{i}.jpg", "score": float(o.max())}] for i, o in enumerate(outputs)]

  answerer = answers.Answerer(tagger_run, similar=neighbours)
  assert answerer.info()["similar"] is True
  paths = sample_paths(tiny_dataset[0], 2)
  results = answerer.answer([answers.Upload("x", open(p, "rb").read()) for p in paths], 0.0)
  assert calls == [((2, 32, 32, 3), (2, len(tagger_run.vocabulary)))]
  assert [r["similar"][0]["path"] for r in results] == ["indexed/0.jpg", "indexed/1.jpg"]
  assert results[0]["similar"][0]["score"] == pytest.approx(results[0]["tags"][0]["score"],
                                                            abs=1e-4)


def test_screening_filter_answers_keep_or_drop(screen_model, screen_dataset, tmp_path):
  model_dir = str(tmp_path / "screen")
  shutil.copytree(screen_model, model_dir)
  sorted_dir, _ = screen_dataset
  paths = sample_paths(os.path.join(sorted_dir, "positive"), 2) + sample_paths(
      os.path.join(sorted_dir, "negative"), 2)
  run = run_dir.load(model_dir)
  scores = [float(row[0]) for _, row, _ in run.score_files(paths)]
  assert len(set(scores)) > 1
  threshold = float(np.mean([min(scores), max(scores)]))
  run_dir.write_keep_threshold(model_dir, threshold, goal="test")
  answerer = answers.Answerer(run_dir.load(model_dir))
  assert answerer.info() == {"task": "screen", "kind": "keep", "image_size": 32,
                             "similar": False, "threshold": threshold, "calibrated": True}
  with testclient.TestClient(app_lib.create_app(answerer)) as c:
    named = [(os.path.basename(p), open(p, "rb").read()) for p in paths]
    results = post_files(c, named).json()["results"]
    assert [r["score"] for r in results] == pytest.approx(scores, abs=1e-4)
    assert [r["decision"] for r in results] == [
        "keep" if s >= threshold else "drop" for s in scores]
    assert {r["decision"] for r in results} == {"keep", "drop"}
    assert {r["threshold"] for r in results} == {threshold}
    everything = post_files(c, named, threshold=0.0).json()["results"]
    assert [r["decision"] for r in everything] == ["keep"] * 4


def test_the_rating_is_the_best_rating_tag_apart_from_the_tags(trained_tagger, tiny_dataset,
                                                                tmp_path):
  """A run whose categories name rating tags: as predict, the best one is "rating"."""
  model_dir = str(tmp_path / "rated")
  shutil.copytree(trained_tagger[1], model_dir)
  run = run_dir.load(model_dir)
  categories = categories_lib.read_categories(model_dir, run.vocabulary)
  rated = [0, 1]  # Two tags become rating tags (as "general"/"sensitive" in WD14).
  for j in rated:
    categories[j] = categories_lib.RATING
  with open(os.path.join(model_dir, "tags.categories.txt"), "w", encoding="utf-8") as f:
    f.write(categories_lib.categories_text(categories))
  answerer = answers.Answerer(run_dir.load(model_dir))
  assert answerer.info()["rating"] is True
  assert "rating" not in answerer.info()["categories"]
  (path,) = sample_paths(tiny_dataset[0], 1)
  (result,) = answerer.answer([answers.Upload("a.jpg", open(path, "rb").read())], 0.0)
  (line,) = tagger_lib.tag_lines(run_dir.load(model_dir), [path], threshold=0.0)
  assert result["rating"]["tag"] == line["rating"]["tag"]
  assert result["rating"]["tag"] in {run.vocabulary[j] for j in rated}
  assert result["rating"]["score"] == pytest.approx(line["rating"]["score"], abs=2e-4)
  assert {t["tag"] for t in result["tags"]} == set(run.vocabulary) - {
      run.vocabulary[j] for j in rated}


@pytest.fixture(scope="module")
def indexed_client(tagger_run, tagger_index):
  vectors = similarity.read_vectors(tagger_index[0])
  run = similarity.open_query_run(vectors, tagger_run.model_dir)
  answerer = answers.Answerer(run, similar=answers.SimilarImages(vectors, run, k=5))
  with testclient.TestClient(app_lib.create_app(answerer)) as c:
    yield c


def test_an_indexed_upload_finds_itself_first(indexed_client, tagger_index):
  _, indexed = tagger_index
  info = indexed_client.get("/v1/info").json()
  assert (info["similar"], info["similar_k"], info["metric"], info["indexed"]) == (
      True, 5, "cosine", len(indexed))
  queries = [indexed[3], indexed[11]]
  reply = post_files(indexed_client, [(os.path.basename(p), open(p, "rb").read())
                                      for p in queries])
  assert reply.status_code == 200, reply.text
  vectors = similarity.read_vectors(tagger_index[0])
  for query, result in zip(queries, reply.json()["results"]):
    similar = result["similar"]
    assert len(similar) == 5 and result["tags"] is not None
    # Itself first, at cosine 1 (the upload's road is the indexed file's: predict's).
    assert similar[0]["path"] == os.path.abspath(query)
    assert similar[0]["score"] == pytest.approx(1.0, abs=1e-3)
    scores = [hit["score"] for hit in similar]
    assert scores == sorted(scores, reverse=True)
    assert [vectors.paths[hit["i"]] for hit in similar] == [hit["path"] for hit in similar]
  # As `similar` answers for the same file.
  (line,) = similarity.neighbours(vectors, similarity.open_query_run(vectors), [queries[0]],
                                  k=5)
  first = reply.json()["results"][0]["similar"]
  assert [h["path"] for h in first] == [h["path"] for h in line["neighbours"]]
  assert [h["score"] for h in first] == pytest.approx(
      [h["score"] for h in line["neighbours"]], abs=2e-3)


def test_thumbnails_only_of_indexed_images_by_number(indexed_client, tagger_index):
  _, indexed = tagger_index
  vectors = similarity.read_vectors(tagger_index[0])
  reply = indexed_client.get("/v1/thumbnail", params={"i": 2})
  assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
  thumb = Image.open(io.BytesIO(reply.content))
  assert thumb.format == "JPEG"
  width, height = Image.open(vectors.paths[2]).size
  assert max(thumb.size) == answers.THUMBNAIL_SIZE < max(width, height)
  assert thumb.size[0] / thumb.size[1] == pytest.approx(width / height, rel=0.02)
  for bad in (len(indexed), -1, 10**9):
    reply = indexed_client.get("/v1/thumbnail", params={"i": bad})
    assert reply.status_code == 404 and "no indexed image" in reply.json()["error"], bad
  for bad in ("../../etc/passwd", vectors.paths[0]):  # Never a path.
    assert indexed_client.get("/v1/thumbnail", params={"i": bad}).status_code == 422


def test_hamming_finds_itself_at_distance_0(tagger_run, tagger_index):
  vectors = similarity.read_vectors(tagger_index[0])
  hook = answers.SimilarImages(vectors, tagger_run, k=3, metric="hamming")
  answerer = answers.Answerer(tagger_run, similar=hook)
  path = tagger_index[1][7]
  (result,) = answerer.answer([answers.Upload("q.jpg", open(path, "rb").read())])
  distances = [hit["distance"] for hit in result["similar"]]
  assert result["similar"][0]["distance"] == 0 and distances == sorted(distances)
  assert os.path.abspath(path) in [hit["path"] for hit in result["similar"] if
                                   hit["distance"] == 0]


def test_no_thumbnail_without_an_index(client):
  reply = client.get("/v1/thumbnail", params={"i": 0})
  assert reply.status_code == 404 and "without --index" in reply.json()["error"]


def test_the_command_refuses_a_bad_index_or_another_model(tmp_path, tagger_index,
                                                          screen_model):
  for model_dir, extra, message in (
      (str(tmp_path), [], "holds no finished training run"),
      (screen_model, ["--index", str(tmp_path)], "holds no vectors"),
      (screen_model, ["--index", tagger_index[0]], "is not the model")):
    result = subprocess.run(
        [sys.executable, "-m", "alti2v.serve", "--model_dir", model_dir, *extra],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
