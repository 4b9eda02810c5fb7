"""Task-free metrics: threshold curves, AP, F1, ROC-AUC, rank correlation; CER, character BLEU-4.

Scores and labels are numpy arrays, captions plain strings; no task is named here. The text
metrics are vectorised so that a 16k-image split with five references each, scored against
hundreds of constant-caption candidates, takes seconds, not minutes.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence

import numpy as np

# A pattern of up to this many characters fits one machine word in the bit-parallel edit distance;
# pairs where both strings are longer fall back to the row-by-row dynamic programme.
_WORD_BITS = 64
# Cells per chunk of the per-pair tables (bit masks, DP rows): bounds memory at 32 MiB a table.
_CHUNK_CELLS = 1 << 22


# Scores against binary labels (one column, or one per tag). Tied scores form one threshold
# everywhere, as in sklearn's curves.


def threshold_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
  """(thresholds, precision, recall, F1) of `score >= t` at each distinct score, highest first.

  Tied scores form one threshold (as sklearn's curves do). labels needs a positive.
  """
  labels = np.asarray(labels, bool)
  order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
  s, l = np.asarray(scores)[order], labels[order]
  last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # Last index of each tie run.
  true_positives = np.cumsum(l)[last]
  positives = labels.sum()
  return (s[last], true_positives / (last + 1), true_positives / positives,
          2 * true_positives / (last + 1 + positives))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
  """AP of one tag: sum over score thresholds of (recall step) x precision.

  Tied scores form one threshold (as sklearn's average_precision_score), so a
  constant score gets AP = the positive rate. NaN when there is no positive.
  """
  if not np.asarray(labels, bool).any():
    return float("nan")
  _, precision, recall, _ = threshold_curve(labels, scores)
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
  """(mAP over tags with at least one positive, AP per tag with NaN for no positive)."""
  aps = np.array([average_precision(labels[:, j], scores[:, j])
                  for j in range(labels.shape[1])])
  valid = ~np.isnan(aps)
  return (float(aps[valid].mean()) if valid.any() else float("nan")), aps


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
  """(threshold, F1) maximising F1 of `score >= threshold` for one column; (0.5, 0) without
  positives."""
  if not np.asarray(labels, bool).any():
    return 0.5, 0.0
  thresholds, _, _, f1 = threshold_curve(labels, scores)
  best = int(np.argmax(f1))
  return float(thresholds[best]), float(f1[best])


def calibrate_thresholds(labels: np.ndarray, scores: np.ndarray,
                         min_support: int, rare_floor: float) -> np.ndarray:
  """Per-tag max-F1 thresholds; tags with fewer than min_support positives get at least rare_floor.

  A rare tag's max-F1 threshold is fit to a handful of images and tends to be far too
  low (it fires everywhere); the floor keeps it at least as strict as rare_floor.
  """
  thresholds = np.empty(labels.shape[1])
  for j in range(labels.shape[1]):
    threshold, _ = best_f1_threshold(labels[:, j], scores[:, j])
    if labels[:, j].sum() < min_support:
      threshold = max(threshold, rare_floor)
    thresholds[j] = threshold
  return thresholds


def f1_at(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> dict:
  """Micro and macro F1 (macro over tags with positives) and per-tag precision/recall/F1."""
  labels = np.asarray(labels, bool)
  predicted = scores >= thresholds[None, :]
  tp = (predicted & labels).sum(0).astype(float)
  fp = (predicted & ~labels).sum(0).astype(float)
  fn = (~predicted & labels).sum(0).astype(float)
  with np.errstate(invalid="ignore", divide="ignore"):
    precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
  micro = 2 * tp.sum() / max(1.0, 2 * tp.sum() + fp.sum() + fn.sum())
  support = labels.sum(0)
  macro = float(f1[support > 0].mean()) if (support > 0).any() else float("nan")
  return {"micro_f1": float(micro), "macro_f1": macro, "precision": precision,
          "recall": recall, "f1": f1, "support": support}


def average_ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks, ties sharing their average rank."""
  values = np.asarray(values)
  order = np.argsort(values, kind="mergesort")
  ranks = np.empty(len(values))
  sorted_values = values[order]
  starts = np.r_[0, np.nonzero(np.diff(sorted_values))[0] + 1]
  ends = np.r_[starts[1:], len(values)]
  for a, b in zip(starts, ends):
    ranks[order[a:b]] = (a + b + 1) / 2.0
  return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rank correlation (Pearson on average ranks); NaN if either is constant."""
  ra, rb = average_ranks(a), average_ranks(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denominator = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
  return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2."""
  labels = np.asarray(labels, bool)
  positives, negatives = labels.sum(), (~labels).sum()
  if positives == 0 or negatives == 0:
    return float("nan")
  ranks = average_ranks(scores)
  return float((ranks[labels].sum() - positives * (positives + 1) / 2) /
               (positives * negatives))


def choose_threshold(labels: np.ndarray, scores: np.ndarray,
                     target_precision: Optional[float] = None,
                     target_recall: Optional[float] = None) -> dict:
  """The keep threshold (keep = score >= threshold) for the user's goal, on labelled scores.

  target_precision: the lowest threshold whose precision reaches it (the most kept at
  that precision); target_recall: the highest threshold whose recall reaches it (the
  fewest kept); neither: maximum F1.

  Returns:
    {"threshold", "goal", "precision", "recall", "f1"}; raises ValueError when no
    threshold reaches the target.
  """
  labels = np.asarray(labels, bool)
  if labels.sum() == 0:
    raise ValueError("no positive example to choose a threshold on")
  for name, target in (("target_precision", target_precision),
                       ("target_recall", target_recall)):
    if target is not None and not 0.0 < target <= 1.0:
      raise ValueError(f"{name} must be in (0, 1], got {target}")
  thresholds, precision, recall, f1 = threshold_curve(labels, scores)
  if target_precision is not None:
    ok = np.nonzero(precision >= target_precision)[0]
    if not len(ok):
      raise ValueError(f"no threshold reaches precision {target_precision} "
                       f"(best: {precision.max():.3f})")
    i, goal = ok[-1], f"precision >= {target_precision}"
  elif target_recall is not None:
    ok = np.nonzero(recall >= target_recall)[0]
    i, goal = ok[0], f"recall >= {target_recall}"
  else:
    i, goal = int(np.argmax(f1)), "max F1"
  return {"threshold": float(thresholds[i]), "goal": goal, "precision": float(precision[i]),
          "recall": float(recall[i]), "f1": float(f1[i])}


def confusion_matrix(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
  """Counts of kept (score >= threshold) and dropped examples, positives and negatives."""
  labels = np.asarray(labels, bool)
  keep = np.asarray(scores) >= threshold
  return {"true_positive": int((keep & labels).sum()), "false_positive": int((keep & ~labels).sum()),
          "false_negative": int((~keep & labels).sum()), "true_negative": int((~keep & ~labels).sum())}


# Text: captions against their references.


def edit_distance(a: str, b: str) -> int:
  """Levenshtein distance between two strings (characters); plain Python, for single pairs."""
  previous = list(range(len(b) + 1))
  for i, ca in enumerate(a, 1):
    current = [i]
    for j, cb in enumerate(b, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
    previous = current
  return previous[-1]


def character_error_rates(hypotheses: Sequence[str],
                          references: Sequence[Sequence[str]]) -> np.ndarray:
  """Per image: min over its references of edit distance / max(1, reference length).

  Args:
    hypotheses: one caption per image.
    references: per image, its reference captions (at least one).

  Returns:
    float64 array of shape [len(hypotheses)].
  """
  return _References(references).error_rates(hypotheses)


def character_error_rate(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
  """Mean over images of min over references of edit distance / reference length (NaN if none)."""
  rates = character_error_rates(hypotheses, references)
  return float(np.mean(rates)) if len(rates) else float("nan")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                max_n: int = 4) -> float:
  """Character-level corpus BLEU-4 against every reference of each image (Papineni et al.).

  n-gram counts are clipped by their maximum count in any one reference; the brevity
  penalty uses, per image, the reference length closest to the hypothesis's (ties: the shorter).

  Args:
    hypotheses: one caption per image.
    references: per image, its reference captions (at least one).
    max_n: longest n-gram; precisions of orders 1..max_n are averaged geometrically.

  Returns:
    BLEU in [0, 1]; 0 when some order has no match.
  """
  return _ReferenceNgrams(_References(references), max_n).bleu(hypotheses)


class ConstantCaptionScorer:
  """Scores a caption said for every image, against references counted once.

  After the one-off counting, `bleu(c)` costs about O(len(c) * max_n) look-ups and `cer(c)` one
  bit-parallel pass over the distinct references, instead of recounting every reference.

  Attributes:
    num_images: how many images the references describe.
  """

  def __init__(self, references: Sequence[Sequence[str]], max_n: int = 4):
    """Encodes the references; the n-gram tables and distinct references are built on first use.

    Args:
      references: per image, its reference captions (at least one).
      max_n: longest n-gram for `bleu`.
    """
    if max_n < 1:
      raise ValueError(f"max_n must be at least 1, got {max_n}")
    self._references = _References(references)
    self._max_n = max_n
    self.num_images = self._references.num_images

  @functools.cached_property
  def _ngrams(self) -> _ReferenceNgrams:
    return _ReferenceNgrams(self._references, self._max_n)

  def bleu(self, candidate: str) -> float:
    """corpus_bleu([candidate] * num_images, references, max_n), from the precomputed counts."""
    return self._ngrams.constant_bleu(candidate)

  def error_rates(self, candidate: str) -> np.ndarray:
    """character_error_rates([candidate] * num_images, references)."""
    return self._references.constant_error_rates(candidate)

  def cer(self, candidate: str) -> float:
    """character_error_rate([candidate] * num_images, references)."""
    rates = self.error_rates(candidate)
    return float(np.mean(rates)) if len(rates) else float("nan")


def best_constant_caption(candidates: Sequence[str],
                          references: Sequence[Sequence[str]]) -> tuple[str, float]:
  """The one candidate caption that, said for every image, scores the best BLEU-4.

  Ties go to the candidate that sorts last (`max((score, caption))`).

  Returns:
    (caption, its BLEU-4).
  """
  scorer = ConstantCaptionScorer(references)
  score, caption = max((scorer.bleu(c), c) for c in candidates)
  return caption, score


def best_constant_caption_by_cer(candidates: Sequence[str],
                                 references: Sequence[Sequence[str]]) -> tuple[str, float]:
  """The one candidate caption that, said for every image, has the lowest CER.

  This is the CER a captioner must beat; ties go to the candidate that sorts first.

  Returns:
    (caption, its CER).
  """
  scorer = ConstantCaptionScorer(references)
  score, caption = min((scorer.cer(c), c) for c in candidates)
  return caption, score


def _bleu(matches: Sequence[int], totals: Sequence[int], hyp_length: int, ref_length: int) -> float:
  """BLEU from integer counts, computed exactly as the per-image definition does."""
  if hyp_length == 0 or min(matches) == 0:
    return 0.0
  log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / len(matches)
  brevity = 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)
  return float(brevity * math.exp(log_precision))


def _lookup(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
  """Position of each value in sorted_keys, or -1 where absent."""
  if not len(sorted_keys):
    return np.full(np.shape(values), -1, np.int64)
  positions = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
  return np.where(sorted_keys[positions] == values, positions, -1)


def _code_points(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """(code points of all strings concatenated, each string's length)."""
  lengths = np.fromiter(map(len, strings), np.int64, count=len(strings))
  # UTF-32 has one 4-byte unit per code point, so it lines up with Python's len().
  joined = "".join(strings).encode("utf-32-le", "surrogatepass")
  return np.frombuffer(joined, np.uint32).astype(np.int64), lengths


def _alphabet(code_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(the distinct code points, sorted; each code point's index among them)."""
  if not len(code_points):
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  seen = np.bincount(code_points)  # Sized by the largest code point, at most 0x10FFFF.
  alphabet = np.flatnonzero(seen)
  index = np.zeros(len(seen), np.int64)
  index[alphabet] = np.arange(len(alphabet))
  return alphabet, index[code_points]


def _pad(flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Rows of `flat` cut at `lengths`, right-padded with -1 to the longest: [len(lengths), max]."""
  out = np.full((len(lengths), int(lengths.max(initial=0))), -1, np.int64)
  starts = np.cumsum(lengths) - lengths
  rows = np.repeat(np.arange(len(lengths)), lengths)
  out[rows, np.arange(len(flat)) - np.repeat(starts, lengths)] = flat
  return out


class _References:
  """Every image's references as one padded matrix of alphabet indices, with their image."""

  def __init__(self, references: Sequence[Sequence[str]]):
    counts = np.fromiter(map(len, references), np.int64, count=len(references))
    if np.any(counts == 0):
      raise ValueError(f"image {int(np.argmin(counts))} has no reference caption")
    self.num_images = len(references)
    self.flat = [r for refs in references for r in refs]
    code_points, self.lengths = _code_points(self.flat)
    self.alphabet, indices = _alphabet(code_points)
    self.codes = _pad(indices, self.lengths)
    self.image_of = np.repeat(np.arange(self.num_images), counts)
    self.starts = np.cumsum(counts) - counts
    self.slot = np.arange(len(self.flat)) - self.starts[self.image_of]  # Place among its image's.
    # [images, most references] lengths, -1 where an image has fewer.
    self.length_matrix = np.full((self.num_images, int(counts.max(initial=0))), -1, np.int64)
    self.length_matrix[self.image_of, self.slot] = self.lengths

  def encode(self, strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(alphabet indices, -1 for padding and for characters no reference has; lengths)."""
    code_points, lengths = _code_points(strings)
    return _pad(_lookup(self.alphabet, code_points), lengths), lengths

  def check_aligned(self, hypotheses: Sequence[str]) -> None:
    """Refuses a hypothesis list that is not one per image (zip would silently drop some)."""
    if len(hypotheses) != self.num_images:
      raise ValueError(f"{len(hypotheses)} hypotheses for {self.num_images} images")

  def closest_lengths(self, hyp_lengths: np.ndarray) -> np.ndarray:
    """Per image, its reference length closest to the hypothesis's; ties go to the shorter."""
    base = int(self.lengths.max(initial=0)) + 1
    key = np.abs(self.length_matrix - hyp_lengths[:, None]) * base + self.length_matrix
    key[self.length_matrix < 0] = np.iinfo(np.int64).max
    return key.min(axis=1, initial=np.iinfo(np.int64).max) % base

  def per_image_min_rate(self, distances: np.ndarray) -> np.ndarray:
    """Per image: min over its references of distance / max(1, reference length)."""
    rates = distances / np.maximum(1, self.lengths)
    return np.minimum.reduceat(rates, self.starts) if self.num_images else rates

  def error_rates(self, hypotheses: Sequence[str]) -> np.ndarray:
    """character_error_rates of one hypothesis per image."""
    self.check_aligned(hypotheses)
    codes, lengths = self.encode(hypotheses)
    distances = _pair_distances(codes, lengths, self.image_of, self.codes, self.lengths)
    return self.per_image_min_rate(distances)

  @functools.cached_property
  def _distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes [longest, distinct] transposed, lengths descending, each reference's index there)."""
    first: dict[str, int] = {}
    which = np.fromiter((first.setdefault(r, i) for i, r in enumerate(self.flat)), np.int64,
                        count=len(self.flat))
    distinct = np.fromiter(first.values(), np.int64, count=len(first))
    # Longest first, so that the references still running at text position j are a prefix.
    distinct = distinct[np.argsort(-self.lengths[distinct], kind="stable")]
    rank = np.empty(len(self.flat), np.int64)
    rank[distinct] = np.arange(len(distinct))
    return (np.ascontiguousarray(self.codes[distinct].T), self.lengths[distinct], rank[which])

  def constant_error_rates(self, candidate: str) -> np.ndarray:
    """error_rates([candidate] * num_images), computed once per distinct reference."""
    codes_t, lengths, index = self._distinct
    candidate_codes, _ = self.encode([candidate])
    count = len(lengths)
    if len(candidate) <= _WORD_BITS:
      word = _word(len(candidate))
      masks = np.zeros(len(self.alphabet) + 1, word)  # The last entry, for -1, stays 0.
      for i, c in enumerate(candidate_codes[0]):
        if c >= 0:
          masks[c] |= word(1 << i)
      distances = _bit_parallel_distances(
          functools.partial(_gather_masks, masks, codes_t),
          np.full(count, len(candidate), np.int64), lengths, word)
    else:
      distances = _pair_distances(candidate_codes, np.array([len(candidate)]),
                                  np.zeros(count, np.int64), codes_t.T, lengths)
    return self.per_image_min_rate(distances[index])


def _gather_masks(masks: np.ndarray, slots_t: np.ndarray, j: int, n: int) -> np.ndarray:
  """Match masks of text position j for the first n texts: masks at slots_t[j, :n]."""
  return masks[slots_t[j, :n]]


def _word(longest_pattern: int) -> type:
  """The narrowest unsigned integer type with a bit per pattern character (less memory traffic)."""
  return np.uint32 if longest_pattern <= 32 else np.uint64


def _bit_parallel_distances(match_masks: Callable[[int, int], np.ndarray],
                            pattern_lengths: np.ndarray, text_lengths: np.ndarray,
                            word: type) -> np.ndarray:
  """Levenshtein distances of many (pattern, text) pairs, one text character per numpy step.

  Myers' bit-vector algorithm in Hyyrö's form for whole-string distance: one DP column per step,
  kept as vertical deltas (bit i of positive/negative: D[i+1][j] - D[i][j] is +1/-1). Bits above
  a pattern's length hold garbage that never reaches the bits below (carries and shifts go up).
  A pair's last column then gives D[m][n] = D[0][n] + its deltas
  = n + ones(positive) - ones(negative).

  Args:
    match_masks: (j, n) -> word [n]: for pairs 0..n-1, bit i set where pattern character i
      equals text character j.
    pattern_lengths: [pairs], each at most _WORD_BITS.
    text_lengths: [pairs], in descending order (the pairs still running at j are a prefix).
    word: the unsigned integer type of the masks, as wide as the longest pattern needs.

  Returns:
    int64 distances [pairs].
  """
  pairs = len(text_lengths)
  positive = np.full(pairs, np.iinfo(word).max, word)  # Column 0: D[i][0] = i.
  negative = np.zeros(pairs, word)
  scratch = np.empty((4, pairs), word)
  one = word(1)
  longest = int(text_lengths[0]) if pairs else 0
  running = np.searchsorted(-text_lengths, -np.arange(longest), side="left")
  for j, n in enumerate(running):
    eq, pv, mv = match_masks(j, n), positive[:n], negative[:n]
    xv, xh, ph, mh = scratch[0, :n], scratch[1, :n], scratch[2, :n], scratch[3, :n]
    # In place, to spare allocations in the hot loop, of:
    #   xv = eq | mv;  xh = (((eq & pv) + pv) ^ pv) | eq;  ph = mv | ~(xh | pv);  mh = pv & xh
    #   ph = ph << 1 | 1 (row 0 grows by one per column: D[0][j] = j);  mh <<= 1
    #   pv = mh | ~(xv | ph);  mv = ph & xv
    np.bitwise_or(eq, mv, out=xv)
    np.bitwise_and(eq, pv, out=xh)
    np.add(xh, pv, out=xh)
    np.bitwise_xor(xh, pv, out=xh)
    np.bitwise_or(xh, eq, out=xh)
    np.bitwise_or(xh, pv, out=ph)
    np.invert(ph, out=ph)
    np.bitwise_or(ph, mv, out=ph)
    np.bitwise_and(pv, xh, out=mh)
    np.left_shift(ph, one, out=ph)
    np.bitwise_or(ph, one, out=ph)
    np.left_shift(mh, one, out=mh)
    np.bitwise_and(ph, xv, out=mv)
    np.bitwise_or(xv, ph, out=xv)
    np.invert(xv, out=xv)
    np.bitwise_or(mh, xv, out=pv)
  # Pattern rows only: (1 << m) - 1, computed so that m = the word's width gives all ones.
  bits = np.iinfo(word).bits
  rows = np.where(pattern_lengths > 0, np.iinfo(word).max >> (
      bits - np.maximum(pattern_lengths, 1)).astype(word), 0).astype(word)
  return (text_lengths + np.bitwise_count(positive & rows).astype(np.int64)
          - np.bitwise_count(negative & rows).astype(np.int64))


def _bit_parallel_pairs(patterns: np.ndarray, pattern_lengths: np.ndarray,
                        pattern_of: np.ndarray, text: np.ndarray,
                        text_lengths: np.ndarray) -> np.ndarray:
  """Distances of (patterns[pattern_of[k]], text[k]): padded alphabet-index rows, patterns <= 64.

  Pairs share a pattern's match-mask table (an image's hypothesis against its references).
  """
  symbols = int(max(patterns.max(initial=-1), text.max(initial=-1))) + 1
  # One row of `symbols + 1` masks per pattern; the last, where -1 (padding, unknown) goes, stays 0.
  columns = symbols + 1
  chunk = max(1, _CHUNK_CELLS // columns)
  word = _word(int(pattern_lengths[pattern_of].max(initial=0)))
  out = np.empty(len(pattern_of), np.int64)
  for start in range(0, len(patterns), chunk):
    part = patterns[start:start + chunk]
    pairs = (np.arange(len(pattern_of)) if len(part) == len(patterns) else
             np.flatnonzero((pattern_of >= start) & (pattern_of < start + chunk)))
    pairs = pairs[np.argsort(-text_lengths[pairs], kind="stable")]
    base = np.arange(len(part)) * columns
    # Flat [patterns * columns]: bit i of (pattern, symbol) set where it has the symbol at i.
    slots = np.ascontiguousarray((base[:, None] + np.where(part >= 0, part, symbols)).T)
    table = np.zeros(len(part) * columns, word)
    for i, slot in enumerate(slots[:np.iinfo(word).bits]):
      table[slot] |= word(1 << i)
    table[symbols::columns] = 0
    pair_text = text[pairs]
    text_slots = np.ascontiguousarray(
        (base[pattern_of[pairs] - start, None] + np.where(pair_text >= 0, pair_text, symbols)).T)
    out[pairs] = _bit_parallel_distances(functools.partial(_gather_masks, table, text_slots),
                                         pattern_lengths[pattern_of[pairs]], text_lengths[pairs],
                                         word)
  return out


def _dp_distances(a: np.ndarray, a_lengths: np.ndarray, b: np.ndarray,
                  b_lengths: np.ndarray) -> np.ndarray:
  """Distances of pairs of padded alphabet-index rows, one DP row per step over all pairs."""
  out = np.empty(len(a_lengths), np.int64)
  columns = np.arange(b.shape[1] + 1)
  chunk = max(1, _CHUNK_CELLS // len(columns))
  for start in range(0, len(out), chunk):
    part = slice(start, start + chunk)
    a_part, a_len, b_part, b_len = a[part], a_lengths[part], b[part], b_lengths[part]
    previous = np.tile(columns, (len(a_len), 1))
    result = b_len.copy()  # Right for empty a; the others are set when their last row is done.
    for i in range(1, int(a_len.max(initial=0)) + 1):
      current = np.empty_like(previous)
      current[:, 0] = i
      np.minimum(previous[:, :-1] + (a_part[:, i - 1, None] != b_part), previous[:, 1:] + 1,
                 out=current[:, 1:])
      # Insertions chain along the row: D[i][j] = min over k <= j of (current[k] + j - k).
      current = np.minimum.accumulate(current - columns, axis=1) + columns
      done = np.flatnonzero(a_len == i)
      result[done] = current[done, b_len[done]]
      previous = current
    out[part] = result
  return out


def _pair_distances(a: np.ndarray, a_lengths: np.ndarray, a_of: np.ndarray, b: np.ndarray,
                    b_lengths: np.ndarray) -> np.ndarray:
  """Levenshtein distance of each pair (a[a_of[k]], b[k]) of padded alphabet-index rows.

  Args:
    a: [strings, width] alphabet indices, -1 past each string's length; a_lengths: [strings].
    a_of: [pairs], which row of a each pair uses.
    b: [pairs, width] alphabet indices; b_lengths: [pairs].

  Returns:
    int64 distances [pairs].
  """
  out = np.empty(len(b_lengths), np.int64)
  # The distance is symmetric: whichever string fits a machine word is the pattern.
  a_short = a_lengths[a_of] <= _WORD_BITS
  if a_short.all():
    return _bit_parallel_pairs(a, a_lengths, a_of, b, b_lengths)
  if a_short.any():
    out[a_short] = _bit_parallel_pairs(a, a_lengths, a_of[a_short], b[a_short], b_lengths[a_short])
  b_short = np.flatnonzero(~a_short & (b_lengths <= _WORD_BITS))
  if len(b_short):
    out[b_short] = _bit_parallel_pairs(b[b_short], b_lengths[b_short], np.arange(len(b_short)),
                                       a[a_of[b_short]], a_lengths[a_of[b_short]])
  long = np.flatnonzero(~a_short & (b_lengths > _WORD_BITS))
  if len(long):
    out[long] = _dp_distances(a[a_of[long]], a_lengths[a_of[long]], b[long], b_lengths[long])
  return out


class _NgramLevel:
  """The references' n-grams of one order.

  Attributes:
    keys: sorted n-gram keys ((n-1)-gram id * alphabet size + last character); an n-gram's id is
      its position here.
    image_grams: sorted image * len(keys) + id, one per (image, n-gram) present.
    max_counts: for each of image_grams, the n-gram's largest count in one of the image's
      references.
  """

  def __init__(self, keys: np.ndarray, image_grams: np.ndarray, max_counts: np.ndarray):
    self.keys, self.image_grams, self.max_counts = keys, image_grams, max_counts

  @functools.cached_property
  def clipped_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(deepest, offsets, sums): sums[offsets[g] + k - 1] = sum over images of min(k, g's max).

    That is the clipped match count of n-gram g said k times in every image, for k <= deepest[g]
    (the largest of its per-image max counts); more than deepest[g] times matches no more.
    """
    grams = self.image_grams % max(1, len(self.keys))
    deepest = np.zeros(len(self.keys), np.int64)
    np.maximum.at(deepest, grams, self.max_counts)
    offsets = np.concatenate([[0], np.cumsum(deepest)])
    block = np.repeat(np.arange(len(self.keys)), deepest)
    exactly = np.bincount(offsets[grams] + self.max_counts - 1, minlength=offsets[-1])
    # Images whose max count is at least k: suffix sums within each n-gram's block.
    suffix = np.concatenate([np.cumsum(exactly[::-1])[::-1], [0]])
    at_least = suffix[:-1] - suffix[offsets[block + 1]]
    prefix = np.concatenate([[0], np.cumsum(at_least)])
    return deepest, offsets, prefix[1:] - prefix[offsets[block]]


class _ReferenceNgrams:
  """Per image, each reference n-gram's largest count in any one reference (orders 1..max_n)."""

  def __init__(self, references: _References, max_n: int):
    if max_n < 1:
      raise ValueError(f"max_n must be at least 1, got {max_n}")
    self.references = references
    self.max_n = max_n
    self.levels = []
    self._ref_length_cache: dict[int, int] = {}
    symbols = len(references.alphabet)
    codes, lengths = references.codes, references.lengths
    slots = references.length_matrix.shape[1]
    ids = codes
    for n in range(1, max_n + 1):
      width = max(0, codes.shape[1] - n + 1)
      keys_matrix = codes[:, :width] if n == 1 else ids[:, :width] * symbols + codes[:, n - 1:]
      present = np.arange(width) < (lengths - n + 1)[:, None]
      keys, present_ids = np.unique(keys_matrix[present], return_inverse=True)
      ids = np.full(keys_matrix.shape, -1, np.int64)
      ids[present] = present_ids
      # One sort by (image, n-gram, reference): runs count an n-gram in one reference, and
      # runs of the (image, n-gram) prefix take the largest of those counts.
      rows = np.nonzero(present)[0]
      per_reference, counts = np.unique(
          (references.image_of[rows] * len(keys) + present_ids) * slots + references.slot[rows],
          return_counts=True)
      image_grams = per_reference // slots
      firsts = np.flatnonzero(np.diff(image_grams, prepend=-1))
      max_counts = np.maximum.reduceat(counts, firsts) if len(firsts) else counts
      self.levels.append(_NgramLevel(keys, image_grams[firsts], max_counts))

  def gram_ids(self, codes: np.ndarray, lengths: np.ndarray):
    """Yields (n, ids): ids[s, p] is the id of string s's n-gram at p, -1 if no reference has it."""
    symbols = len(self.references.alphabet)
    ids = codes
    for n, level in enumerate(self.levels, 1):
      width = max(0, codes.shape[1] - n + 1)
      last = codes[:, n - 1:n - 1 + width]
      if n == 1:
        keys_matrix, known = last, last >= 0
      else:
        keys_matrix = ids[:, :width] * symbols + last
        known = (ids[:, :width] >= 0) & (last >= 0)
      known &= np.arange(width) < (lengths - n + 1)[:, None]
      ids = np.full(keys_matrix.shape, -1, np.int64)
      ids[known] = _lookup(level.keys, keys_matrix[known])
      yield n, ids

  def bleu(self, hypotheses: Sequence[str]) -> float:
    """corpus_bleu of one hypothesis per image."""
    self.references.check_aligned(hypotheses)
    codes, lengths = self.references.encode(hypotheses)
    matches = []
    for n, ids in self.gram_ids(codes, lengths):
      level = self.levels[n - 1]
      found = ids >= 0
      image_grams, counts = np.unique(np.nonzero(found)[0] * len(level.keys) + ids[found],
                                      return_counts=True)
      where = _lookup(level.image_grams, image_grams)
      counts[where < 0] = 0
      counts[where >= 0] = np.minimum(counts[where >= 0], level.max_counts[where[where >= 0]])
      matches.append(int(counts.sum()))
    totals = [int(np.maximum(0, lengths - n + 1).sum()) for n in range(1, self.max_n + 1)]
    ref_length = int(self.references.closest_lengths(lengths).sum())
    return _bleu(matches, totals, int(lengths.sum()), ref_length)

  def _constant_ref_length(self, length: int) -> int:
    """Sum over images of the reference length closest to `length`, computed once per length."""
    if length not in self._ref_length_cache:
      hyp_lengths = np.full(self.references.num_images, length, np.int64)
      self._ref_length_cache[length] = int(self.references.closest_lengths(hyp_lengths).sum())
    return self._ref_length_cache[length]

  def constant_bleu(self, candidate: str) -> float:
    """bleu([candidate] * images): each n-gram's clipped matches over all images, looked up."""
    codes, lengths = self.references.encode([candidate])
    matches = []
    for n, ids in self.gram_ids(codes, lengths):
      grams, counts = np.unique(ids[ids >= 0], return_counts=True)
      deepest, offsets, sums = self.levels[n - 1].clipped_sums
      matches.append(int(sums[offsets[grams] + np.minimum(counts, deepest[grams]) - 1].sum()))
    images, length = self.references.num_images, len(candidate)
    totals = [images * max(0, length - n + 1) for n in range(1, self.max_n + 1)]
    return _bleu(matches, totals, images * length, self._constant_ref_length(length))
