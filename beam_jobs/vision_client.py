"""A small Cloud Vision `images:annotate` client (LABEL_DETECTION) over plain HTTPS.

Why plain HTTP and not google-cloud-vision: the call is one JSON POST; the library adds
gRPC/protobuf layers for nothing here, and its default call does not retry a 429, so we
would wrap it in our own retry policy anyway. Here the policy is explicit: exponential
backoff with full jitter on 429 and 5xx (and connection errors, timeouts), honouring
Retry-After. Every reply is checked against the AnnotateImageResponse schema before it is
returned: a reply that is JSON but not that (a proxy's own JSON, a changed API) is an error,
never a result.

The API key travels only in the `x-goog-api-key` header: never in a URL (URLs end up in
logs), never in a message, never written anywhere.
Reference: https://cloud.google.com/vision/docs/reference/rest/v1/images/annotate
and https://cloud.google.com/vision/docs/reference/rest/v1/AnnotateImageResponse
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
from typing import Any, Callable, Optional, Sequence

DEFAULT_ENDPOINT = "https://vision.googleapis.com/v1/images:annotate"
MAX_IMAGES_PER_REQUEST = 16  # The API's limit for images:annotate.
MAX_REQUEST_BYTES = 10 * 2**20  # The API's JSON request size limit.
RETRY_CODES = (429, 500, 502, 503, 504)
# The key or the endpoint is wrong (API not enabled for the key's project, key restricted,
# no such method): every request of a run would be refused alike, so a job stops at the first.
REFUSED_CODES = (401, 403, 404)
# An invalid key is answered 400 INVALID_ARGUMENT, told apart from a bad request by the
# google.rpc.ErrorInfo reason in the error's details.
REFUSED_REASONS = ("API_KEY_INVALID",)
DEFAULT_TIMEOUT = 60.0  # Seconds per attempt (connecting and reading the reply).
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
  """A request that failed for good (after retries, or with a code not worth retrying).

  Attributes:
    code: the HTTP status (0: no reply; 200: a reply that is not the API's format).
    message: the API's error message, or what went wrong.
    reason: the google.rpc.ErrorInfo reason of the API's error ("API_KEY_INVALID"), or "".
  """

  def __init__(self, code: int, message: str, reason: str = ""):
    super().__init__(f"HTTP {code}: {message}")
    self.code = code
    self.message = message
    self.reason = reason

  @property
  def refused(self) -> bool:
    """Whether the key or the endpoint was refused: no other request can succeed either."""
    return self.code in REFUSED_CODES or self.reason in REFUSED_REASONS


def response_problem(response: Any, where: str = "response") -> Optional[str]:
  """What makes response no AnnotateImageResponse; None when it is one.

  Checks the fields this project reads, as the REST reference types them: an object,
  with optional `labelAnnotations[]` (objects whose `mid`, `description` and `locale` are
  strings and whose `score`, `topicality` and `confidence` are numbers in [0, 1]) and an
  optional `error` (a Status object: `code` an integer, `message` a string). Other fields
  are allowed (the API adds some); `{}` is an image with no labels.

  Args:
    response: a parsed JSON value.
    where: how the message names it ("responses[3]").
  """
  if not isinstance(response, dict):
    return f"{where} is {_kind(response)}, not an object"
  if "labelAnnotations" in response:
    annotations = response["labelAnnotations"]
    if not isinstance(annotations, list):
      return f"{where}.labelAnnotations is {_kind(annotations)}, not a list"
    for i, annotation in enumerate(annotations):
      at = f"{where}.labelAnnotations[{i}]"
      if not isinstance(annotation, dict):
        return f"{at} is {_kind(annotation)}, not an object"
      for name in ("mid", "description", "locale"):
        if name in annotation and not isinstance(annotation[name], str):
          return f"{at}.{name} is {_kind(annotation[name])}, not a string"
      for name in ("score", "topicality", "confidence"):
        if name in annotation and not _is_unit_number(annotation[name]):
          return f"{at}.{name} is {_kind(annotation[name])}, not a number in [0, 1]"
  if "error" in response:
    error = response["error"]
    if not isinstance(error, dict):
      return f"{where}.error is {_kind(error)}, not an object"
    if "code" in error and (isinstance(error["code"], bool) or
                            not isinstance(error["code"], int)):
      return f"{where}.error.code is {_kind(error['code'])}, not an integer"
    if "message" in error and not isinstance(error["message"], str):
      return f"{where}.error.message is {_kind(error['message'])}, not a string"
  return None


def reply_problem(payload: Any, num_images: int) -> Optional[str]:
  """What makes payload no BatchAnnotateImagesResponse for num_images; None when it is one.

  That is `{"responses": [...]}` with one valid AnnotateImageResponse per image, in order.
  """
  if not isinstance(payload, dict):
    return f"the reply is {_kind(payload)}, not an object"
  # proto3 JSON leaves out an empty list: no "responses" is zero of them.
  found = payload.get("responses", [])
  if not isinstance(found, list):
    return f"responses is {_kind(found)}, not a list"
  if len(found) != num_images:
    return f"{len(found)} responses for {num_images} images"
  for i, response in enumerate(found):
    problem = response_problem(response, f"responses[{i}]")
    if problem:
      return problem
  return None


def _is_unit_number(value: Any) -> bool:
  # NaN fails the comparison too.
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and 0 <= value <= 1)


def _kind(value: Any) -> str:
  """A JSON value's kind for a message: a number, never a reply's text (messages are stored)."""
  if isinstance(value, bool) or value is None:
    return json.dumps(value)
  if isinstance(value, (int, float)):
    return repr(value)
  return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a value")


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
               max_backoff: float = 32.0, timeout: float = DEFAULT_TIMEOUT,
               max_qps: float = 0.0,
               sleep: Callable[[float], None] = time.sleep,
               jitter: Callable[[], float] = random.random):
    if not api_key:
      raise ValueError("no API key")
    if not timeout > 0:
      raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
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

    Splits into requests of at most 16 images and 10 MB. Every response returned has
    passed response_problem.

    Raises:
      VisionError: a request failed for good, or its reply is not the API's response
        format (code 200, "invalid reply: ..."; not retried: the request was answered);
        no image of it has a response.
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
        problem = reply_problem(payload, len(images))
        if problem:
          raise VisionError(200, f"invalid reply: {problem}")
        return payload.get("responses", [])
      except urllib.error.HTTPError as e:
        code, (message, reason) = e.code, _error_info(e)
        retry_after = e.headers.get("Retry-After") if e.headers else None
        if code not in RETRY_CODES:
          raise VisionError(code, message, reason) from None
      except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        # Connection, TLS, timeout, or a reply cut short (not JSON): worth another try.
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


def _error_info(error: urllib.error.HTTPError) -> tuple[str, str]:
  """(message, ErrorInfo reason or "") of an error reply (never the request or its headers)."""
  try:
    status = json.loads(error.read().decode("utf-8"))["error"]
    message = str(status["message"])
  except Exception:  # pylint: disable=broad-except
    return (error.reason if isinstance(error.reason, str) else "error"), ""
  details = status.get("details")
  for detail in details if isinstance(details, list) else []:
    if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
      return message, detail["reason"]
  return message, ""
