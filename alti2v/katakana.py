"""Japanese text (kanji, hiragana, katakana, ASCII, full/half width) → katakana readings, words spaced.

Each word is read in context by MeCab (fugashi with the unidic-lite dictionary: `pip install
-e '.[caption]'`); jaconv normalises widths first. Numbers with counters are read as people
read them (2人 → フタリ, 一匹 → イッピキ, 3本 → サンボン), which the analyser alone does not do
(it gives 2ニン, イチヒキ): the rules are here, with tests. Punctuation is dropped.

  to_katakana("赤い丸と青い四角")  →  "アカイ マル ト アオイ シカク"
"""
from __future__ import annotations

import os
import re
import threading
from typing import Optional

_DIGITS = "ゼロ イチ ニ サン ヨン ゴ ロク ナナ ハチ キュウ".split()
_KANJI_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6,
                 "七": 7, "八": 8, "九": 9}
_KANJI_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}

# Counter → (regular reading, {last digit: whole reading of that digit + counter}).
# Digits not listed read as _DIGITS[d] + the regular reading.
_COUNTERS = {
    "人": ("ニン", {1: "ヒトリ", 2: "フタリ", 4: "ヨニン"}),
    "匹": ("ヒキ", {1: "イッピキ", 3: "サンビキ", 6: "ロッピキ", 8: "ハッピキ", 10: "ジュッピキ"}),
    "本": ("ホン", {1: "イッポン", 3: "サンボン", 6: "ロッポン", 8: "ハッポン", 10: "ジュッポン"}),
    "個": ("コ", {1: "イッコ", 6: "ロッコ", 8: "ハッコ", 10: "ジュッコ"}),
    "頭": ("トウ", {1: "イットウ", 8: "ハットウ", 10: "ジュットウ"}),
    "羽": ("ワ", {3: "サンバ", 6: "ロッパ", 8: "ハッパ", 10: "ジュッパ"}),
    "杯": ("ハイ", {1: "イッパイ", 3: "サンバイ", 6: "ロッパイ", 8: "ハッパイ", 10: "ジュッパイ"}),
    "枚": ("マイ", {}),
    "台": ("ダイ", {}),
    "歳": ("サイ", {1: "イッサイ", 8: "ハッサイ", 10: "ジュッサイ"}),
    "匹目": ("ヒキメ", {}),
}
_COUNTER_ALIASES = {"ひき": "匹", "ぴき": "匹", "びき": "匹", "ほん": "本", "ぼん": "本",
                    "ぽん": "本", "にん": "人", "こ": "個", "コ": "個", "ケ": "個"}


def read_number(n: int) -> str:
  """A number read aloud in katakana (0 ≤ n < 10^8): 21 → ニジュウイチ, 300 → サンビャク."""
  if n == 0:
    return _DIGITS[0]
  parts = []
  man, rest = divmod(n, 10000)
  if man:
    parts.append(read_number(man) + "マン")
  thousands, rest = divmod(rest, 1000)
  if thousands:
    parts.append({1: "セン", 3: "サンゼン", 8: "ハッセン"}.get(
        thousands, _DIGITS[thousands] + "セン"))
  hundreds, rest = divmod(rest, 100)
  if hundreds:
    parts.append({1: "ヒャク", 3: "サンビャク", 6: "ロッピャク", 8: "ハッピャク"}.get(
        hundreds, _DIGITS[hundreds] + "ヒャク"))
  tens, ones = divmod(rest, 10)
  if tens:
    parts.append(("" if tens == 1 else _DIGITS[tens]) + "ジュウ")
  if ones:
    parts.append(_DIGITS[ones])
  return "".join(parts)


def read_counted(n: int, counter: str) -> Optional[str]:
  """n + counter read with its sound changes (3本 → サンボン); None for an unknown counter."""
  counter = _COUNTER_ALIASES.get(counter, counter)
  if counter not in _COUNTERS:
    return None
  regular, special = _COUNTERS[counter]
  if n in special:
    return special[n]
  if n > 10 and counter != "人":
    if n % 10 and n % 10 in special:  # 11本 → ジュウ + イッポン
      return read_number(n - n % 10) + special[n % 10]
    if not n % 10 and n % 100 and 10 in special:  # 20本 → ニ + ジュッポン
      tens = (n % 100) // 10
      head = read_number(n - n % 100) if n >= 100 else ""
      return head + ("" if tens == 1 else _DIGITS[tens]) + special[10]
  if counter == "人" and n > 10 and n % 10 == 4:
    return read_number(n - 4) + "ヨニン"
  return read_number(n) + regular


def parse_number(text: str) -> Optional[int]:
  """"12", "１２" or "十二" → 12; None if text is not a number."""
  if text.isdigit():
    return int(text)
  if not text or any(c not in _KANJI_DIGITS and c not in _KANJI_UNITS for c in text):
    return None
  total, section, digit = 0, 0, None
  for c in text:
    if c in _KANJI_DIGITS:
      digit = (digit or 0) * 10 + _KANJI_DIGITS[c] if digit is not None else _KANJI_DIGITS[c]
    else:
      unit = _KANJI_UNITS[c]
      if unit == 10000:
        total += (section + (digit or 0)) * unit
        section = 0
      else:
        section += (digit if digit is not None else 1) * unit
      digit = None
  return total + section + (digit or 0)


class _Analyzer(threading.local):
  """One MeCab tagger per thread (the tagger is not thread-safe)."""

  def __init__(self):
    super().__init__()
    import fugashi  # pylint: disable=import-outside-toplevel
    import unidic_lite  # pylint: disable=import-outside-toplevel
    # Name unidic-lite's dictionary: a bare Tagger() picks the `unidic` package first when
    # it is installed, and that one is only a downloader (it fails without its download).
    dicdir = unidic_lite.DICDIR
    self.tagger = fugashi.Tagger(
        f'-d "{dicdir}" -r "{os.path.join(dicdir, "mecabrc")}"')


_ANALYZER: Optional[_Analyzer] = None
_LOCK = threading.Lock()


def _tagger():
  global _ANALYZER  # pylint: disable=global-statement
  with _LOCK:
    if _ANALYZER is None:
      try:
        _ANALYZER = _Analyzer()
      except ImportError as e:
        raise ImportError("katakana conversion needs MeCab and its dictionary: "
                          "pip install -e '.[caption]' (fugashi, unidic-lite, jaconv)") from e
  return _ANALYZER.tagger


def _word_reading(word) -> str:
  import jaconv  # pylint: disable=import-outside-toplevel
  kana = getattr(word.feature, "kana", None)
  if kana and kana != "*":
    return kana
  surface = word.surface
  if re.fullmatch(r"[\u3041-\u309f\u30a0-\u30ffー]+", surface):
    return jaconv.hira2kata(surface)
  return surface  # Latin letters and the like: left as they are (unknown to the vocabulary).


# Parts of speech written together with the word before them.
_ATTACHED = ("接尾辞", "助動詞")


def to_katakana(text: str) -> str:
  """Katakana reading of Japanese text, one space between words, punctuation dropped."""
  import jaconv  # pylint: disable=import-outside-toplevel
  words = list(_tagger()(jaconv.normalize(text)))
  out = []
  i = 0
  while i < len(words):
    word = words[i]
    pos = word.pos.split(",")
    if pos[0] in ("補助記号", "空白", "記号"):
      i += 1
      continue
    if pos[1] == "数詞":
      # Join the numeral's tokens ("2", "0" or "二", "十").
      j = i
      while j < len(words) and words[j].pos.split(",")[1] == "数詞":
        j += 1
      number = parse_number("".join(w.surface for w in words[i:j]))
      if number is not None:
        counted = read_counted(number, words[j].surface) if j < len(words) else None
        if counted is not None:
          out.append(counted)
          i = j + 1
          continue
        suffixed = j < len(words) and words[j].pos.startswith("接尾辞")
        if not suffixed:  # A bare number: 2 → ニ, 三十三 → サンジュウサン.
          out.append(read_number(number))
          i = j
          continue
    reading = _word_reading(word)
    if out and pos[0] in _ATTACHED:
      out[-1] += reading  # 二つ → フタツ, 書かれた → カカレタ: no space inside a word.
    else:
      out.append(reading)
    i += 1
  return jaconv.hira2kata(" ".join(r for r in out if r))
