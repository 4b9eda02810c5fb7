"""A tagger's scores → predict's JSON lines: thresholds (per tag, per category, or one), top-k,
tags grouped by category, the rating.

tag_line builds one line from one image's scores; predict (tag_lines) and any batch job that
tags images use it, so that their lines are the same.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from alti2v.tasks.tagger import categories as categories_lib
from alti2v.training import run_dir

PREDICT_SERVES = ("predict tags files with a tagger (or a distillation student); sort a "
                  "folder with a screening filter with `python -m alti2v.screen`, caption "
                  "files with a captioner with `python -m alti2v.caption`")


@dataclasses.dataclass(frozen=True)
class TagRules:
  """How one image's scores become its line.

  Attributes:
    vocabulary: the tag names, in output order.
    categories: each tag's category (categories.CATEGORIES).
    thresholds: each tag's threshold, categories' and --threshold applied.
    top_k: at most this many tags per line (0 = no cap); the rating is not counted.
    vector: add every tag's score as "vector".
    grouped: {"tags": {category: [...]}, "rating": {...}}; False: the flat form
      {"tags": [...]} (every tag thresholded alike, rating tags included).
  """
  vocabulary: tuple[str, ...]
  categories: tuple[str, ...]
  thresholds: np.ndarray
  top_k: int = 0
  vector: bool = False
  grouped: bool = True


def parse_category_thresholds(text: str) -> dict[str, float]:
  """"copyright=0.5,meta=0.9" → {"copyright": 0.5, "meta": 0.9}.

  Raises:
    ValueError: not category=number pairs, an unknown category, or a number outside [0, 1].
  """
  found = {}
  for part in (p.strip() for p in text.split(",")):
    if not part:
      continue
    name, sep, value = part.partition("=")
    category = categories_lib.category_of(name)
    if not sep or category is None:
      raise ValueError(f"expected category=threshold with a category among "
                       f"{', '.join(categories_lib.CATEGORIES)}, got {part!r}")
    try:
      number = float(value)
    except ValueError:
      raise ValueError(f"{part!r}: {value!r} is not a number") from None
    if not 0 <= number <= 1:
      raise ValueError(f"{part!r}: a threshold must be in [0, 1]")
    found[category] = number
  return found


def merge_category_thresholds(text: str = "", general: float = -1.0,
                              character: float = -1.0) -> dict[str, float]:
  """The per-category thresholds of the command lines: --category_thresholds, then
  --general_threshold and --character_threshold (each -1 = not given) over it.

  Raises:
    ValueError: see parse_category_thresholds.
  """
  found = parse_category_thresholds(text)
  for category, value in ((categories_lib.GENERAL, general),
                          (categories_lib.CHARACTER, character)):
    if value >= 0:
      found[category] = value
  return found


def require_tagger(run: run_dir.TrainedRun) -> None:
  """Raises ValueError (naming the command that serves it) unless run is a tagger or student."""
  # A task's name, not an import: no task imports another (a student also scores one
  # sigmoid per name; a screening filter's single score is not a tag).
  run.require_task(("tagger", "distill"), PREDICT_SERVES)


def tag_rules(run: run_dir.TrainedRun, *, threshold: Optional[float] = None,
              category_thresholds: Optional[Mapping[str, float]] = None, top_k: int = 0,
              vector: bool = False, grouped: bool = True) -> TagRules:
  """The rules for a run's lines.

  Args:
    run: a finished tagger (or distillation student: its labels are all general).
    threshold: one threshold for every tag (wins over the others); None = per category
      where category_thresholds names it, else the calibrated per-tag thresholds
      (run_dir.TAG_THRESHOLDS_FILE, written by evaluate), else 0.5.
    category_thresholds: category → threshold for all its tags.
    top_k, vector, grouped: see TagRules.

  Raises:
    ValueError: category_thresholds names an unknown category.
  """
  categories = categories_lib.read_categories(run.model_dir, run.vocabulary)
  if run.thresholds is not None:
    thresholds = np.array(run.thresholds, np.float64)
  else:
    thresholds = np.full(len(run.vocabulary), run_dir.DEFAULT_THRESHOLD)
  for category, value in (category_thresholds or {}).items():
    if category not in categories_lib.CATEGORIES:
      raise ValueError(f"unknown tag category {category!r}; known: "
                       f"{', '.join(categories_lib.CATEGORIES)}")
    thresholds[[c == category for c in categories]] = value
  if threshold is not None:
    thresholds[:] = threshold
  return TagRules(tuple(run.vocabulary), tuple(categories), thresholds, top_k, vector,
                  grouped)


def tag_line(path: str, scores: np.ndarray, rules: TagRules) -> dict:
  """One image's line: {"path", "tags": {category: [{"tag", "score"}, ...]}, "rating"} (+
  "vector").

  "tags" holds a list per category the vocabulary has (rating aside, in
  categories.CATEGORIES order), each tag at or above its threshold, best first, at most
  rules.top_k over all categories; "rating" is the best-scoring rating tag, whatever its
  score (absent when the vocabulary has none). With rules.grouped False, "tags" is one
  list, best first, every tag against its threshold.
  """
  def entry(j):
    return {"tag": rules.vocabulary[j], "score": round(float(scores[j]), 4)}

  if not rules.grouped:
    order = np.argsort(-scores, kind="stable")
    kept = [j for j in order if scores[j] >= rules.thresholds[j]]
    line = {"path": path, "tags": [entry(j) for j in kept[:rules.top_k or None]]}
  else:
    kept, rating = select_tags(scores, rules)
    present = [c for c in categories_lib.CATEGORIES
               if c != categories_lib.RATING and c in rules.categories]
    groups = {c: [] for c in present}
    for j in kept:
      groups[rules.categories[j]].append(entry(j))
    line = {"path": path, "tags": groups}
    if rating is not None:
      line["rating"] = entry(rating)
  if rules.vector:
    line["vector"] = [round(float(v), 6) for v in scores]
  return line


def select_tags(scores: np.ndarray, rules: TagRules) -> tuple[list[int], Optional[int]]:
  """(the kept tags' indices, best first: rating tags aside, each at or above its threshold,
  at most rules.top_k; the best rating tag's index whatever its score, or None)."""
  order = np.argsort(-scores, kind="stable")
  kept = [j for j in order if rules.categories[j] != categories_lib.RATING
          and scores[j] >= rules.thresholds[j]][:rules.top_k or None]
  rating = next((j for j in order if rules.categories[j] == categories_lib.RATING), None)
  return kept, rating


def line_tags(line: dict) -> list[str]:
  """The tag names of a line, best first over every category (the rating aside)."""
  tags = line["tags"]
  if isinstance(tags, dict):
    tags = sorted((t for group in tags.values() for t in group), key=lambda t: -t["score"])
  return [t["tag"] for t in tags]


def tag_lines(run: run_dir.TrainedRun, paths: Sequence[str], *, top_k: int = 0,
              threshold: Optional[float] = None,
              category_thresholds: Optional[Mapping[str, float]] = None,
              vector: bool = False, grouped: bool = True, batch_size: int = 32,
              progress: bool = False) -> Iterator[dict]:
  """One line per file (tag_line), or {"path", "error"} for a file that cannot be read.

  Args:
    run: a finished tagger (or any run with one sigmoid per name: a student).
    top_k, threshold, category_thresholds, vector, grouped: see tag_rules.
    progress: show the progress on stderr.

  Raises:
    ValueError: run is not a tagger or a student.
  """
  require_tagger(run)
  rules = tag_rules(run, threshold=threshold, category_thresholds=category_thresholds,
                    top_k=top_k, vector=vector, grouped=grouped)
  return _tag_lines(run, paths, rules, batch_size, progress)


def _tag_lines(run, paths, rules, batch_size, progress) -> Iterator[dict]:
  for path, scores, error in run.score_files(paths, batch_size, progress, "predict"):
    yield {"path": path, "error": error} if scores is None else tag_line(path, scores, rules)
