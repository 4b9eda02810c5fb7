"""A small Cloud Vision `images:annotate` client (LABEL_DETECTION) over plain HTTPS.

Why plain HTTP and not google-cloud-vision: the call is one JSON POST; the library adds
gRPC/protobuf layers for nothing here, and its default call does not retry a 429, so we
would wrap it in our own retry policy anyway. Here the policy is explicit: exponential
backoff with full jitter on 429 and 5xx (and connection errors), honouring Retry-After.

The API key travels only in the `x-goog-api-key` header: never in a URL (URLs end up in
logs), never in a message, never written anywhere.
Reference: https://cloud.google.com/vision/docs/reference/rest/v1/images/annotate
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Sequence

DEFAULT_ENDPOINT = "https://vision.googleapis.com/v1/images:annotate"
MAX_IMAGES_PER_REQUEST = 16  # The API's limit for images:annotate.
MAX_REQUEST_BYTES = 10 * 2**20  # The API's JSON request size limit.
RETRY_CODES = (429, 500, 502, 503, 504)
# vision_labels writes the response for IMAGES/a/b.jpg to JSON_DIR/a/b.jpg.json (a.png has
# its own), and build_vision_dataset reads it from there.
RESPONSE_SUFFIX = ".json"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
  """A redirect would carry the key's header to another host: treat it as an error."""

  def redirect_request(self, req, fp, code, msg, headers, newurl):  # pylint: disable=too-many-arguments
    return None


_OPENER = urllib.request.build_opener(_NoRedirects)
MAX_RETRY_AFTER = 300.0  # Seconds; a longer Retry-After is capped.


def check_endpoint(endpoint: str) -> None:
  """The key must travel encrypted: https, except to this machine (test servers)."""
  parsed = urllib.parse.urlparse(endpoint)
  if parsed.scheme == "https" or (parsed.scheme == "http" and
                                  parsed.hostname in ("127.0.0.1", "localhost", "::1")):
    return
  raise ValueError(f"endpoint {endpoint!r} must be https:// (http only to 127.0.0.1)")


class VisionError(Exception):
  """A request that failed for good (after retries, or with a code not worth retrying)."""

  def __init__(self, code: int, message: str):
    super().__init__(f"HTTP {code}: {message}")
    self.code = code
    self.message = message


class RateLimiter:
  """At most max_qps requests per second from this object (0 = no limit); thread-safe."""

  def __init__(self, max_qps: float, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep):
    self._interval = 1.0 / max_qps if max_qps > 0 else 0.0
    self._next = 0.0
    self._lock = threading.Lock()
    self._clock, self._sleep = clock, sleep

  def wait(self) -> None:
    if not self._interval:
      return
    with self._lock:
      now = self._clock()
      start = max(now, self._next)
      self._next = start + self._interval
    if start > now:
      self._sleep(start - now)


class VisionClient:
  """Label detection for batches of images, with retries and a request-rate cap."""

  def __init__(self, api_key: str, *, endpoint: str = DEFAULT_ENDPOINT,
               max_results: int = 50, max_retries: int = 6, initial_backoff: float = 1.0,
               max_backoff: float = 32.0, timeout: float = 60.0, max_qps: float = 0.0,
               sleep: Callable[[float], None] = time.sleep,
               jitter: Callable[[], float] = random.random):
    if not api_key:
      raise ValueError("no API key")
    check_endpoint(endpoint)
    self._api_key = api_key
    self.endpoint = endpoint
    self.max_results = max_results
    self.max_retries = max_retries
    self.initial_backoff = initial_backoff
    self.max_backoff = max_backoff
    self.timeout = timeout
    self._limiter = RateLimiter(max_qps, sleep=sleep)
    self._sleep = sleep
    self._jitter = jitter
    self.retries = 0  # Requests retried, for counters and tests.

  def __repr__(self) -> str:  # Never show the key.
    return f"VisionClient(endpoint={self.endpoint!r}, max_results={self.max_results})"

  def request_body(self, images: Sequence[bytes]) -> bytes:
    return json.dumps({"requests": [{
        "image": {"content": base64.b64encode(image).decode("ascii")},
        "features": [{"type": "LABEL_DETECTION", "maxResults": self.max_results}],
    } for image in images]}).encode("utf-8")

  def annotate(self, images: Sequence[bytes]) -> list[dict]:
    """One AnnotateImageResponse dict per image (it may carry its own "error").

    Splits into requests of at most 16 images and 10 MB.

    Raises:
      VisionError: a request failed for good; no image of it has a response.
    """
    responses: list[dict] = []
    chunk: list[bytes] = []
    size = 0
    for image in images:
      encoded = 4 * ((len(image) + 2) // 3) + 200
      if chunk and (len(chunk) == MAX_IMAGES_PER_REQUEST or size + encoded > MAX_REQUEST_BYTES):
        responses.extend(self._post(chunk))
        chunk, size = [], 0
      chunk.append(image)
      size += encoded
    if chunk:
      responses.extend(self._post(chunk))
    return responses

  def _post(self, images: Sequence[bytes]) -> list[dict]:
    body = self.request_body(images)
    for attempt in range(self.max_retries + 1):
      self._limiter.wait()
      request = urllib.request.Request(
          self.endpoint, data=body, method="POST",
          headers={"Content-Type": "application/json", "x-goog-api-key": self._api_key})
      retry_after = None
      try:
        with _OPENER.open(request, timeout=self.timeout) as reply:
          payload = json.loads(reply.read().decode("utf-8"))
        found = payload.get("responses", [])
        if len(found) != len(images):
          raise VisionError(200, f"{len(found)} responses for {len(images)} images")
        return found
      except urllib.error.HTTPError as e:
        code, message = e.code, _error_message(e)
        retry_after = e.headers.get("Retry-After") if e.headers else None
        if code not in RETRY_CODES:
          raise VisionError(code, message) from None
      except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        # Connection, TLS, timeout, or a reply cut short: worth another try.
        code, message = 0, f"request failed: {type(e).__name__}: {getattr(e, 'reason', e)}"
      if attempt == self.max_retries:
        raise VisionError(code, f"{message} (gave up after {attempt + 1} attempts)")
      backoff = min(self.max_backoff, self.initial_backoff * 2**attempt)
      delay = backoff * self._jitter()  # Full jitter: workers do not retry in step.
      if retry_after is not None and retry_after.isdigit():
        delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
      self.retries += 1
      logging.info("Vision API: HTTP %s, retry %d in %.2fs", code or "error",
                   attempt + 1, delay)
      self._sleep(delay)
    raise AssertionError("unreachable")


def _error_message(error: urllib.error.HTTPError) -> str:
  """The API's error message from an error reply (never the request, never its headers)."""
  try:
    return json.loads(error.read().decode("utf-8"))["error"]["message"]
  except Exception:  # pylint: disable=broad-except
    return error.reason if isinstance(error.reason, str) else "error"
