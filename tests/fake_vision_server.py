"""A fake Cloud Vision `images:annotate` server on 127.0.0.1, for tests.

It validates each request against the published REST reference, not against our client:
https://cloud.google.com/vision/docs/reference/rest/v1/images/annotate (request body:
`requests[]` of AnnotateImageRequest, each with `image.content` as base64 and a `features[]`
list; at most 16 images per request; https://cloud.google.com/vision/docs/supported-files:
JSON request objects up to 10 MB; https://cloud.google.com/docs/authentication/api-keys-use:
the key in the `x-goog-api-key` header). Errors come in the API's format
`{"error": {"code", "message", "status"}}`; per-image failures in `responses[i].error`.

Labels are computed from the pixels (how much of each sample-data colour an image shows),
so a test can check what comes back. Requests can be made to fail with 429 or 503 by
a schedule of status codes, one per POST; or be answered with any status and body, or
only after a delay (a hanging server), by a schedule of Reply objects.

The demo runs it on its own, to show the labelling job without a key or a network:

  VISION_API_KEY=any python -m tests.fake_vision_server --url_file URL_FILE

serves until it is stopped, after writing its endpoint URL to URL_FILE.
"""
from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Sequence, Union
from urllib.parse import urlparse

import numpy as np
from PIL import Image

MAX_IMAGES = 16
MAX_BYTES = 10 * 2**20
COLORS = {"Red": (220, 40, 40), "Green": (40, 170, 60), "Blue": (40, 80, 220),
          "Yellow": (235, 205, 40)}
MIDS = {"Red": "/m/06fvc", "Green": "/m/038hg", "Blue": "/m/01g5v", "Yellow": "/m/088fh",
        "Shape": "/m/02csf", "Illustration": "/m/01kr8f"}


def labels_for(image_bytes: bytes, max_results: int) -> Optional[list[dict]]:
  """LabelAnnotations from the pixels; None if the bytes are not an image."""
  try:
    pixels = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"), np.int32)
  except Exception:  # pylint: disable=broad-except
    return None
  labels = []
  for name, rgb in COLORS.items():
    share = float((np.abs(pixels - rgb).sum(-1) < 90).mean())
    if share > 0.01:
      labels.append((name, min(0.99, 0.55 + 2 * share)))
  labels += [("Illustration", 0.9), ("Shape", 0.8)]
  labels.sort(key=lambda kv: -kv[1])
  return [{"mid": MIDS[n], "description": n, "score": round(s, 6), "topicality": round(s, 6)}
          for n, s in labels[:max_results]]


@dataclasses.dataclass(frozen=True)
class Reply:
  """A scripted answer to one POST (after the key is checked), in place of the real one.

  Attributes:
    body: sent as is (a str or bytes), or as JSON (any other value); None: the real
      answer (labels from the pixels), e.g. to only delay it.
    status: the HTTP status.
    delay: seconds to wait first (a hanging server); the wait ends when the server stops.
  """
  body: Union[None, str, bytes, dict, list, int, float] = None
  status: int = 200
  delay: float = 0.0


class FakeVisionServer:
  """Start with `with FakeVisionServer(key, fail=[429, None, 503]) as server: server.url`.

  Args:
    api_key: the only key it accepts (others get 403).
    fail: a status for the n-th POST (None = answer normally), with an error body.
    replies: a Reply (or None = answer normally) for the n-th POST; with fail, fail wins.
  """

  def __init__(self, api_key: str, fail: Sequence[Optional[int]] = (),
               replies: Sequence[Optional[Reply]] = ()):
    self.api_key = api_key
    self.fail = list(fail)  # Status for the n-th POST (None = answer normally).
    self.replies = list(replies)
    self.stopping = threading.Event()  # Set on exit: ends the delays of hanging replies.
    self.posts = 0
    self.failed = collections.Counter()
    self.labelled = collections.Counter()  # sha256 of image bytes → successful answers
    self.request_sizes: list[int] = []
    self.lock = threading.Lock()
    self.errors: list[str] = []  # Validation failures (a test asserts there are none).
    server = self

    class Handler(BaseHTTPRequestHandler):
      def log_message(self, *args):  # Quiet.
        pass

      def _reply(self, code: int, body):
        if isinstance(body, str):
          body = body.encode()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
          self.send_response(code)
          self.send_header("Content-Type", "application/json")
          self.send_header("Content-Length", str(len(data)))
          self.end_headers()
          self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
          pass  # The client gave up waiting (its timeout): nothing to answer.

      def _error(self, code: int, status: str, message: str):
        if code in (400, 403, 413):
          with server.lock:
            server.errors.append(f"{code} {message}")
        self._reply(code, {"error": {"code": code, "message": message, "status": status}})

      def do_POST(self):  # pylint: disable=invalid-name
        url = urlparse(self.path)
        if url.path != "/v1/images:annotate":
          return self._error(404, "NOT_FOUND", f"no such method {url.path}")
        if "key=" in url.query:
          return self._error(400, "INVALID_ARGUMENT", "the API key must not be in the URL")
        if self.headers.get("x-goog-api-key") != server.api_key:
          return self._error(403, "PERMISSION_DENIED", "API key missing or invalid")
        length = int(self.headers.get("Content-Length", 0))
        if length > MAX_BYTES:
          return self._error(413, "INVALID_ARGUMENT", "request exceeds 10 MB")
        raw = self.rfile.read(length)
        with server.lock:
          n = server.posts
          server.posts += 1
          injected = server.fail[n] if n < len(server.fail) else None
          scripted = server.replies[n] if n < len(server.replies) else None
        if scripted and not injected:
          server.stopping.wait(scripted.delay)
          if scripted.body is not None:
            return self._reply(scripted.status, scripted.body)
        if injected:
          with server.lock:
            server.failed[injected] += 1
          status = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(injected, "INTERNAL")
          return self._reply(injected, {"error": {"code": injected, "message": "try later",
                                                  "status": status}})
        try:
          body = json.loads(raw)
          requests = body["requests"]
        except (ValueError, KeyError, TypeError):
          return self._error(400, "INVALID_ARGUMENT", "body must be {\"requests\": [...]}")
        if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_IMAGES:
          return self._error(400, "INVALID_ARGUMENT",
                             f"1 to {MAX_IMAGES} images per request, got "
                             f"{len(requests) if isinstance(requests, list) else '?'}")
        responses = []
        for request in requests:
          features = request.get("features")
          if not isinstance(features, list) or not any(
              f.get("type") == "LABEL_DETECTION" for f in features):
            return self._error(400, "INVALID_ARGUMENT", "features must ask LABEL_DETECTION")
          try:
            image = base64.b64decode(request["image"]["content"], validate=True)
          except (KeyError, TypeError, binascii.Error):
            return self._error(400, "INVALID_ARGUMENT", "image.content must be base64")
          max_results = next(int(f.get("maxResults", 10)) for f in features
                             if f.get("type") == "LABEL_DETECTION")
          labels = labels_for(image, max_results)
          if labels is None:
            responses.append({"error": {"code": 3, "message": "Bad image data."}})
            continue
          with server.lock:
            server.labelled[hashlib.sha256(image).hexdigest()] += 1
          responses.append({"labelAnnotations": labels})
        with server.lock:
          server.request_sizes.append(len(requests))
        self._reply(200, {"responses": responses})

    self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1/images:annotate"
    self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

  def __enter__(self) -> "FakeVisionServer":
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self.stopping.set()
    self._httpd.shutdown()
    self._httpd.server_close()


def main(argv: Optional[Sequence[str]] = None) -> None:
  import argparse  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  import signal  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description="A fake Cloud Vision server on 127.0.0.1.")
  parser.add_argument("--url_file", required=True,
                      help="Written once the server listens: its images:annotate URL.")
  args = parser.parse_args(argv)
  key = os.environ.get("VISION_API_KEY")
  if not key:
    parser.error("set VISION_API_KEY: the server accepts only that key")
  stop = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stop.set())
  with FakeVisionServer(key) as server:
    tmp = args.url_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(server.url + "\n")
    os.replace(tmp, args.url_file)
    try:
      stop.wait()
    except KeyboardInterrupt:
      pass


if __name__ == "__main__":
  main()
