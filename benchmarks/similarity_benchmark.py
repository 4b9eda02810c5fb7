"""Similar-image search at volume: queries/s, recall@10 and memory of each index beside exact search.

  python benchmarks/similarity_benchmark.py [--num_vectors 200000] [--dimension 4096]
      [--queries 500] [--indexes cosine:exact,cosine:ivf,hamming:exact,hamming:ivf,hamming:hnsw]

Vectors: random but clustered like a tagger's features (--clusters centres of ReLU'd
Gaussians, each vector a centre plus noise, ReLU'd: sparse, non-negative), stored as `embed`
stores them (float16 unit rows and packed sign bits), at configs/i2v.flags' width (4096,
hidden_units). Queries are fresh draws from the same clusters. Each index is built by
alti2v/similarity.py's build_index and searched with its search() defaults (nprobe 16, HNSW
efSearch 128), all queries in one batch on this machine's cores, and 50 of them one at a
time (the web page's and a user's case). Printed per index: build seconds, queries/s,
ms per lone query, recall@10 against the exact index of its metric (the ceiling:
1.0), and its bytes per vector × 1M (memory per million vectors). Also: recall@10 of
exact Hamming against exact cosine (how much the bits keep). cosine:hnsw is left out by
default: at 4096 dimensions its graph builds at ~160 vectors/s on a 2-core CPU (20,000 took
127 s), ~20 min for 200,000; add it with --indexes where you have the cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from alti2v import similarity  # noqa: E402


def clustered_vectors(count: int, dimension: int, clusters: int, seed: int,
                      centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(float16 unit rows, the centres): ReLU(centre + noise), drawn a slice at a time."""
  rng = np.random.default_rng(seed)
  if centres is None:
    centres = np.maximum(rng.standard_normal((clusters, dimension), np.float32), 0)
  out = np.empty((count, dimension), np.float16)
  for start in range(0, count, 10_000):
    n = min(10_000, count - start)
    rows = centres[rng.integers(0, clusters, n)]
    rows += 0.8 * rng.standard_normal((n, dimension), np.float32)
    out[start:start + n] = similarity.normalize(np.maximum(rows, 0))
  return out, centres


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
  return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_vectors", type=int, default=200_000)
  parser.add_argument("--dimension", type=int, default=4096)
  parser.add_argument("--clusters", type=int, default=2000)
  parser.add_argument("--queries", type=int, default=500)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--single_queries", type=int, default=50,
                      help="Queries asked one at a time for the lone-query latency.")
  parser.add_argument("--indexes", default="cosine:exact,cosine:ivf,hamming:exact,"
                      "hamming:ivf,hamming:hnsw")
  args = parser.parse_args(argv)

  start = time.perf_counter()
  vectors, centres = clustered_vectors(args.num_vectors, args.dimension, args.clusters, 0)
  queries, _ = clustered_vectors(args.queries, args.dimension, args.clusters, 1, centres)
  data = {"cosine": (vectors, queries),
          "hamming": (similarity.binarize(vectors), similarity.binarize(queries))}
  print(f"{args.num_vectors} vectors x {args.dimension} dimensions ({args.clusters} "
        f"clusters), {args.queries} queries, k={args.k}; drawn in "
        f"{time.perf_counter() - start:.0f} s")
  truth, rows = {}, []
  for spec in args.indexes.split(","):
    metric, index_type = spec.split(":")
    indexed, asked = data[metric]
    start = time.perf_counter()
    index = similarity.build_index(indexed, metric, index_type)
    built = time.perf_counter() - start
    similarity.search(index, asked[:8], args.k)  # Warm-up: threads, first-call set-up.
    start = time.perf_counter()
    _, ids = similarity.search(index, asked, args.k)
    seconds = time.perf_counter() - start
    # One query at a time, as the web page and a user's `similar` call ask.
    start = time.perf_counter()
    for row in range(args.single_queries):
      similarity.search(index, asked[row:row + 1], args.k)
    single_ms = (time.perf_counter() - start) / args.single_queries * 1000
    if index_type == "exact":
      truth[metric] = ids
    recall = recall_at(ids, truth[metric], args.k) if metric in truth else float("nan")
    per_million = similarity.index_bytes(index) / args.num_vectors * 1e6
    rows.append((spec, built, args.queries / seconds, single_ms, recall, per_million))
    print(f"  {spec:14s} built in {built:6.1f} s  {args.queries / seconds:8.1f} queries/s  "
          f"{single_ms:8.2f} ms a lone query  "
          f"recall@{args.k} {recall:.3f}  {per_million / 2**30:6.2f} GiB per million vectors",
          flush=True)
    del index
  exact = {spec.split(":")[0]: (qps, single) for (spec, _, qps, single, _, _) in rows
           if spec.endswith(":exact")}
  print("\n| index | build s | queries/s (batch) | vs exact | ms a lone query | vs exact "
        "| recall@10 | GiB / million vectors |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for spec, built, qps, single, recall, per_million in rows:
    base = exact.get(spec.split(":")[0], (float("nan"), float("nan")))
    print(f"| {spec} | {built:.1f} | {qps:.1f} | {qps / base[0]:.1f}x | {single:.2f} | "
          f"{base[1] / single:.1f}x faster | {recall:.3f} | {per_million / 2**30:.2f} |")
  if {"cosine", "hamming"} <= set(truth):
    print(f"\nexact Hamming's top {args.k} against exact cosine's: recall@{args.k} "
          f"{recall_at(truth['hamming'], truth['cosine'], args.k):.3f}")
  print(f"stored by embed: float16 vectors {args.dimension * 2 / 2**30 * 1e6:.2f} GiB and "
        f"bits {args.dimension / 8 / 2**30 * 1e6:.2f} GiB per million")


if __name__ == "__main__":
  main()
