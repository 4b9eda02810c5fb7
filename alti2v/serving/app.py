"""The web app of `python -m alti2v.serve`: the tagging page at / and its JSON API (FastAPI).

  GET  /          the page (static/index.html): drop images, see the answers, a threshold slider
  GET  /v1/info   the run: task, kind of answer, default threshold, limits
  POST /v1/tag    images (multipart `file` fields, or one image as the raw body) → one result
                  per image, in order
  GET  /v1/thumbnail?i=N   with an index (serve --index): a small JPEG of indexed image N
                  (a row number of the index, never a path: only indexed files are served)

Every error is JSON {"error": "one line", ...}: 400 no image or a malformed request, 413 a body
over the upload cap (refused from Content-Length before it is read, or once the streamed body
passes the cap), 415 a body that is neither multipart nor an image, 422 an upload that is no
usable image (every such file named with its reason; nothing is scored) or a bad parameter;
404 a thumbnail number the index does not hold (or no index).
"""
from __future__ import annotations

import importlib.resources
from typing import Optional

import fastapi
from fastapi import responses
from fastapi.concurrency import run_in_threadpool
from starlette import datastructures
from starlette import exceptions as starlette_exceptions

from alti2v.data import imaging
from alti2v.serving import answers

DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
DEFAULT_MAX_FILES = 64
# Bodies that are one image (not multipart).
RAW_TYPES = ("image/", "application/octet-stream")

TAG_REQUEST = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {
            "type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    }},
}


class BodyLimit:
  """ASGI middleware: a request body over max_bytes gets 413 without being read whole.

  A declared Content-Length over the cap is refused before a byte is read; a streamed body
  (chunked, or longer than declared) is cut off as soon as it passes the cap.
  """

  def __init__(self, app, max_bytes: int):
    self.app = app
    self.max_bytes = max_bytes

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      await self.app(scope, receive, send)
      return
    headers = datastructures.Headers(scope=scope)
    length = headers.get("content-length")
    if length is not None:
      if not length.isdigit():
        await _error(400, f"bad Content-Length {length!r}")(scope, receive, send)
        return
      if int(length) > self.max_bytes:
        await _error(413, self._too_large(int(length)))(scope, receive, send)
        return
    received = 0

    async def limited_receive():
      nonlocal received
      message = await receive()
      if message["type"] == "http.request":
        received += len(message.get("body", b""))
        if received > self.max_bytes:
          # Raised inside the request's body read: the app answers it as a 413.
          raise starlette_exceptions.HTTPException(413, self._too_large(received, "over"))
      return message

    await self.app(scope, limited_receive, send)

  def _too_large(self, size: int, qualifier: str = "") -> str:
    return (f"the upload is {qualifier + ' ' if qualifier else ''}{size} bytes; at most "
            f"{self.max_bytes} bytes per request (--max_upload_mb)")


def _error(status: int, message: str, **extra) -> responses.JSONResponse:
  return responses.JSONResponse({"error": message, **extra}, status_code=status)


def _page() -> str:
  return importlib.resources.files("alti2v.serving").joinpath(
      "static", "index.html").read_text(encoding="utf-8")


async def _uploads(request: fastapi.Request, max_files: int) -> list[answers.Upload]:
  """The images of a request, in order: multipart file fields, or the raw body."""
  content_type = request.headers.get("content-type", "")
  if content_type.startswith("multipart/form-data"):
    form = await request.form(max_files=max_files)
    uploads = []
    for _, value in form.multi_items():
      if isinstance(value, datastructures.UploadFile):
        uploads.append(answers.Upload(value.filename or "", await value.read()))
    await form.close()
    return uploads
  if content_type and not content_type.startswith(RAW_TYPES):
    raise starlette_exceptions.HTTPException(
        415, f"Content-Type {content_type!r}: send multipart/form-data with `file` fields, "
        "or one image as the body (image/* or application/octet-stream)")
  body = await request.body()
  return [answers.Upload("", body)] if body else []


def create_app(answerer: answers.Answerer, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_files: int = DEFAULT_MAX_FILES) -> fastapi.FastAPI:
  """The app serving one loaded run.

  Args:
    answerer: the run's answers (answers.Answerer).
    max_upload_bytes: the cap on a request's body (413 above it).
    max_files: the most images in one request (400 above it).
  """
  app = fastapi.FastAPI(
      title="alti2v", version="1",
      description=f"Tags, keep/drop or captions from the {answerer.run.task} run "
                  "in --model_dir. Errors are JSON {\"error\": ...}.")
  app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
  page = _page()

  @app.exception_handler(starlette_exceptions.HTTPException)
  async def http_error(request, exc):
    del request
    return _error(exc.status_code, str(exc.detail))

  @app.exception_handler(fastapi.exceptions.RequestValidationError)
  async def validation_error(request, exc):
    del request
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors())
    return _error(422, problems)

  @app.get("/", response_class=responses.HTMLResponse, include_in_schema=False)
  async def index():
    return page

  @app.get("/v1/info")
  async def info():
    """The run (task, kind of answer: tags, keep or caption; default threshold) and limits."""
    return {**answerer.info(), "max_upload_bytes": max_upload_bytes, "max_files": max_files,
            "max_pixels": answerer.max_pixels}

  @app.post("/v1/tag", openapi_extra=TAG_REQUEST)
  async def tag(request: fastapi.Request,
                threshold: Optional[float] = fastapi.Query(None, ge=0.0, le=1.0),
                top_k: int = fastapi.Query(0, ge=0)):
    """One result per image, in the order sent.

    Tags (tagger, distill): {"tags": [{"tag", "score", "category"}, ...]}, best first, those at
    or above `threshold` (default: the calibrated per-tag thresholds, else 0.5), at most
    `top_k`, rating tags aside; "rating": {"tag", "score"}, the best rating tag (when the
    vocabulary has rating tags). Keep (screen): {"score", "threshold", "decision":
    "keep"|"drop"}. Caption: {"caption"}. With an index (serve --index), also "similar":
    [{"i", "path", "score"}] (cosine) or [{"i", "path", "distance"}] (Hamming), best first.
    """
    uploads = await _uploads(request, max_files)
    if not uploads:
      return _error(400, "no image: send multipart/form-data with one or more `file` fields, "
                         "or one image as the body")
    try:
      results = await run_in_threadpool(answerer.answer, uploads, threshold, top_k)
    except answers.BadUploads as e:
      return _error(422, str(e), files=e.files)
    return {"task": answerer.run.task, "results": results}

  @app.get("/v1/thumbnail", response_class=responses.Response,
           responses={200: {"content": {"image/jpeg": {}}}})
  async def thumbnail(i: int = fastapi.Query(..., description="row of the index")):
    """A small JPEG of indexed image `i` (a "similar" hit's "i"); 404 for any other number."""
    try:
      jpeg = await run_in_threadpool(answerer.thumbnail, i)
    except IndexError as e:
      return _error(404, str(e))
    except (OSError, imaging.Rejected) as e:
      return _error(404, f"indexed image {i} can no longer be read: {e}")
    return responses.Response(jpeg, media_type="image/jpeg",
                              headers={"Cache-Control": "max-age=3600"})

  return app
