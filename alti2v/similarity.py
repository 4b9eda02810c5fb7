"""Illustration2Vec feature vectors: the vectors folder `embed` writes and `similar` reads, and search.

A vectors folder holds one run's hidden-layer activations for a set of image files (L2-normalised
float16 shards, their packed sign bits: i2v's binary vector), their paths, the files that could
not be read, and meta.json, written last. Search goes through faiss (the `similar` extra):
cosine on the vectors or Hamming on the bits, exact or approximate (IVF, HNSW).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from typing import Iterator, Optional, Sequence

import numpy as np

from alti2v.data import image_files
from alti2v.training import run_dir

FORMAT_VERSION = 1
# Files of a vectors folder, in the order embed writes them (all inside a temporary folder
# renamed into place at the end, so a killed run never leaves a complete-looking folder).
VECTORS_SHARD = "vectors-{:05d}-of-{:05d}.npy"  # float16 [rows, dimension], unit length.
BITS_SHARD = "bits-{:05d}-of-{:05d}.npy"  # uint8 [rows, ceil(dimension / 8)]: np.packbits.
PATHS_FILE = "paths.jsonl"  # {"path"} per row, in row order (image_files.json_line).
ERRORS_FILE = "errors.jsonl"  # {"path", "error"} per file that could not be read.
META_FILE = "meta.json"  # Written last: the folder is complete.
# An approximate index, built on its first use and kept beside the vectors (an exact one is
# the vectors themselves: built on load, in about the time it takes to read them).
INDEX_FILE = "index-{index_type}-{metric}.faiss"

METRICS = ("cosine", "hamming")
INDEX_TYPES = ("exact", "ivf", "hnsw")
# Runs whose hidden layer is a feature of the image's content (tags, Vision labels); a task's
# name, not an import: this module imports no task.
EMBEDDING_TASKS = ("tagger", "distill")
EMBED_SERVES = ("feature vectors come from a tagger or a distillation student (their dense "
                "head's hidden layer)")
DEFAULT_SHARD_SIZE = 32768  # Rows per shard: 256 MB at 4096 dimensions in float16.
HNSW_NEIGHBOURS = 32  # HNSW's M: graph links per vector.
DEFAULT_NPROBE = 16  # IVF lists searched per query.
DEFAULT_EF_SEARCH = 128  # HNSW candidates kept while searching (64: recall@10 0.95 at 50,000).
# Vectors an index trains on, at most: 64 per IVF list (faiss asks for 39 or more; k-means
# time grows with both), and at least 10,000 for a scalar quantizer's ranges.
_TRAIN_PER_LIST, _TRAIN_MIN = 64, 10_000


def _faiss():
  """The faiss module, or one line that says how to install it."""
  try:
    import faiss  # pylint: disable=import-outside-toplevel  (an optional extra)
  except ImportError as e:
    raise ImportError("similarity search needs faiss: pip install 'alti2v[similar]'") from e
  return faiss


def normalize(vectors: np.ndarray) -> np.ndarray:
  """Rows scaled to unit length (float32); an all-zero row (no unit fired) stays zero."""
  vectors = np.asarray(vectors, np.float32)
  norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return vectors / np.maximum(norms, 1e-12)


def binarize(vectors: np.ndarray) -> np.ndarray:
  """i2v's binary vector: one bit per dimension, set where the unit fired (> 0), packed 8 per byte.

  i2v sets a bit where its sigmoid feature exceeds 0.5, i.e. where the pre-activation is
  positive; our hidden layer is a ReLU of the same pre-activation, so it is the same rule.
  """
  return np.packbits(np.asarray(vectors) > 0, axis=-1)


def model_fingerprint(run: run_dir.TrainedRun) -> str:
  """sha256 of the run's model file: queries must go through the model the folder was made with."""
  digest = hashlib.sha256()
  with open(os.path.join(run.model_dir, run.info["model"]), "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _check_output_dir(output_dir: str) -> None:
  if (os.path.isdir(output_dir) and os.listdir(output_dir)
      and not os.path.exists(os.path.join(output_dir, META_FILE))):
    raise ValueError(f"{output_dir} is not empty and holds no vectors ({META_FILE} is "
                     "missing); refusing to replace it")
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise ValueError(f"{output_dir} is a file, not a folder")


def _replace_dir(tmp: str, output_dir: str) -> None:
  """Moves the finished folder tmp to output_dir, replacing the vectors folder there."""
  if not os.path.exists(output_dir):
    os.rename(tmp, output_dir)
    return
  old = tmp + ".old"
  os.rename(output_dir, old)
  os.rename(tmp, output_dir)
  shutil.rmtree(old)


def vectors_meta(model_dir: str, model_sha256: str, task: str, dimension: int, count: int,
                 errors: int, shards: Sequence[dict]) -> dict:
  """meta.json of a vectors folder (also written by beam_jobs.tag_images --feature_vectors).

  Args:
    model_dir: the run that made the vectors (where `similar` opens it by default).
    model_sha256: model_fingerprint of that run.
    shards: {"vectors", "bits", "count"} per shard, in row order.
  """
  return {
      "format_version": FORMAT_VERSION,
      "model_dir": model_dir,
      "model_sha256": model_sha256,
      "task": task,
      "dimension": dimension,
      "count": count,
      "errors": errors,
      "vectors": "float16, L2-normalised",
      "bits": "np.packbits(activation > 0), zero-padded to whole bytes",
      "shards": list(shards),
  }


def write_vectors(run: run_dir.TrainedRun, paths: Sequence[str], output_dir: str, *,
                  batch_size: int = 32, shard_size: int = DEFAULT_SHARD_SIZE,
                  progress: bool = False) -> dict:
  """Embeds image files with a run and writes them as a vectors folder.

  The folder is built beside output_dir under a temporary name and renamed into place once
  meta.json is written: a killed run leaves a `.NAME.*.tmp` folder, never a complete-looking
  output_dir. A vectors folder already at output_dir is replaced.

  Args:
    run: a finished tagger or distillation student.
    paths: image files; one that cannot be read goes to errors.jsonl, not into the vectors.
    output_dir: the vectors folder.
    shard_size: rows per shard.

  Returns:
    meta.json's contents.

  Raises:
    ValueError: another task's run, output_dir is something else, or no file could be read.
  """
  run.require_task(EMBEDDING_TASKS, EMBED_SERVES)
  run.hidden_model()  # Its refusal before anything is written.
  _check_output_dir(output_dir)
  output_dir = os.path.abspath(output_dir)
  os.makedirs(os.path.dirname(output_dir), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.", suffix=".tmp",
                         dir=os.path.dirname(output_dir))
  try:
    shards, rows, count, errors, dimension = [], [], 0, 0, 0
    with open(os.path.join(tmp, PATHS_FILE), "w", encoding="utf-8") as paths_out, \
        open(os.path.join(tmp, ERRORS_FILE), "w", encoding="utf-8") as errors_out:

      def flush():
        vectors = np.stack(rows)
        shard = len(shards)
        np.save(os.path.join(tmp, f"vectors-{shard:05d}.npy"),
                normalize(vectors).astype(np.float16))
        np.save(os.path.join(tmp, f"bits-{shard:05d}.npy"), binarize(vectors))
        shards.append(len(rows))
        rows.clear()

      for path, vector, error in run.embed_files(paths, batch_size, progress):
        if vector is None:
          errors_out.write(image_files.json_line({"path": path, "error": error}) + "\n")
          errors += 1
          continue
        paths_out.write(image_files.json_line({"path": os.path.abspath(path)}) + "\n")
        rows.append(vector)
        dimension = len(vector)
        count += 1
        if len(rows) == shard_size:
          flush()
      if rows:
        flush()
    if not count:
      raise ValueError(f"none of the {len(paths)} files could be read (first: "
                       f"{paths[0]}: {read_errors(tmp)[0]['error']})")
    names = []
    for shard, rows_in_shard in enumerate(shards):
      name = (VECTORS_SHARD.format(shard, len(shards)), BITS_SHARD.format(shard, len(shards)))
      os.rename(os.path.join(tmp, f"vectors-{shard:05d}.npy"), os.path.join(tmp, name[0]))
      os.rename(os.path.join(tmp, f"bits-{shard:05d}.npy"), os.path.join(tmp, name[1]))
      names.append({"vectors": name[0], "bits": name[1], "count": rows_in_shard})
    meta = vectors_meta(os.path.abspath(run.model_dir), model_fingerprint(run), run.task,
                        dimension, count, errors, names)
    run_dir.write_json(os.path.join(tmp, META_FILE), meta)  # Last: the folder is complete.
    _replace_dir(tmp, output_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return meta


@dataclasses.dataclass(frozen=True)
class Vectors:
  """A vectors folder, read.

  Attributes:
    directory: where it was read from.
    meta: meta.json.
    paths: absolute file paths, row order.
    vectors: float16 [count, dimension], unit rows.
    bits: uint8 [count, ceil(dimension / 8)], packed.
  """
  directory: str
  meta: dict
  paths: list[str]
  vectors: np.ndarray
  bits: np.ndarray


def read_vectors(directory: str) -> Vectors:
  """The vectors folder in directory.

  Raises:
    FileNotFoundError: no meta.json (not a vectors folder, or a run that did not finish).
    ValueError: a newer format, or shards that disagree with meta.json.
  """
  meta = run_dir.read_json(os.path.join(directory, META_FILE))
  if meta is None:
    raise FileNotFoundError(f"{directory} holds no vectors ({META_FILE} is missing): make "
                            "it with python -m alti2v.embed")
  if meta.get("format_version", 0) > FORMAT_VERSION:
    raise ValueError(f"{directory} has vectors format {meta['format_version']}; this alti2v "
                     f"reads up to {FORMAT_VERSION}")
  vectors = [np.load(os.path.join(directory, s["vectors"])) for s in meta["shards"]]
  bits = [np.load(os.path.join(directory, s["bits"])) for s in meta["shards"]]
  with open(os.path.join(directory, PATHS_FILE), encoding="utf-8") as f:
    paths = [json.loads(line)["path"] for line in f]
  vectors, bits = np.concatenate(vectors), np.concatenate(bits)
  if not len(vectors) == len(bits) == len(paths) == meta["count"]:
    raise ValueError(f"{directory} is damaged: {len(vectors)} vectors, {len(bits)} bit "
                     f"rows and {len(paths)} paths for a count of {meta['count']}")
  return Vectors(directory, meta, paths, vectors, bits)


def read_errors(directory: str) -> list[dict]:
  """The files embed could not read: {"path", "error"} each."""
  with open(os.path.join(directory, ERRORS_FILE), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _nlist(count: int) -> int:
  # 4 sqrt(n) lists (faiss's guideline: 4-16 sqrt(n)): a query scans nprobe of them, ~0.4%
  # of 1M rows at nprobe 16. Fewer lists (sqrt(n)) scanned 3.6% of 200,000 rows a query,
  # slower than exact search's one matrix product for a batch of queries. faiss wants at
  # least 39 training points per list.
  return max(1, min(round(4 * math.sqrt(count)), count // 39))


def build_index(data: np.ndarray, metric: str, index_type: str):
  """A faiss index over the rows of data.

  cosine: inner product on unit float vectors. exact: IndexFlatIP (float32: 4 bytes a
  dimension); ivf: IVF with 4 sqrt(n) lists over 8-bit scalar-quantised vectors (1 byte a
  dimension); hnsw: an HNSW graph (M=32) over the same 8-bit codes. hamming: the packed bits,
  exact (IndexBinaryFlat), IVF or HNSW (a bit a dimension).

  Args:
    data: unit float vectors (cosine) or packed bits (hamming), one row each.
  """
  faiss = _faiss()
  if metric not in METRICS or index_type not in INDEX_TYPES:
    raise ValueError(f"unknown metric {metric!r} or index type {index_type!r}")
  count = len(data)
  if metric == "cosine":
    dimension = data.shape[1]
    spec = {"exact": "Flat", "ivf": f"IVF{_nlist(count)},SQ8",
            "hnsw": f"HNSW{HNSW_NEIGHBOURS}_SQ8"}[index_type]
    index = faiss.index_factory(dimension, spec, faiss.METRIC_INNER_PRODUCT)
    as_rows = lambda rows: np.ascontiguousarray(rows, np.float32)
  else:
    dimension = data.shape[1] * 8
    spec = {"exact": "BFlat", "ivf": f"BIVF{_nlist(count)}",
            "hnsw": f"BHNSW{HNSW_NEIGHBOURS}"}[index_type]
    index = faiss.index_binary_factory(dimension, spec)
    as_rows = lambda rows: np.ascontiguousarray(rows, np.uint8)
  if not index.is_trained:
    sample, size = data, max(_TRAIN_MIN, _TRAIN_PER_LIST * _nlist(count))
    if count > size:
      sample = data[np.sort(np.random.default_rng(0).choice(count, size, replace=False))]
    index.train(as_rows(sample))
  for start in range(0, count, 65536):  # float16 → float32 a slice at a time.
    index.add(as_rows(data[start:start + 65536]))
  return index


def index_bytes(index) -> int:
  """The size of an index serialised: what it holds in memory, near enough."""
  faiss = _faiss()
  if isinstance(index, faiss.IndexBinary):
    return int(faiss.serialize_index_binary(index).nbytes)
  return int(faiss.serialize_index(index).nbytes)


def search(index, queries: np.ndarray, k: int, *, nprobe: int = DEFAULT_NPROBE,
           ef_search: int = DEFAULT_EF_SEARCH) -> tuple[np.ndarray, np.ndarray]:
  """(scores, row ids) [queries, k], best first: cosine similarities, or Hamming distances.

  Args:
    queries: unit float vectors or packed bits, as the index holds.
    nprobe: IVF lists searched (more: slower, closer to exact).
    ef_search: HNSW candidates kept (raised to k when smaller).
  Row id -1 marks a slot with no neighbour (k larger than the index).
  """
  if hasattr(index, "nprobe"):
    index.nprobe = min(nprobe, index.nlist)
  if hasattr(index, "hnsw"):
    index.hnsw.efSearch = max(ef_search, k)
  dtype = np.uint8 if queries.dtype == np.uint8 else np.float32
  return index.search(np.ascontiguousarray(queries, dtype), k)


def load_index(vectors: Vectors, metric: str, index_type: str):
  """The index of a vectors folder: exact ones built now, approximate ones read from the
  folder, or built and saved there (atomically) for the next run when missing."""
  faiss = _faiss()
  data = vectors.vectors if metric == "cosine" else vectors.bits
  if index_type == "exact":
    return build_index(data, metric, index_type)
  path = os.path.join(vectors.directory, INDEX_FILE.format(index_type=index_type,
                                                           metric=metric))
  read, write = ((faiss.read_index, faiss.write_index) if metric == "cosine"
                 else (faiss.read_index_binary, faiss.write_index_binary))
  if os.path.exists(path):
    index = read(path)
    if index.ntotal == len(data):
      return index
    logging.warning("%s indexes %d vectors, not %d: rebuilding it", path, index.ntotal,
                    len(data))
  logging.info("building the %s %s index of %d vectors", index_type, metric, len(data))
  index = build_index(data, metric, index_type)
  try:
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=vectors.directory)
    os.close(fd)
    write(index, tmp)
    os.replace(tmp, path)
  except OSError as e:  # A read-only folder: search anyway, build again next time.
    logging.warning("could not save %s (%s): it is built again on each run", path, e)
  return index


def open_query_run(vectors: Vectors, model_dir: Optional[str] = None) -> run_dir.TrainedRun:
  """The run that made the vectors (meta's model_dir, or model_dir where it moved).

  Raises:
    ValueError: the run's model is not the one the vectors were made with.
  """
  run = run_dir.load(model_dir or vectors.meta["model_dir"])
  if model_fingerprint(run) != vectors.meta["model_sha256"]:
    raise ValueError(f"{run.model_dir} is not the model {vectors.directory} was made with "
                     f"(its model file differs): its vectors would not be comparable")
  return run


def nearest(vectors: Vectors, index, activations: np.ndarray, *, k: int = 10,
            metric: str = "cosine", exclude: Optional[Sequence[Optional[str]]] = None,
            nprobe: int = DEFAULT_NPROBE, ef_search: int = DEFAULT_EF_SEARCH
            ) -> list[list[dict]]:
  """The k nearest indexed images of each row of hidden-layer activations, in row order.

  Args:
    vectors: the vectors folder index was built from (load_index).
    activations: float [N, dimension], as run.hidden_model() gives them (not normalised).
    exclude: per row, an indexed path to leave out (its own), or None.
  Returns:
    per row [{"path", "score"}] (cosine similarity, best first) or [{"path", "distance"}]
    (Hamming distance in bits, nearest first).
  """
  exclude = exclude or [None] * len(activations)
  wanted = k + 1 if any(path is not None for path in exclude) else k
  queries = normalize(activations) if metric == "cosine" else binarize(activations)
  scores, ids = search(index, queries, wanted, nprobe=nprobe, ef_search=ef_search)
  found = []
  for own, row_scores, row_ids in zip(exclude, scores, ids):
    hits = [(vectors.paths[i], s) for i, s in zip(row_ids, row_scores)
            if i >= 0 and vectors.paths[i] != own][:k]
    found.append([{"path": p, "score": round(float(s), 4)} if metric == "cosine"
                  else {"path": p, "distance": int(s)} for p, s in hits])
  return found


def neighbours(vectors: Vectors, run: run_dir.TrainedRun, query_paths: Sequence[str], *,
               k: int = 10, metric: str = "cosine", index_type: str = "exact",
               exclude_self: bool = False, nprobe: int = DEFAULT_NPROBE,
               ef_search: int = DEFAULT_EF_SEARCH, batch_size: int = 32,
               progress: bool = False) -> Iterator[dict]:
  """The k nearest indexed images of each query file, in query order.

  Yields:
    {"query", "neighbours": [{"path", "score"}]} (cosine similarity, best first) or
    [{"path", "distance"}] (Hamming distance in bits, nearest first); {"query", "error"}
    for a file that cannot be read. A query that is itself indexed comes back first (at
    score 1 or distance 0) unless exclude_self drops its own path.
  """
  index = load_index(vectors, metric, index_type)

  def answer(batch):
    found = [(path, vector) for path, vector, _ in batch if vector is not None]
    results = {}
    if found:
      hits = nearest(vectors, index, np.stack([vector for _, vector in found]), k=k,
                     metric=metric, nprobe=nprobe, ef_search=ef_search,
                     exclude=[os.path.abspath(path) if exclude_self else None
                              for path, _ in found])
      results = {path: row_hits for (path, _), row_hits in zip(found, hits)}
    for path, vector, error in batch:
      yield ({"query": path, "error": error} if vector is None
             else {"query": path, "neighbours": results[path]})

  batch = []
  for item in run.embed_files(query_paths, batch_size, progress):
    batch.append(item)
    if len(batch) == batch_size:
      yield from answer(batch)
      batch = []
  if batch:
    yield from answer(batch)
