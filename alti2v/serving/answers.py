"""What a trained run says about uploaded images, per task: the answers of `POST /v1/tag`.

Uploads take the training road (image_files.model_input: the builder's Pillow normalisation,
then the input pipeline's pad-to-square); a tagger or student answers tags with scores and
their categories (and the rating, as predict), a screening filter keep/drop beside its
threshold, a captioner its caption; with an index, each answer also lists the most similar
indexed images (SimilarImages).
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Callable, Optional, Sequence

import numpy as np

from alti2v import similarity
from alti2v import tasks
from alti2v.data import image_files
from alti2v.data import imaging
from alti2v.tasks.caption import decode as caption_decode
from alti2v.tasks.caption import vocabulary as caption_vocabulary
from alti2v.tasks.tagger import categories as categories_lib
from alti2v.training import run_dir

# The kind of answer each task gives (the page shows each its own way).
TAGS, KEEP, CAPTION = "tags", "keep", "caption"
TAG_TASKS = (tasks.tagger.TAGGER.name, tasks.distill.DISTILL.name)
KINDS = {**{name: TAGS for name in TAG_TASKS}, tasks.screen.SCREEN.name: KEEP,
         **{name: CAPTION for name in tasks.caption.CAPTIONERS}}
GENERAL = categories_lib.GENERAL  # The category of a tag when the run has no categories.
DEFAULT_MAX_PIXELS = 25_000_000  # A 5000x5000 upload: 75 MB decoded.
DEFAULT_SIMILAR_K = 8
THUMBNAIL_SIZE = 128  # The longer side of GET /v1/thumbnail's JPEGs.

# The similar-images hook: (model inputs uint8 [N, S, S, 3], model outputs [N, ...]) → for each
# image its nearest indexed images, best first, as JSON-ready dicts ({"path", "score"}, ...).
Neighbours = Callable[[np.ndarray, np.ndarray], Sequence[Sequence[dict]]]


@dataclasses.dataclass(frozen=True)
class Upload:
  filename: str
  data: bytes


class BadUploads(ValueError):
  """Uploads that are no usable image; `files` holds {"index", "filename", "reason", "detail"}."""

  def __init__(self, files: list[dict], total: int):
    super().__init__(f"{len(files)} of {total} files are not usable images; nothing was scored")
    self.files = files


def tag_categories(run: run_dir.TrainedRun) -> list[str]:
  """The category of each output name, in vocabulary order, as the run stores them.

  The tagger's own reader (categories.read_categories, which predict's lines use): a run
  without tags.categories.txt (a student, or a tagger built without --tag_categories) has
  every tag general, "rating:…" tags rating.

  Raises:
    ValueError: the run's categories file does not match its vocabulary.
  """
  return categories_lib.read_categories(run.model_dir, run.vocabulary)


class SimilarImages:
  """The similar-images hook over a vectors folder (alti2v.embed): per upload its k nearest
  indexed images, by the hidden-layer activations of the very model inputs the run scored.

  Each hit is {"i", "path", "score"} (cosine) or {"i", "path", "distance"} (Hamming bits),
  "i" its row in the folder: what GET /v1/thumbnail takes (never a path).

  Args:
    vectors: the folder, read (similarity.read_vectors).
    run: the run that made it (similarity.open_query_run checks so).
    k: neighbours per upload.
    metric: "cosine" (the float vectors) or "hamming" (the bits).
    index_type: exact, ivf or hnsw (an approximate one is built once and kept in the folder).

  Raises:
    ValueError: run has no feature vector (not a tagger or student).
  """

  def __init__(self, vectors: similarity.Vectors, run: run_dir.TrainedRun, *,
               k: int = DEFAULT_SIMILAR_K, metric: str = "cosine", index_type: str = "exact"):
    run.require_task(similarity.EMBEDDING_TASKS, similarity.EMBED_SERVES)
    self.vectors, self.k, self.metric = vectors, k, metric
    self._hidden = run.hidden_model()
    self._index = similarity.load_index(vectors, metric, index_type)
    self._rows = {path: i for i, path in enumerate(vectors.paths)}
    self._lock = threading.Lock()  # Keras' first predict call is not safe to race.
    self._hidden.predict_on_batch(np.zeros((1, run.image_size, run.image_size, 3), np.uint8))

  def __call__(self, images: np.ndarray, outputs: np.ndarray) -> list[list[dict]]:
    del outputs  # The tags; the neighbours come from the layer below them.
    with self._lock:
      activations = np.asarray(self._hidden.predict_on_batch(images), np.float32)
    return [[{"i": self._rows[hit["path"]], **hit} for hit in hits]
            for hits in similarity.nearest(self.vectors, self._index, activations, k=self.k,
                                           metric=self.metric)]

  def thumbnail(self, i: int) -> bytes:
    """A small JPEG of the indexed image in row i (image_files.stored_form).

    Raises:
      IndexError: no row i.
      OSError, imaging.Rejected: the file is gone or no longer an image.
    """
    if not 0 <= i < len(self.vectors.paths):
      raise IndexError(f"no indexed image {i}: the index holds {len(self.vectors.paths)} "
                       f"(0 to {len(self.vectors.paths) - 1})")
    with open(self.vectors.paths[i], "rb") as f:
      return image_files.stored_form(f.read(), THUMBNAIL_SIZE)


class Answerer:
  """Scores uploads with one loaded run; one batch through the model at a time (thread-safe).

  Args:
    run: a finished run (any task in KINDS).
    max_pixels: uploads with more pixels are refused before they are decoded.
    beam_size: a Show-and-Tell captioner's beam (1 = greedy).
    similar: the similar-images hook; None = no index (results carry no "similar").
  """

  def __init__(self, run: run_dir.TrainedRun, max_pixels: int = DEFAULT_MAX_PIXELS,
               beam_size: int = 1, similar: Optional[Neighbours] = None):
    if run.task not in KINDS:
      raise ValueError(f"{run.model_dir} holds a {run.task} model, which serve cannot answer "
                       f"for (it serves {', '.join(KINDS)})")
    self.run = run
    self.kind = KINDS[run.task]
    self.max_pixels = max_pixels
    self.beam_size = beam_size
    self.similar = similar
    self.categories = tag_categories(run)
    # predict's rules (calibrated thresholds, else 0.5; the rating aside), read once.
    self._rules = tasks.tagger.tag_rules(run) if self.kind == TAGS else None
    self.keep_threshold = run_dir.read_keep_threshold(run.model_dir)
    self._decoder = caption_decode.Decoder(run.model) if self.kind == CAPTION else None
    self._lock = threading.Lock()
    # The first call builds the predict function: done now, not in the first user's request.
    self._outputs(np.zeros((1, run.image_size, run.image_size, 3), np.uint8))

  def info(self) -> dict:
    """What the page needs to know: the task, its kind of answer, the default threshold."""
    info = {"task": self.run.task, "kind": self.kind, "image_size": self.run.image_size,
            "similar": self.similar is not None}
    if isinstance(self.similar, SimilarImages):
      info.update(similar_k=self.similar.k, metric=self.similar.metric,
                  indexed=len(self.similar.vectors.paths))
    if self.kind == TAGS:
      info["threshold"] = run_dir.DEFAULT_THRESHOLD
      info["calibrated"] = self.run.thresholds is not None
      # The order the page shows them in: predict's (categories.CATEGORIES), rating aside.
      info["categories"] = [c for c in categories_lib.CATEGORIES
                            if c != categories_lib.RATING and c in self.categories]
      info["rating"] = categories_lib.RATING in self.categories
    elif self.kind == KEEP:
      info["threshold"] = (self.keep_threshold if self.keep_threshold is not None
                           else run_dir.DEFAULT_THRESHOLD)
      info["calibrated"] = self.keep_threshold is not None
    return info

  def thumbnail(self, i: int) -> bytes:
    """A small JPEG of indexed image i (SimilarImages.thumbnail).

    Raises:
      IndexError: no index, or no row i.
      OSError, imaging.Rejected: the indexed file can no longer be read.
    """
    if not isinstance(self.similar, SimilarImages):
      raise IndexError("no index: serve was started without --index")
    return self.similar.thumbnail(i)

  def images(self, uploads: Sequence[Upload]) -> np.ndarray:
    """uint8 [N, S, S, 3] model inputs.

    Raises:
      BadUploads: naming every upload that is no usable image (none is scored).
    """
    images, bad = [], []
    for index, upload in enumerate(uploads):
      try:
        images.append(image_files.model_input(upload.data, self.run.image_size,
                                              self.run.stored_size, self.max_pixels))
      except imaging.Rejected as e:
        bad.append({"index": index, "filename": upload.filename, "reason": e.reason,
                    "detail": e.detail})
    if bad:
      raise BadUploads(bad, len(uploads))
    return np.stack(images)

  def _outputs(self, images: np.ndarray) -> np.ndarray:
    with self._lock:
      if self._decoder is not None:
        return self._decoder.generate(images, self.beam_size)
      return np.asarray(self.run.model.predict_on_batch(images), np.float32)

  def answer(self, uploads: Sequence[Upload], threshold: Optional[float] = None,
             top_k: int = 0) -> list[dict]:
    """One result per upload, in order: {"index", "filename", ...the task's answer}.

    Args:
      threshold: tags: one threshold for every tag (None: the calibrated per-tag thresholds,
        else 0.5, as predict); keep: the keep threshold (None: the one evaluate saved, else 0.5).
      top_k: tags: at most k tags (0 = no cap).

    Raises:
      BadUploads: an upload is no usable image.
    """
    images = self.images(uploads)
    outputs = self._outputs(images)
    results = []
    for index, (upload, row) in enumerate(zip(uploads, outputs)):
      result = {"index": index, "filename": upload.filename}
      if self.kind == TAGS:
        result.update(self._tags(row, threshold, top_k))
      elif self.kind == KEEP:
        result.update(self._keep(float(row[0]), threshold))
      else:
        result["caption"] = caption_vocabulary.decode(row, self.run.vocabulary)
      results.append(result)
    if self.similar is not None:
      for result, neighbours in zip(results, self.similar(images, outputs)):
        result["similar"] = list(neighbours)
    return results

  def _tags(self, scores: np.ndarray, threshold: Optional[float], top_k: int) -> dict:
    """{"tags": [{"tag", "score", "category"}, ...], "rating": {"tag", "score"}}: the tags
    at or above their threshold, best first, rating tags aside; the rating is the best
    rating tag whatever its score (as predict's lines; no "rating" without rating tags)."""
    rules = dataclasses.replace(self._rules, top_k=top_k)
    if threshold is not None:
      rules = dataclasses.replace(rules, thresholds=np.full(len(scores), threshold))
    kept, rating = tasks.tagger.select_tags(scores, rules)
    answer = {"tags": [{"tag": self.run.vocabulary[j], "score": round(float(scores[j]), 4),
                        "category": self.categories[j]} for j in kept]}
    if rating is not None:
      answer["rating"] = {"tag": self.run.vocabulary[rating],
                          "score": round(float(scores[rating]), 4)}
    return answer

  def _keep(self, score: float, threshold: Optional[float]) -> dict:
    if threshold is None:
      threshold = self.info()["threshold"]
    return {"score": round(score, 4), "threshold": threshold,
            "decision": "keep" if score >= threshold else "drop"}
