"""alti2v.metrics by hand: AP, F1, thresholds, ROC-AUC; the vectorised text metrics against plain Python."""
import collections
import math
import random

import numpy as np
import pytest

from alti2v import metrics

KATAKANA = "".join(chr(c) for c in range(ord("ァ"), ord("ン") + 1))
# Tiny alphabets make repeated n-grams (clipping); "😀" is outside the BMP.
ALPHABETS = ("ab", "アイウ", "abc😀", KATAKANA)


def test_average_precision_by_hand():
  # ranks: 0.9 pos (P=1, R=.5), 0.8 neg, 0.3 pos (P=2/3, R=1) → .5*1 + .5*2/3
  assert metrics.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(5 / 6)
  assert metrics.average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
  # A constant score is one threshold: AP = the positive rate.
  assert metrics.average_precision([1, 0, 1, 0], [0.3] * 4) == pytest.approx(0.5)
  # Ties: 0.5 holds one positive and one negative → P=1/2 at R=1/2; then 0.2 pos → P=2/3.
  assert metrics.average_precision([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(
      0.5 * 0.5 + 0.5 * 2 / 3)
  assert np.isnan(metrics.average_precision([0, 0], [0.1, 0.2]))


def test_mean_average_precision_skips_tags_without_positives():
  labels = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1]])
  scores = np.array([[0.9, 0.1, 0.2], [0.2, 0.3, 0.9], [0.8, 0.2, 0.1]])
  map_, aps = metrics.mean_average_precision(labels, scores)
  # tag 0: perfect (1.0); tag 1: no positive; tag 2: 0.9 pos (P=1), 0.2 neg, 0.1 pos (P=2/3)
  assert np.isnan(aps[1])
  assert aps[2] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  assert map_ == pytest.approx((1.0 + aps[2]) / 2)


def test_best_f1_threshold_by_hand():
  # thresholds 0.9: F1 2/3; 0.7: 1/2; 0.6: tp 2, predicted 3 → 4/5; 0.1: 4/6
  threshold, f1 = metrics.best_f1_threshold([1, 1, 0, 0], [0.9, 0.6, 0.7, 0.1])
  assert threshold == pytest.approx(0.6) and f1 == pytest.approx(0.8)


def test_rare_tags_get_the_floor():
  labels = np.array([[1, 1], [0, 1], [0, 1], [0, 1], [0, 1], [0, 0]])
  scores = np.array([[0.2, 0.4], [0.1, 0.45], [0.1, 0.5], [0.1, 0.6], [0.1, 0.7], [0.1, 0.1]])
  thresholds = metrics.calibrate_thresholds(labels, scores, min_support=5, rare_floor=0.5)
  # tag 0: one positive, best-F1 threshold 0.2, floored to 0.5; tag 1: 5 positives, 0.4 kept.
  assert thresholds == pytest.approx([0.5, 0.4])


def test_micro_and_macro_f1_by_hand():
  labels = np.array([[1, 0], [1, 1], [0, 1]])
  scores = np.array([[0.9, 0.6], [0.2, 0.8], [0.1, 0.3]])
  result = metrics.f1_at(labels, scores, np.array([0.5, 0.5]))
  # tag 0: tp 1, fn 1 → F1 2/3; tag 1: tp 1, fp 1, fn 1 → F1 1/2; micro: tp 2, fp 1, fn 2 → 4/7
  assert result["f1"] == pytest.approx([2 / 3, 0.5])
  assert result["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
  assert result["micro_f1"] == pytest.approx(4 / 7)


LABELS = [1, 1, 0, 1, 0, 0]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2]


@pytest.mark.parametrize("goal, threshold, precision, recall", [
    ({}, 0.6, 0.75, 1.0),                               # max F1: 6/7 at 0.6
    ({"target_precision": 0.75}, 0.6, 0.75, 1.0),       # lowest threshold with P >= .75
    ({"target_precision": 0.9}, 0.8, 1.0, 2 / 3),
    ({"target_recall": 0.6}, 0.8, 1.0, 2 / 3),          # highest threshold with R >= .6
    ({"target_recall": 1.0}, 0.6, 0.75, 1.0),
])
def test_threshold_for_a_goal_by_hand(goal, threshold, precision, recall):
  chosen = metrics.choose_threshold(LABELS, SCORES, **goal)
  assert chosen["threshold"] == pytest.approx(threshold)
  assert chosen["precision"] == pytest.approx(precision)
  assert chosen["recall"] == pytest.approx(recall)


def test_roc_auc_and_confusion_by_hand():
  assert metrics.roc_auc(LABELS, SCORES) == pytest.approx(8 / 9)
  assert metrics.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
  assert metrics.confusion_matrix(LABELS, SCORES, 0.6) == {
      "true_positive": 3, "false_positive": 1, "false_negative": 0, "true_negative": 2}
  with pytest.raises(ValueError, match="no threshold reaches precision"):
    metrics.choose_threshold([1, 0], [0.1, 0.9], target_precision=0.99)


def slow_edit_distance(a, b):
  """The full (len(a)+1) x (len(b)+1) Levenshtein table."""
  table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1,
                        table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
  return table[-1][-1]


def slow_error_rates(hypotheses, references):
  return np.array([min(slow_edit_distance(h, r) / max(1, len(r)) for r in refs)
                   for h, refs in zip(hypotheses, references)])


def slow_corpus_bleu(hypotheses, references, max_n=4):
  """Papineni et al. on characters: clipping by the max count in one reference, closest length."""
  matches, totals = [0] * max_n, [0] * max_n
  hyp_length = ref_length = 0
  for hyp, refs in zip(hypotheses, references):
    hyp_length += len(hyp)
    ref_length += len(min(refs, key=lambda r: (abs(len(r) - len(hyp)), len(r))))
    for n in range(1, max_n + 1):
      grams = collections.Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
      for gram, count in grams.items():
        matches[n - 1] += min(count, max(
            sum(r[i:i + n] == gram for i in range(len(r) - n + 1)) for r in refs))
      totals[n - 1] += max(0, len(hyp) - n + 1)
  if hyp_length == 0 or min(matches) == 0:
    return 0.0
  log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
  brevity = 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)
  return brevity * math.exp(log_precision)


def random_text(rng, alphabet, low, high):
  return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def random_corpus(seed, low, high, images=12):
  """(hypotheses, references): 1-4 references an image; empty strings included when low is 0."""
  rng = random.Random(seed)
  alphabet = ALPHABETS[seed % len(ALPHABETS)]
  hypotheses = [random_text(rng, alphabet, low, high) for _ in range(images)]
  # Reference alphabets lack "z" sometimes said by hypotheses, and have a character they never say.
  references = [[random_text(rng, alphabet + "Q", low, high) for _ in range(rng.randint(1, 4))]
                for _ in range(images)]
  hypotheses = [h + "z" if rng.random() < 0.2 else h for h in hypotheses]
  return hypotheses, references


# Lengths on each side of the bit-parallel word widths (32, 64) and the DP fallback (both > 64).
LENGTHS = [(0, 3), (0, 12), (20, 40), (50, 64), (60, 90), (65, 130)]


def test_edit_distance_by_hand():
  assert metrics.edit_distance("kitten", "sitting") == 3
  assert metrics.edit_distance("flaw", "lawn") == 2
  assert metrics.edit_distance("", "") == 0
  assert metrics.edit_distance("", "アイ") == 2
  assert metrics.edit_distance("カタカナ", "カタナ") == 1
  assert metrics.edit_distance("abc", "cba") == 2


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("low,high", LENGTHS)
def test_error_rates_equal_the_definition(seed, low, high):
  hypotheses, references = random_corpus(seed, low, high)
  expected = slow_error_rates(hypotheses, references)
  np.testing.assert_array_equal(metrics.character_error_rates(hypotheses, references), expected)
  assert metrics.character_error_rate(hypotheses, references) == float(np.mean(expected))


def test_error_rates_in_small_chunks_equal_the_definition(monkeypatch):
  # Forces several mask tables and DP blocks per call.
  monkeypatch.setattr(metrics, "_CHUNK_CELLS", 64)
  for low, high in LENGTHS:
    hypotheses, references = random_corpus(high, low, high, images=30)
    np.testing.assert_array_equal(metrics.character_error_rates(hypotheses, references),
                                  slow_error_rates(hypotheses, references))


def test_character_error_rate_by_hand():
  # The closer reference counts: "アイエ" (1/3) and "アイウエ" (1/4).
  assert metrics.character_error_rate(["アイウ"], [["アイエ", "アイウエ"]]) == pytest.approx(0.25)
  # An empty reference divides by 1; an empty hypothesis costs every reference character.
  assert metrics.character_error_rate(["ab", ""], [[""], ["アイ"]]) == pytest.approx((2 + 1) / 2)
  assert math.isnan(metrics.character_error_rate([], []))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("low,high", [(0, 3), (0, 12), (5, 40)])
@pytest.mark.parametrize("max_n", [1, 2, 4])
def test_corpus_bleu_equals_the_definition(seed, low, high, max_n):
  hypotheses, references = random_corpus(seed, low, high)
  assert metrics.corpus_bleu(hypotheses, references, max_n) == pytest.approx(
      slow_corpus_bleu(hypotheses, references, max_n), rel=1e-12)


def test_corpus_bleu_by_hand():
  assert metrics.corpus_bleu(["アイウエオカ"], [["アイウエオカ"]]) == pytest.approx(1.0)
  assert metrics.corpus_bleu(["アイウエ"], [["カキクケ"]]) == 0.0
  # Every n-gram matches but no 4-gram exists in the reference order: 0.
  assert metrics.corpus_bleu(["アイウエ"], [["アイウ", "ウエ"]]) == 0.0
  # 5 characters against 6: all n-grams match, brevity exp(1 - 6/5).
  assert metrics.corpus_bleu(["アイウエオ"], [["アイウエオカ"]]) == pytest.approx(np.exp(1 - 6 / 5))
  # Length ties go to the shorter reference: 4 against 3 and 5 → 3, no penalty.
  assert metrics.corpus_bleu(["アイウエ"], [["アイウエカ", "アイウ"]]) == pytest.approx(1.0)
  # Clipping: "アアアア" against "アア": unigrams 2/4, bigrams 1/3, trigrams 0 → 0.
  assert metrics.corpus_bleu(["アアアア"], [["アア"]]) == 0.0
  assert metrics.corpus_bleu(["アア"], [["アアア"]], max_n=2) == pytest.approx(np.exp(1 - 3 / 2))
  assert metrics.corpus_bleu(["", ""], [["ア"], ["イ"]]) == 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("low,high", [(0, 3), (0, 12), (5, 40), (30, 80)])
def test_constant_caption_scorer_equals_the_definition(seed, low, high):
  hypotheses, references = random_corpus(seed, low, high, images=10)
  rng = random.Random(seed)
  # The corpus's own strings (many shared n-grams), an empty one, unknown characters,
  # and captions longer than a machine word.
  candidates = (hypotheses[:4] + [r for refs in references[:3] for r in refs] +
                ["", "zzz", random_text(rng, KATAKANA, 70, 90), references[0][0] * 2])
  scorer = metrics.ConstantCaptionScorer(references)
  for candidate in candidates:
    said = [candidate] * len(references)
    assert scorer.bleu(candidate) == pytest.approx(
        slow_corpus_bleu(said, references), rel=1e-12), candidate
    np.testing.assert_array_equal(scorer.error_rates(candidate),
                                  slow_error_rates(said, references))
    assert scorer.cer(candidate) == pytest.approx(np.mean(slow_error_rates(said, references)))


def test_constant_caption_scorer_counts_duplicate_references_once_each():
  references = [["アイ", "アイ", "ウ"], ["アイ"], ["ウウ", "アイ"]]
  scorer = metrics.ConstantCaptionScorer(references)
  np.testing.assert_array_equal(scorer.error_rates("アイ"), [0.0, 0.0, 0.0])
  np.testing.assert_array_equal(scorer.error_rates("ウ"), [0.0, 1.0, 0.5])
  assert scorer.bleu("アイ") == pytest.approx(slow_corpus_bleu(["アイ"] * 3, references, 4))


def test_best_constant_captions():
  references = [["アイウエオ"], ["アイウエオ"], ["カキクケコ"]]
  caption, score = metrics.best_constant_caption(["アイウエオ", "カキクケコ"], references)
  assert caption == "アイウエオ" and score == pytest.approx(
      slow_corpus_bleu(["アイウエオ"] * 3, references))
  caption, cer = metrics.best_constant_caption_by_cer(["カキクケコ", "アイウエオ", "ン"],
                                                      references)
  assert caption == "アイウエオ" and cer == pytest.approx(1 / 3)
  # Ties: BLEU keeps max((score, caption)), CER min((cer, caption)).
  assert metrics.best_constant_caption(["イ", "ア"], [["ウ"]]) == ("イ", 0.0)
  assert metrics.best_constant_caption_by_cer(["イ", "ア"], [["ウ"]]) == ("ア", 1.0)


def test_best_constant_caption_matches_scoring_each_candidate():
  hypotheses, references = random_corpus(3, 2, 9, images=40)
  candidates = hypotheses + [r for refs in references for r in refs]
  expected = max((slow_corpus_bleu([c] * len(references), references), c) for c in candidates)
  caption, score = metrics.best_constant_caption(candidates, references)
  assert caption == expected[1] and score == pytest.approx(expected[0], rel=1e-12)
  expected = min((float(np.mean(slow_error_rates([c] * len(references), references))), c)
                 for c in candidates)
  caption, cer = metrics.best_constant_caption_by_cer(candidates, references)
  assert caption == expected[1] and cer == pytest.approx(expected[0])


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match="no reference"):
    metrics.corpus_bleu(["ア"], [[]])
  with pytest.raises(ValueError, match="hypotheses for"):
    metrics.character_error_rate(["ア", "イ"], [["ア"]])
  with pytest.raises(ValueError, match="max_n"):
    metrics.corpus_bleu(["ア"], [["ア"]], max_n=0)
