"""Vision API distillation: the labelling job against a fake server, the builder, training, metrics."""
import json
import logging
import os

from apache_beam.metrics.metric import MetricsFilter
import numpy as np
import pytest
import tensorflow_datasets as tfds

from alti2v import metrics
from alti2v import tasks
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import input_pipeline
from alti2v.data import samples
from alti2v.tasks import distill
from beam_jobs import build_vision_dataset
from beam_jobs import vision_client
from beam_jobs import vision_labels
from beam_jobs.stages import vocabulary as vocabulary_lib
from tests import fixtures
from tests.conftest import tiny_config
from tests.fake_vision_server import FakeVisionServer

KEY = "test-key-7f3a9c51e2"


def counters(result):
  return {c.key.metric.name: c.committed for c in result.metrics().query(
      MetricsFilter().with_namespace("alti2v"))["counters"]}


def label(images, out, server, *extra):
  return vision_labels.run([
      "--input_dir", str(images), "--output_dir", str(out), "--endpoint", server.url,
      "--initial_backoff", "0.01", "--direct_running_mode=in_memory",
      "--direct_num_workers=2", *extra])


def all_text(root):
  for folder, _, names in os.walk(root):
    for name in names:
      with open(os.path.join(folder, name), "rb") as f:
        yield os.path.join(folder, name), f.read()


def test_labelling_job_against_the_fake_server(tmp_path, monkeypatch, caplog, capfd):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  images, out = tmp_path / "images", tmp_path / "json"
  paths = samples.write_flat(str(images), 37, seed=5)
  (images / "sub").mkdir()
  samples.draw_sample(100, 5).image.save(images / "sub" / "deep.png")
  paths.append(str(images / "sub" / "deep.png"))
  (images / "broken.jpg").write_bytes(fixtures.truncated_jpeg())
  (images / "empty.jpg").write_bytes(b"")
  with caplog.at_level(logging.DEBUG), FakeVisionServer(KEY, fail=[429, 503, None, 429]) as server:
    result = label(images, out, server)
    assert server.errors == []  # every request was valid per the API reference
    assert max(server.request_sizes) <= 16
    assert server.failed[429] == 2 and server.failed[503] == 1
    assert counters(result)["requests_retried"] == 3
    # Every valid image labelled exactly once (the server saw each uploaded image once).
    assert sum(server.labelled.values()) == len(server.labelled) == len(paths)
    for path in paths:
      json_file = vision_labels.json_path(path, str(images), str(out))
      response = json.loads(open(json_file, encoding="utf-8").read())
      assert response["labelAnnotations"][0]["description"]
    rejected = [json.loads(l) for l in open(out / "rejected.jsonl", encoding="utf-8")]
    assert {(os.path.basename(r["path"]), r["reason"]) for r in rejected} == {
        ("broken.jpg", "truncated"), ("empty.jpg", "empty_file")}
    posts = server.posts
    again = label(images, out, server)
    assert server.posts == posts  # a re-run is free
    assert counters(again)["skipped_already_labelled"] == len(paths)
  logs = caplog.text + "".join(capfd.readouterr())
  assert KEY not in logs
  for path, data in all_text(tmp_path):
    assert KEY.encode() not in data, path


def test_a_request_that_keeps_failing_is_recorded_and_retried_next_run(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  images, out = tmp_path / "images", tmp_path / "json"
  samples.write_flat(str(images), 3, seed=6)
  with FakeVisionServer(KEY, fail=[503, 503]) as server:
    label(images, out, server, "--max_retries", "1", "--direct_num_workers=1")
    responses = [json.loads(data) for _, data in all_text(out) if _.endswith(".json")]
    assert len(responses) == 3
    errors = [r for r in responses if "error" in r]
    assert errors and all(r["error"]["code"] == 503 for r in errors)  # recorded, not fatal
    posts = server.posts
    label(images, out, server, "--direct_num_workers=1")  # errors are labelled again
    assert server.posts > posts
    responses = [json.loads(data) for _, data in all_text(out) if _.endswith(".json")]
    assert all("labelAnnotations" in r for r in responses)


def test_noretry_errors_asks_nothing_again(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  images, out = tmp_path / "images", tmp_path / "json"
  samples.write_flat(str(images), 3, seed=6)
  with FakeVisionServer(KEY, fail=[503, 503]) as server:
    label(images, out, server, "--max_retries", "1", "--direct_num_workers=1")
    before = {p: d for p, d in all_text(out) if p.endswith(".json")}
    assert len(before) == 3 and any(b'"error"' in d for d in before.values())
    posts = server.posts
    again = label(images, out, server, "--direct_num_workers=1", "--noretry_errors")
    assert server.posts == posts  # Nothing asked, nor billed, twice.
    assert counters(again)["skipped_already_labelled"] == 3
    assert {p: d for p, d in all_text(out) if p.endswith(".json")} == before


@pytest.mark.parametrize("flag", ["--noretry_errror", "--no-retry_errors"])
def test_the_labelling_job_refuses_a_flag_it_does_not_know(tmp_path, monkeypatch, capsys,
                                                             flag):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  with pytest.raises(SystemExit) as e:
    vision_labels.run(["--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                       flag])
  assert e.value.code == 2
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert f"unrecognized argument {flag}:" in last and "--noretry_errors?" in last
  assert not (tmp_path / "o").exists()


def test_missing_key_and_wrong_key(tmp_path, monkeypatch):
  monkeypatch.delenv("VISION_API_KEY", raising=False)
  with pytest.raises(ValueError, match="VISION_API_KEY"):
    vision_labels.run(["--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")])
  with FakeVisionServer(KEY) as server:
    client = vision_client.VisionClient("wrong-key", endpoint=server.url)
    with pytest.raises(vision_client.VisionError) as e:
      client.annotate([fixtures.make_image_bytes(fixtures.solid((1, 2, 3)), "PNG")])
    assert e.value.code == 403 and "wrong-key" not in str(e.value)
    assert "wrong-key" not in repr(client)


def test_backoff_doubles_with_jitter_and_honours_the_cap():
  slept = []
  with FakeVisionServer(KEY, fail=[429, 503, 500, None]) as server:
    client = vision_client.VisionClient(KEY, endpoint=server.url, initial_backoff=1.0,
                                        max_backoff=3.0, sleep=slept.append,
                                        jitter=lambda: 1.0)
    (response,) = client.annotate([fixtures.make_image_bytes(fixtures.solid((220, 40, 40)),
                                                             "PNG")])
  assert slept == [1.0, 2.0, 3.0] and client.retries == 3
  assert response["labelAnnotations"][0]["description"] == "Red"


def test_requests_hold_at_most_16_images():
  with FakeVisionServer(KEY) as server:
    client = vision_client.VisionClient(KEY, endpoint=server.url)
    image = fixtures.make_image_bytes(fixtures.solid((40, 80, 220)), "PNG")
    assert len(client.annotate([image] * 40)) == 40
    assert server.request_sizes == [16, 16, 8] and server.errors == []


def test_same_stem_images_get_their_own_json_and_http_endpoints_are_refused():
  assert vision_labels.json_path("/in/a/x.jpg", "/in", "/out") == "/out/a/x.jpg.json"
  assert vision_labels.json_path("/in/a/x.png", "/in", "/out") == "/out/a/x.png.json"
  with pytest.raises(ValueError, match="must be https"):
    vision_client.VisionClient(KEY, endpoint="http://vision.example.com/v1/images:annotate")
  vision_client.check_endpoint("https://vision.googleapis.com/v1/images:annotate")


def test_redirects_are_not_followed(monkeypatch):
  import http.server
  import threading
  seen = []

  class Redirect(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
      pass

    def do_POST(self):  # pylint: disable=invalid-name
      seen.append(self.headers.get("x-goog-api-key"))
      self.send_response(302)
      self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/other")
      self.end_headers()

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    client = vision_client.VisionClient(
        KEY, endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/images:annotate")
    with pytest.raises(vision_client.VisionError) as e:
      client.annotate([b"x"])
    assert e.value.code == 302 and len(seen) == 1  # the key went nowhere else
  finally:
    server.shutdown()
    server.server_close()


def test_rate_limiter_spaces_requests():
  now, slept = [0.0], []
  limiter = vision_client.RateLimiter(2.0, clock=lambda: now[0], sleep=slept.append)
  for _ in range(3):
    limiter.wait()
  assert slept == [0.5, 1.0]


@pytest.fixture(scope="module")
def vision_dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("vision")
  paths = distill.write_vision(str(root), 48, seed=8)
  (root / "vision" / "000001.jpg.json").write_text('{"labelAnnotations": [')
  (root / "vision" / "000002.jpg.json").write_text(
      '{"error": {"code": 3, "message": "Bad image data."}}')
  (root / "vision" / "000003.jpg.json").write_text('{"labelAnnotations": [{"score": 0.5}]}')
  os.unlink(root / "vision" / "000004.jpg.json")
  out = root / "dataset"
  build_vision_dataset.run([
      "--input_dir", str(root / "images"), "--labels_dir", str(root / "vision"),
      "--output_dir", str(out), "--image_size", "32", "--num_labels", "8",
      "--val_fraction", "0.25", "--test_fraction", "0.25",
      "--direct_running_mode=in_memory", "--direct_num_workers=1"])
  return root, paths, str(out)


def test_builder_stores_label_ids_and_teacher_scores(vision_dataset):
  root, paths, data = vision_dataset
  builder = dataset_lib.load_builder(data)
  vocabulary = builder.info.features[distill.LABELS].feature.names
  assert len(vocabulary) == 8
  stored = {}
  for split in builder.info.splits:
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      stored[ex["path"].decode()] = dict(zip(
          (vocabulary[i] for i in ex[distill.LABELS]), ex[distill.LABEL_SCORES]))
  bad = {paths[i] for i in (1, 2, 3, 4)}
  assert set(stored) == set(paths) - bad
  for path, labels in stored.items():
    response = json.load(open(root / "vision" / f"{os.path.basename(path)}.json"))
    expected = {vocabulary_lib.normalize_name(a["description"]): a["score"]
                for a in response["labelAnnotations"]}
    expected = {k: v for k, v in expected.items() if k in vocabulary}
    assert labels.keys() == expected.keys()
    for k, v in expected.items():
      assert labels[k] == pytest.approx(v, abs=1e-6)
  rejected = {os.path.basename(r["path"]): r["reason"] for r in map(
      json.loads, open(os.path.join(data, "rejected.jsonl")))}
  assert rejected == {"000001.jpg": distill.MALFORMED_LABEL_FILE,
                      "000002.jpg": distill.API_ERROR,
                      "000003.jpg": distill.MALFORMED_LABEL_FILE,
                      "000004.jpg": features_lib.NO_LABEL_FILE}


@pytest.mark.parametrize("loss", ["bce", "kl"])
def test_student_trains_on_soft_targets(vision_dataset, tmp_path, loss):
  _, _, data = vision_dataset
  info = tasks.train(tiny_config(data, tmp_path, task="distill", loss=loss, dropout=0.35))
  assert info["task"] == "distill" and info["num_outputs"] == 8
  _, result = tasks.run_evaluation(str(tmp_path), data, tasks.EvalOptions(split="test"))
  assert 0 <= result["mae"] <= 1 and result["num_examples"] > 0
  assert set(result["baseline"]) >= {"mae", "mse", "top1_in_top5", "spearman"}


def test_the_distillation_baseline_is_each_labels_mean_train_score(vision_dataset):
  _, _, data = vision_dataset
  task = tasks.get_task("distill")
  train = np.concatenate([y.numpy() for _, y in input_pipeline.input_fn(
      data, "train", 8, training=False, image_size=32, label_fn=task.label_fn(8),
      label_features=task.label_features)])
  means = distill.mean_train_scores(data, 8)
  np.testing.assert_allclose(means, train.mean(0), rtol=1e-6)
  assert (means > 0).any() and (means < 1).all()


def test_input_fn_gives_dense_teacher_scores(vision_dataset):
  _, _, data = vision_dataset
  task = tasks.get_task("distill")
  _, targets = next(iter(input_pipeline.input_fn(
      data, "train", 4, training=False, image_size=32, label_fn=task.label_fn(8),
      label_features=task.label_features)))
  assert targets.shape == (4, 8)
  values = targets.numpy()
  assert ((values == 0) | ((values > 0.5) & (values < 1))).all()  # scores, not 0/1


def test_distillation_metrics_by_hand():
  teacher = np.array([[0.9, 0.1, 0.0, 0.5, 0.2, 0.3],
                      [0.0, 0.8, 0.4, 0.0, 0.0, 0.1]])
  student = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                      [0.0, 0.9, 0.3, 0.1, 0.1, 0.0]])
  m = distill.distillation_metrics(teacher, student)
  assert m["mae"] == pytest.approx(np.abs(teacher - student).mean())
  assert m["mse"] == pytest.approx(((teacher - student) ** 2).mean())
  # image 1: teacher's top label 0 is the student's lowest (not in its top 5: 5,4,3,2,1)
  # image 2: teacher's top label 1 is the student's top
  assert m["top1_in_top5"] == pytest.approx(0.5)
  # two images per label: rho = +1 or -1 where both vary
  assert metrics.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
  assert metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert metrics.spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
  assert np.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))


def test_normalized_kl_is_zero_for_the_same_distribution():
  t = np.array([[0.2, 0.6, 0.2]], np.float32)
  assert float(distill.normalized_kl(t, t * 0.5)[0]) == pytest.approx(0.0, abs=1e-5)
  assert float(distill.normalized_kl(t, np.array([[0.6, 0.2, 0.2]], np.float32))[0]) > 0.1


def test_distill_labels_are_the_scores_at_their_ids_record_by_record():
  import tensorflow as tf
  label = tasks.get_task("distill").label_fn(4)
  batch = {distill.LABELS: tf.ragged.constant([[0, 2], [], [3]], tf.int64),
           distill.LABEL_SCORES: tf.ragged.constant([[0.9, 0.5], [], [0.7]], tf.float32)}
  np.testing.assert_allclose(label(batch).numpy(), [[0.9, 0, 0.5, 0], [0, 0, 0, 0],
                                                    [0, 0, 0, 0.7]])
  batch[distill.LABEL_SCORES] = tf.ragged.constant([[0.9], [0.5], [0.7]], tf.float32)
  with pytest.raises(tf.errors.InvalidArgumentError, match="ids and scores differ"):
    label(batch)
