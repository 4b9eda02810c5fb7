"""Japanese text (kanji, hiragana, katakana, ASCII, full/half width) → katakana readings, words spaced.

Each word is read in context by MeCab (fugashi with the unidic-lite dictionary: `pip install
-e '.[caption]'`); jaconv normalises widths first. Numbers are read here, not by the analyser
(it has no reading for digits at all): every number, with its counter or unit, comes out in
katakana as people say it (2人 → フタリ, 100本 → ヒャッポン, 1.5倍 → イッテンゴバイ, 4月 → シガツ).
The output holds only katakana, ー and single spaces: punctuation and other scripts are dropped,
Latin letters spelled (TV → ティーブイ).

  to_katakana("赤い丸と青い四角")  →  "アカイ マル ト アオイ シカク"
"""
from __future__ import annotations

import dataclasses
import os
import re
import threading
from typing import Mapping, Optional, Sequence

_DIGITS = "ゼロ イチ ニ サン ヨン ゴ ロク ナナ ハチ キュウ".split()
_KANJI_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6,
                 "七": 7, "八": 8, "九": 9}
_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG_UNITS = {"万": 10**4, "億": 10**8, "兆": 10**12}
_NUMERAL_CHARS = frozenset("0123456789") | set(_KANJI_DIGITS) | set(_SMALL_UNITS) | set(_BIG_UNITS)
_ASCII_DIGITS = re.compile(r"[0-9]+")
_THREE_DIGITS = re.compile(r"[0-9]{3}")
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


@dataclasses.dataclass(frozen=True)
class _Counter:
  """How a counter joins the number before it.

  The regular sound changes follow from the counter's first consonant (Makino & Tsutsui,
  A Dictionary of Intermediate Japanese Grammar, appendix 6): before k/s/t/h/p the last
  spoken イチ, ハチ, ジュウ become イッ, ハッ, ジュッ; before k/h/p also ロク, ヒャク become ロッ,
  ヒャッ; after that ッ an h turns into p (イッポン). What follows ン is the counter's own.

  Attributes:
    reading: the counter alone (ホン).
    after_n: its first sound after サン, セン/ゼン, マン: "b" voiced (サンボン, サンガイ, サンゾク),
      "p" (サンプン), "" unchanged (サンコ).
    after_yon: the same after ヨン: most counters keep their sound (ヨンホン), a few do not
      (ヨンプン).
    digits: another reading of a last digit 1-9 before this counter (4 → ヨ: ヨニン, ジュウヨジ).
    whole: readings of whole numbers that follow no rule (1 → ヒトリ, 20 → ハツカ).
  """
  reading: str
  after_n: str = ""
  after_yon: str = ""
  digits: Mapping[int, str] = dataclasses.field(default_factory=dict)
  whole: Mapping[int, str] = dataclasses.field(default_factory=dict)


_DAYS = {1: "ツイタチ", 2: "フツカ", 3: "ミッカ", 4: "ヨッカ", 5: "イツカ", 6: "ムイカ", 7: "ナノカ",
         8: "ヨウカ", 9: "ココノカ", 10: "トオカ", 14: "ジュウヨッカ", 20: "ハツカ", 24: "ニジュウヨッカ"}
_YO = {4: "ヨ"}
_SHICHI_KU = {7: "シチ", 9: "ク"}
_TSU = {1: "ヒトツ", 2: "フタツ", 3: "ミッツ", 4: "ヨッツ", 5: "イツツ", 6: "ムッツ", 7: "ナナツ",
        8: "ヤッツ", 9: "ココノツ", 10: "トオ"}

# The counters read by rule; any other counter after a number is read by _unknown_counter.
_COUNTERS = {
    "人": _Counter("ニン", digits=_YO, whole={1: "ヒトリ", 2: "フタリ"}),
    "つ": _Counter("", whole=_TSU),  # Beyond 10 the bare number is said.
    "日": _Counter("ニチ", digits=_SHICHI_KU, whole={**_DAYS, 1: "イチニチ"}),
    "日間": _Counter("ニチカン", digits=_SHICHI_KU,
                   whole={n: d + "カン" for n, d in {**_DAYS, 1: "イチニチ"}.items()}),
    "時": _Counter("ジ", digits={4: "ヨ", **_SHICHI_KU}),
    "時間": _Counter("ジカン", digits={4: "ヨ", **_SHICHI_KU}),
    "月": _Counter("ガツ", digits={4: "シ", **_SHICHI_KU}),  # After a number: the month.
    "年": _Counter("ネン", digits=_YO),
    "年間": _Counter("ネンカン", digits=_YO),
    "円": _Counter("エン", digits=_YO),
    "歳": _Counter("サイ", whole={20: "ハタチ"}),
    # k
    "個": _Counter("コ"),
    "回": _Counter("カイ"),
    "階": _Counter("カイ", after_n="b"),
    "軒": _Counter("ケン", after_n="b"),
    "件": _Counter("ケン"),
    "ヶ月": _Counter("カゲツ"),
    "ヶ所": _Counter("カショ"),
    "曲": _Counter("キョク"),
    # s
    "冊": _Counter("サツ"),
    "週": _Counter("シュウ"),
    "週間": _Counter("シュウカン"),
    "足": _Counter("ソク", after_n="b"),
    "種類": _Counter("シュルイ"),
    # t
    "頭": _Counter("トウ"),
    "着": _Counter("チャク"),
    "点": _Counter("テン"),
    "通": _Counter("ツウ"),
    # h
    "本": _Counter("ホン", after_n="b"),
    "匹": _Counter("ヒキ", after_n="b"),
    "杯": _Counter("ハイ", after_n="b"),
    "分": _Counter("フン", after_n="p", after_yon="p"),
    "分間": _Counter("フンカン", after_n="p", after_yon="p"),
    "泊": _Counter("ハク", after_n="p", after_yon="p"),
    "発": _Counter("ハツ", after_n="p", after_yon="p"),
    "歩": _Counter("ホ", after_n="p"),
    # No sound changes.
    "枚": _Counter("マイ"),
    "台": _Counter("ダイ"),
    "秒": _Counter("ビョウ"),
    "度": _Counter("ド"),
    "番": _Counter("バン"),
    "倍": _Counter("バイ"),
    "羽": _Counter("ワ"),  # サンバ, ロッパ, ... are the older readings.
    "名": _Counter("メイ"),
}
_COUNTER_ALIASES = {"才": "歳", "こ": "個", "コ": "個", "ケ": "個", "ヶ": "個", "箇": "個",
                    "か月": "ヶ月", "カ月": "ヶ月", "ケ月": "ヶ月", "箇月": "ヶ月", "か所": "ヶ所",
                    "カ所": "ヶ所", "ケ所": "ヶ所", "箇所": "ヶ所"}
# Unit symbols written after a number, currency symbols written before one.
_UNITS = {"%": "パーセント", "°": "ド", "km": "キロメートル", "m": "メートル", "cm": "センチメートル",
          "mm": "ミリメートル", "kg": "キログラム", "g": "グラム", "mg": "ミリグラム", "l": "リットル",
          "L": "リットル", "ml": "ミリリットル", "mL": "ミリリットル", "cc": "シーシー"}
_CURRENCIES = {"¥": "円", "$": "ドル", "€": "ユーロ", "£": "ポンド"}
_LETTERS = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", (
    "エー ビー シー ディー イー エフ ジー エイチ アイ ジェー ケー エル エム エヌ オー ピー キュー "
    "アール エス ティー ユー ブイ ダブリュー エックス ワイ ゼット").split()))

_ROW = {**dict.fromkeys("カキクケコ", "k"), **dict.fromkeys("サシスセソ", "s"),
        **dict.fromkeys("タチツテト", "t"), **dict.fromkeys("ハヒフヘホ", "h"),
        **dict.fromkeys("パピプペポ", "p")}
_VOICED = str.maketrans("カキクケコサシスセソタチツテトハヒフヘホ", "ガギグゲゴザジズゼゾダヂヅデドバビブベボ")
_HALF_VOICED = str.maketrans("ハヒフヘホ", "パピプペポ")
_POINT = _Counter("テン")  # 1.5 → イッテンゴ: the decimal point joins like a counter.

# A spoken piece of a number: (value, kana). The value tells which sound changes the piece
# takes before a counter: a digit 0-9, 10 for a tens piece (ニジュウ), 100 for a hundreds
# piece (サンビャク), 1000, 10**4, ... for the others.
_Piece = tuple[int, str]


def _group_pieces(n: int) -> list[_Piece]:
  """1 ≤ n ≤ 9999 as spoken pieces: 1986 → セン, キュウヒャク, ハチジュウ, ロク."""
  pieces = []
  thousands, rest = divmod(n, 1000)
  if thousands:
    pieces.append((1000, {1: "セン", 3: "サンゼン", 8: "ハッセン"}.get(
        thousands, _DIGITS[thousands] + "セン")))
  hundreds, rest = divmod(rest, 100)
  if hundreds:
    pieces.append((100, {1: "ヒャク", 3: "サンビャク", 6: "ロッピャク", 8: "ハッピャク"}.get(
        hundreds, _DIGITS[hundreds] + "ヒャク")))
  tens, ones = divmod(rest, 10)
  if tens:
    pieces.append((10, ("" if tens == 1 else _DIGITS[tens]) + "ジュウ"))
  if ones:
    pieces.append((ones, _DIGITS[ones]))
  return pieces


_BIG_UNIT_COUNTERS = ((10**12, _Counter("チョウ")), (10**8, _Counter("オク")),
                      (10**4, _Counter("マン")))


def _number_pieces(n: int) -> list[_Piece]:
  """n ≥ 0 as spoken pieces; from 10^16 on, digit by digit."""
  if n == 0:
    return [(0, _DIGITS[0])]
  if n >= 10**16:
    return [(int(d), _DIGITS[int(d)]) for d in str(n)]
  pieces = []
  for unit, counter in _BIG_UNIT_COUNTERS:
    group, n = divmod(n, unit)
    if group:
      group_pieces = _group_pieces(group)
      if group >= 1000 and group_pieces[0] == (1000, "セン"):
        group_pieces[0] = (1000, "イッセン")  # 一千万 → イッセンマン
      pieces.append((unit, _join(group_pieces, counter)))  # 1兆 → イッチョウ
  return pieces + (_group_pieces(n) if n else [])


def _join(pieces: Sequence[_Piece], counter: _Counter) -> str:
  """The pieces of a number and a counter, read together with their sound changes."""
  value, last = pieces[-1]
  reading = counter.reading
  row = _ROW.get(reading[:1])
  if 1 <= value <= 9 and value in counter.digits:
    last = counter.digits[value]
  elif row and ((value in (1, 8, 10) and row in "kstph") or (value in (6, 100) and row in "khp")):
    last = last[:-1] + "ッ"  # イチ → イッ, ジュウ → ジュッ, ヒャク → ヒャッ
    reading = reading[0].translate(_HALF_VOICED) + reading[1:]
  elif last.endswith("ン"):  # サン, ヨン, セン, ゼン, マン
    change = counter.after_yon if value == 4 else counter.after_n
    if change:
      table = _VOICED if change == "b" else _HALF_VOICED
      reading = reading[0].translate(table) + reading[1:]
  return "".join(p for _, p in pieces[:-1]) + last + reading


def read_number(n: int) -> str:
  """A number read aloud in katakana: 21 → ニジュウイチ, 300 → サンビャク, 10^8 → イチオク.

  Args:
    n: a number ≥ 0 (from 10^16 on it is read digit by digit).

  Returns:
    Its reading.
  """
  return "".join(p for _, p in _number_pieces(n))


def _counter(name: str) -> Optional[_Counter]:
  return _COUNTERS.get(_COUNTER_ALIASES.get(name, name))


def read_counted(n: int, counter: str) -> Optional[str]:
  """A number and its counter read together: 3本 → サンボン, 100本 → ヒャッポン, 4月 → シガツ.

  Args:
    n: the number, ≥ 0.
    counter: the counter as written (本, 才, か月, ...).

  Returns:
    The reading, or None for a counter without rules here.
  """
  rules = _counter(counter)
  if rules is None:
    return None
  if n in rules.whole:
    return rules.whole[n]
  return _join(_number_pieces(n), rules)


def read_decimal(integer: int, fraction: str) -> str:
  """A decimal number read aloud: 1.5 → イッテンゴ, 3.14 → サンテンイチヨン.

  Args:
    integer: the part before the point, ≥ 0.
    fraction: the digits after it, as written ("14"); they are read one by one.

  Returns:
    The reading.
  """
  return _join(_decimal_pieces(integer, fraction), _Counter(""))


def _decimal_pieces(integer: int, fraction: str) -> list[_Piece]:
  return ([(-1, _join(_number_pieces(integer), _POINT))]
          + [(int(d), _DIGITS[int(d)]) for d in fraction])


def parse_number(text: str) -> Optional[int]:
  """The value of a written number: "12", "１２", "十二", "1億2000万", "二〇二〇".

  Args:
    text: digits (any width), kanji numerals, or both.

  Returns:
    The number, or None if text is not one.
  """
  text = text.translate(_FULL_WIDTH_DIGITS)
  if _ASCII_DIGITS.fullmatch(text):
    return int(text)
  if not text or any(c not in _NUMERAL_CHARS for c in text):
    return None
  total, section, digit = 0, 0, None
  for c in text:
    if c in _SMALL_UNITS:
      section += (1 if digit is None else digit) * _SMALL_UNITS[c]
      digit = None
    elif c in _BIG_UNITS:
      total += (section + (digit or 0) or 1) * _BIG_UNITS[c]
      section, digit = 0, None
    else:  # A digit, placed after the ones before it: 二〇二〇 → 2020.
      digit = (digit or 0) * 10 + (int(c) if c.isascii() else _KANJI_DIGITS[c])
  return total + section + (digit or 0)


class _Analyzer(threading.local):
  """One MeCab tagger per thread (the tagger is not thread-safe)."""

  def __init__(self):
    super().__init__()
    # Lazy: MeCab and its dictionary are the optional `caption` extra (~250 MB), needed
    # only when text is read, not to import this module (or alti2v.tasks).
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


_KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30ffー]+")
_LATIN = re.compile(r"[A-Za-z]+")
_NOT_KATAKANA = re.compile(r"[^ァ-ヺー ]+")


def _word_reading(word) -> str:
  import jaconv  # pylint: disable=import-outside-toplevel  (the optional `caption` extra)
  kana = word.feature.kana
  if kana and kana != "*":
    return kana
  surface = word.surface
  if _KANA.fullmatch(surface):
    return jaconv.hira2kata(surface)
  if _LATIN.fullmatch(surface):  # Spelled as letters are said: TV → ティーブイ.
    return "".join(_LETTERS[c] for c in surface.upper())
  return surface  # Anything else is dropped with the other non-katakana at the end.


def _is_numeral(word) -> bool:
  # The analyser tags a digit after some symbols as a symbol itself ($九): a number all the same.
  return (all(c in _NUMERAL_CHARS for c in word.surface)
          and (word.feature.pos2 == "数詞" or word.feature.pos1 == "記号"))


def _is_counter(word) -> bool:
  """Whether a word after a number counts it (接尾辞, or a noun that can be a counter)."""
  feature = word.feature
  return feature.pos1 == "接尾辞" or feature.pos3 in ("助数詞", "助数詞可能")


def _unknown_counter(pieces: list[_Piece], word) -> str:
  """A number and a counter without rules here: 2両 → ニリョウ, 1票 → イッピョウ."""
  feature = word.feature
  if feature.goshu == "漢":  # Sino-Japanese: the regular sound changes, no voicing after ン.
    base = feature.kanaBase if feature.kanaBase not in (None, "*") else _word_reading(word)
    return _join(pieces, _Counter(base))
  return "".join(p for _, p in pieces) + _word_reading(word)


def _number_at(words, i: int) -> tuple[str, Optional[str], int]:
  """(the integer as written, the digits after a decimal point or None, the index after)."""
  parts = [words[i].surface]
  j = i + 1
  while j < len(words):
    surface = words[j].surface
    if _is_numeral(words[j]):
      parts.append(surface)
    elif (surface == "," and _ASCII_DIGITS.fullmatch(parts[-1]) and j + 1 < len(words)
          and _THREE_DIGITS.fullmatch(words[j + 1].surface)):
      pass  # A thousands separator: 1,000 → 1000.
    elif (surface == "." and _ASCII_DIGITS.fullmatch("".join(parts)) and j + 1 < len(words)
          and _ASCII_DIGITS.fullmatch(words[j + 1].surface)):
      return "".join(parts), words[j + 1].surface, j + 2
    else:
      break
    j += 1
  return "".join(parts), None, j


def _read_number(words, i: int, out: list[str]) -> int:
  """Reads the number at words[i], with what it counts, into out; returns the index after."""
  text, fraction, j = _number_at(words, i)
  n = None  # The value, where a counter's whole-number readings may apply.
  if fraction is not None:
    pieces = _decimal_pieces(int(text), fraction)
  elif (len(text) > 1 and all(c in _KANJI_DIGITS for c in text)
        and not any(c in "〇零" for c in text)):
    # Kanji digits without units or zeros are a list, not a place-value number: 二三人 is
    # "two or three people" (ニサンニン); 七五三 is read digit by digit.
    pieces = [(_KANJI_DIGITS[c], _DIGITS[_KANJI_DIGITS[c]]) for c in text]
  else:
    n = parse_number(text)
    pieces = _number_pieces(n)
    if text[0] in _BIG_UNITS:  # 万年筆: a bare 万 is マン, not イチマン.
      pieces[0] = (pieces[0][0], pieces[0][1].removeprefix("イチ"))
  said = "".join(p for _, p in pieces)
  # What the number counts: a counter, a unit symbol, a currency written before it.
  nxt = words[j] if j < len(words) else None
  rules = _counter(nxt.surface) if nxt is not None else None
  if nxt is not None and rules is None and _is_counter(nxt) and nxt.feature.lemma:
    rules = _counter(nxt.feature.lemma.split("-")[0])  # ひき → 匹, 円-助数詞 → 円
  if (rules is not None and nxt.surface == "分" and j + 2 < len(words)
      and words[j + 1].surface == "の" and _is_numeral(words[j + 2])):
    rules = None  # 3分の1: a fraction (サンブンノイチ), not minutes.
  if rules is not None:
    if n in rules.whole:
      reading = rules.whole[n]
      if n == 1 and rules is _COUNTERS["日"] and out and out[-1].endswith("ガツ"):
        reading = _DAYS[1]  # The 1st of a month: 5月1日 → ゴガツ ツイタチ.
    else:
      reading = _join(pieces, rules)
    out.append(reading)
    return j + 1
  if nxt is not None and nxt.surface in _UNITS:
    out.append(said + _UNITS[nxt.surface])
    if nxt.surface == "°" and j + 1 < len(words) and words[j + 1].surface in ("C", "F"):
      j += 1  # ℃, normalised to °C
    return j + 1
  currency = _CURRENCIES.get(words[i - 1].surface) if i else None
  if currency is not None:
    rules = _counter(currency)
    out.append(_join(pieces, rules) if rules else said + currency)
    return j
  if nxt is not None and _is_counter(nxt):
    out.append(_unknown_counter(pieces, nxt))
    return j + 1
  out.append(said)
  return j


# Parts of speech written together with the word before them.
_ATTACHED = ("接尾辞", "助動詞")


def to_katakana(text: str) -> str:
  """Katakana reading of Japanese text, one space between words.

  Args:
    text: Japanese text in any script and width.

  Returns:
    Its reading: only katakana, ー and single spaces (punctuation and symbols dropped).
  """
  import jaconv  # pylint: disable=import-outside-toplevel  (the optional `caption` extra)
  words = list(_tagger()(jaconv.normalize(text)))
  out: list[str] = []
  i = 0
  while i < len(words):
    word = words[i]
    if _is_numeral(word):
      i = _read_number(words, i, out)
      continue
    pos = word.feature.pos1
    if pos in ("補助記号", "空白", "記号"):
      i += 1
      continue
    reading = _word_reading(word)
    if out and pos in _ATTACHED:
      out[-1] += reading  # 二つ目 → フタツメ, 書かれた → カカレタ: no space inside a word.
    else:
      out.append(reading)
    i += 1
  # Whatever is still not katakana (symbols the analyser calls words, other scripts) goes.
  return " ".join(_NOT_KATAKANA.sub("", jaconv.hira2kata(" ".join(out))).split())
