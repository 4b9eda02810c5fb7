"""The labelling job's faults (moved from tests/test_vision.py): replies checked against the
API schema, a refused key, a hanging server, a killed run's temporaries."""
import json
import os
import re
import time
import uuid

import pytest

from alti2v.data import samples
from beam_jobs import vision_client
from beam_jobs import vision_labels
from tests import fixtures
from tests.fake_vision_server import FakeVisionServer, Reply
from tests.test_vision import KEY, all_text, counters, label


def label_files(out):
  """{JSON file: its parsed content} of a labelling job's output folder."""
  return {path: json.loads(data) for path, data in all_text(out) if path.endswith(".json")}


VALID_RESPONSES = [
    {},  # An image with no labels: the API leaves the empty list out.
    {"labelAnnotations": []},
    {"labelAnnotations": [{"mid": "/m/06fvc", "description": "Red", "score": 0.9,
                           "topicality": 0.9}]},
    {"labelAnnotations": [{"description": "Red", "score": 1}], "context": {"uri": "x"}},
    {"error": {"code": 3, "message": "Bad image data."}},
    {"error": {"code": 7, "message": "denied", "details": []}},
]
INVALID_RESPONSES = [
    5, None, "Red", [1, 2],
    {"labelAnnotations": {}},
    {"labelAnnotations": [5]},
    {"labelAnnotations": [{"description": 5, "score": 0.5}]},
    {"labelAnnotations": [{"description": "Red", "score": "high"}]},
    {"labelAnnotations": [{"description": "Red", "score": 1.5}]},
    {"labelAnnotations": [{"description": "Red", "score": True}]},
    {"labelAnnotations": [{"description": "Red", "score": float("nan")}]},
    {"labelAnnotations": [{"description": "Red", "topicality": -0.1}]},
    {"error": "boom"},
    {"error": {"code": "403", "message": "denied"}},
    {"error": {"code": 3, "message": 5}},
]


def test_responses_are_checked_against_the_api_schema():
  for response in VALID_RESPONSES:
    assert vision_client.response_problem(response) is None, response
    assert vision_client.reply_problem({"responses": [response]}, 1) is None, response
  for response in INVALID_RESPONSES:
    problem = vision_client.response_problem(response, "responses[0]")
    assert problem and problem.startswith("responses[0]"), response
    assert vision_client.reply_problem({"responses": [response]}, 1) == problem
  for reply in ([], [[1, 2]], 5, {"responses": {}}, {"responses": [{}, {}]}):
    assert vision_client.reply_problem(reply, 1), reply
  # One response per image: none (proto3 JSON leaves an empty list out) is too few.
  assert vision_client.reply_problem({}, 1) == "0 responses for 1 images"
  assert vision_client.reply_problem({"responses": [{}, {}]}, 2) is None
  # A message names kinds and numbers, never text of the reply (it is stored).
  assert "secret" not in vision_client.response_problem(
      {"labelAnnotations": [{"description": "Red", "score": "secret"}]})


@pytest.mark.parametrize("body", [
    '{"responses": [5]}', "[]", "[[1, 2]]", '{"responses": [[1, 2]]}', '{"responses": []}',
    '{"responses": [{}, {}]}', '{"responses": [{"labelAnnotations": [{"score": "high"}]}]}'])
def test_an_invalid_reply_is_an_error_not_a_result(body):
  image = fixtures.make_image_bytes(fixtures.solid((220, 40, 40)), "PNG")
  with FakeVisionServer(KEY, replies=[Reply(body), Reply('{"responses": [{}]}')]) as server:
    client = vision_client.VisionClient(KEY, endpoint=server.url, sleep=lambda _: None)
    with pytest.raises(vision_client.VisionError) as e:
      client.annotate([image])
    assert e.value.code == 200 and e.value.message.startswith("invalid reply: ")
    assert server.posts == 1  # The request was answered: asking again would bill it again.
    assert client.annotate([image]) == [{}]  # No labels is a valid reply.


def test_invalid_replies_are_error_records_asked_again_next_run(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  images, out = tmp_path / "images", tmp_path / "json"
  paths = samples.write_flat(str(images), 4, seed=7)
  bodies = ['{"responses": [5]}', "[]", "[[1, 2]]",
            '{"responses": [{"labelAnnotations": [{"description": "Red", "score": "x"}]}]}']
  with FakeVisionServer(KEY, replies=[Reply(b) for b in bodies]) as server:
    result = label(images, out, server, "--batch_size", "1", "--direct_num_workers=1")
    assert server.posts == 4
    assert counters(result)["images_with_errors"] == 4
    stored = label_files(out)
    assert len(stored) == 4
    for response in stored.values():
      assert vision_client.response_problem(response) is None
      assert response["error"]["code"] == 200
      assert response["error"]["message"].startswith("invalid reply: ")
    again = label(images, out, server, "--direct_num_workers=1")
    assert counters(again)["images_labelled"] == 4
    for path in paths:
      response = json.load(open(vision_labels.json_path(path, str(images), str(out))))
      assert response["labelAnnotations"][0]["description"]


@pytest.mark.parametrize("retry_flag", ["--retry_errors", "--noretry_errors"])
def test_a_label_file_that_is_no_response_is_asked_again(tmp_path, monkeypatch, retry_flag):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  images, out = tmp_path / "images", tmp_path / "json"
  paths = samples.write_flat(str(images), 5, seed=8)
  out.mkdir()
  old = ["5", "[[1, 2]]", '{"labelAnnotations": [{"description": "Red", "score": "x"}]}',
         '{"labelAnnotations": [', '{"error": {"code": 503, "message": "try later"}}']
  for path, text in zip(paths, old):  # What older versions could leave behind.
    with open(vision_labels.json_path(path, str(images), str(out)), "w") as f:
      f.write(text)
  with FakeVisionServer(KEY) as server:
    result = label(images, out, server, retry_flag, "--direct_num_workers=1")
  assert counters(result)["invalid_label_files_asked_again"] == 4
  retried = 5 if retry_flag == "--retry_errors" else 4
  assert sum(server.labelled.values()) == counters(result)["images_labelled"] == retried
  stored = [json.load(open(vision_labels.json_path(p, str(images), str(out)))) for p in paths]
  assert all("labelAnnotations" in r for r in stored[:retried])
  assert all("error" in r for r in stored[retried:])


def test_a_refused_key_or_endpoint_stops_the_job_with_one_clear_line(tmp_path, monkeypatch,
                                                                     caplog):
  wrong = "wrong-key-5d1e0b77"
  monkeypatch.setenv("VISION_API_KEY", wrong)
  images, out = tmp_path / "images", tmp_path / "json"
  samples.write_flat(str(images), 6, seed=9)
  with FakeVisionServer(KEY) as server:
    with pytest.raises(vision_labels.AccessRefused, match="HTTP 403") as e:
      label(images, out, server, "--batch_size", "2")
    assert "VISION_API_KEY" in str(e.value) and wrong not in str(e.value)
    assert label_files(out) == {}  # Not an error record per image.
    argv = ["--input_dir", str(images), "--output_dir", str(out), "--endpoint", server.url,
            "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    with pytest.raises(SystemExit) as e:
      vision_labels.JOB.main(argv)
    message = e.value.code  # A string: Python prints it and exits with status 1.
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith("beam_jobs.vision_labels: error: the Vision API refused")
    assert "HTTP 403" in message and wrong not in message
    monkeypatch.setenv("VISION_API_KEY", KEY)  # The right key, a wrong path: 404.
    with pytest.raises(vision_labels.AccessRefused, match="HTTP 404"):
      label(images, out, server, "--endpoint", server.url.replace("annotate", "annotat"))
    assert label_files(out) == {} and server.labelled == {}
  assert wrong not in caplog.text
  # What Google APIs answer to an invalid key: 400, told apart by the ErrorInfo reason.
  invalid_key = {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                           "message": "API key not valid. Please pass a valid API key.",
                           "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                        "reason": "API_KEY_INVALID",
                                        "domain": "googleapis.com"}]}}
  bad_request = {"error": {"code": 400, "message": "Request payload size exceeds the limit",
                           "status": "INVALID_ARGUMENT"}}
  with FakeVisionServer(KEY, replies=[Reply(invalid_key, 400)] * 3) as server:
    with pytest.raises(vision_labels.AccessRefused, match="API key not valid"):
      label(images, out, server, "--batch_size", "2")
    assert label_files(out) == {}
  with FakeVisionServer(KEY, replies=[Reply(bad_request, 400)]) as server:
    client = vision_client.VisionClient(KEY, endpoint=server.url)
    with pytest.raises(vision_client.VisionError) as e:
      client.annotate([b"x"])
    assert e.value.code == 400 and not e.value.refused  # One request's fault: recorded.


def test_timeout_flag_bounds_a_hanging_server(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  images, out = tmp_path / "images", tmp_path / "json"
  samples.write_flat(str(images), 1, seed=10)
  with pytest.raises(ValueError, match="--timeout"):
    vision_labels.run(["--input_dir", str(images), "--output_dir", str(out),
                       "--timeout", "0"])
  with FakeVisionServer(KEY, replies=[Reply(delay=60)] * 2) as server:
    start = time.monotonic()
    label(images, out, server, "--timeout", "0.5", "--max_retries", "1",
          "--direct_num_workers=1")
    assert time.monotonic() - start < 30  # Not 2 attempts x 60 s.
    assert server.posts == 2  # Both attempts waited --timeout, not 60 s.
    stored = label_files(out)
    assert len(stored) == 1
    assert all(r["error"]["code"] == 0 and "timed out" in r["error"]["message"]
               for r in stored.values())
    label(images, out, server, "--timeout", "0.5", "--direct_num_workers=1")
    assert all("labelAnnotations" in r for r in label_files(out).values())


def test_a_killed_runs_temporaries_are_removed_on_start(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_API_KEY", KEY)
  images, out = tmp_path / "images", tmp_path / "json"
  samples.write_flat(str(images), 1, seed=11)
  (out / "sub").mkdir(parents=True)
  ours = [out / f"scraped_000000.jpg.json.{uuid.uuid4().hex}.tmp",
          out / "sub" / f"deep.png.json.{uuid.uuid4().hex}.tmp"]
  theirs = [out / "notes.tmp", out / "a.jpg.json.backup.tmp", out / "sub" / "a.json"]
  for path in ours + theirs:
    path.write_text("{")
  with FakeVisionServer(KEY) as server:
    label(images, out, server, "--direct_num_workers=1")
  assert not any(path.exists() for path in ours)
  assert all(path.exists() for path in theirs)
  assert not [name for _, _, names in os.walk(out) for name in names
              if re.search(r"\.json\.[0-9a-f]{32}\.tmp$", name)]
