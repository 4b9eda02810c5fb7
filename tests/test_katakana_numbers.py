"""Numbers in katakana captions: counters read as published tables give them, no digit left.

The readings below are copied from published tables (cited at each table) and checked both
against `katakana.read_counted` and through `katakana.to_katakana`, digits and all. Where
usage is split, a case lists every accepted reading, "A/B"; variants added to what a table
prints are marked "variant" with the source that allows them.
"""
import random
import re

import pytest

from alti2v.tasks.caption import katakana

# Tokyo University of Foreign Studies, 言語モジュール「助数詞」 (Step 1, これだけは覚えよう),
# http://www.coelang.tufs.ac.jp/mt/ja/gmod/courses/c02/lesson10/step1/explanation/017.html
# The readings of 1 to 10 with ～つ, 個, 枚, 本, 冊, 台, 杯, as printed there (hiragana there).
# Variants: ジッ beside ジュッ for 10 ("jū is replaced by either ju- or ji-", Wikipedia,
# "Japanese counter word", Euphonic changes, https://en.wikipedia.org/wiki/Japanese_counter_word);
# ハチ beside ハッ for 8 (the same table, and Makino & Tsutsui below: "8 [hakk-/hachik-]").
TUFS_ONE_TO_TEN = {
    "つ": "ヒトツ フタツ ミッツ ヨッツ イツツ ムッツ ナナツ ヤッツ ココノツ トオ",
    "個": "イッコ ニコ サンコ ヨンコ ゴコ ロッコ ナナコ ハッコ/ハチコ キュウコ ジュッコ/ジッコ",
    "枚": "イチマイ ニマイ サンマイ ヨンマイ ゴマイ ロクマイ ナナマイ ハチマイ キュウマイ ジュウマイ",
    "本": "イッポン ニホン サンボン ヨンホン ゴホン ロッポン ナナホン ハッポン/ハチホン キュウホン "
          "ジュッポン/ジッポン",
    "冊": "イッサツ ニサツ サンサツ ヨンサツ ゴサツ ロクサツ ナナサツ ハッサツ キュウサツ "
          "ジュッサツ/ジッサツ",
    "台": "イチダイ ニダイ サンダイ ヨンダイ ゴダイ ロクダイ ナナダイ ハチダイ キュウダイ ジュウダイ",
    "杯": "イッパイ ニハイ サンバイ ヨンハイ ゴハイ ロッパイ ナナハイ ハッパイ/ハチハイ キュウハイ "
          "ジュッパイ/ジッパイ",
}

# Makino & Tsutsui, A Dictionary of Intermediate Japanese Grammar (The Japan Times, 1995),
# appendix 6 "More Counters", the sound-change types (p. 685-686, scanned at
# http://online.flipbuilder.com/izelv/owbh/files/basic-html/page759.html and page760.html):
# B: h → p after 1, 6, 8, 10 and → b after 3; B': the same but p after 3 (its example: 泊);
# C: k, doubled after 1, 6, 8, 10; C': also g after 3 (階); D: s, doubled after 1, 8, 10;
# D': also z after 3 (its example: 足); F: t, doubled after 1, 8, 10; A''': wa → ba after 3
# (羽); A: no change. The rows are 1 to 10 of counters placed in those types by their first
# sound (匹 B, 回 C, 歳 and 週 D, 頭, 点 and 着 F, 度, 番 and 秒 A).
# Variants: ジッ/ジュッ and ハチ/ハッ as above; 羽: ワ after every number (サンワ, ロクワ, ハチワ,
# ジュウワ), the reading most speakers now use ("h音で始まる助数詞の数え方", goodcross,
# https://www.goodcross.com/words/26061-2024: 3羽 さんば/さんわ, 6羽 ろくわ/ろっぱ, 8羽 はちわ/はっぱ).
MAKINO_TSUTSUI_ONE_TO_TEN = {
    "匹": "イッピキ ニヒキ サンビキ ヨンヒキ ゴヒキ ロッピキ ナナヒキ ハッピキ/ハチヒキ キュウヒキ "
          "ジュッピキ/ジッピキ",
    "泊": "イッパク ニハク サンパク ヨンパク ゴハク ロッパク ナナハク ハッパク/ハチハク キュウハク "
          "ジュッパク/ジッパク",
    "回": "イッカイ ニカイ サンカイ ヨンカイ ゴカイ ロッカイ ナナカイ ハッカイ/ハチカイ キュウカイ "
          "ジュッカイ/ジッカイ",
    "階": "イッカイ ニカイ サンガイ/サンカイ ヨンカイ ゴカイ ロッカイ ナナカイ ハッカイ/ハチカイ "
          "キュウカイ ジュッカイ/ジッカイ",
    "歳": "イッサイ ニサイ サンサイ ヨンサイ ゴサイ ロクサイ ナナサイ ハッサイ キュウサイ "
          "ジュッサイ/ジッサイ",
    "週": "イッシュウ ニシュウ サンシュウ ヨンシュウ ゴシュウ ロクシュウ ナナシュウ ハッシュウ "
          "キュウシュウ ジュッシュウ/ジッシュウ",
    "足": "イッソク ニソク サンゾク ヨンソク ゴソク ロクソク ナナソク ハッソク キュウソク "
          "ジュッソク/ジッソク",
    "頭": "イットウ ニトウ サントウ ヨントウ ゴトウ ロクトウ ナナトウ ハットウ キュウトウ "
          "ジュットウ/ジットウ",
    "点": "イッテン ニテン サンテン ヨンテン ゴテン ロクテン ナナテン ハッテン キュウテン "
          "ジュッテン/ジッテン",
    "着": "イッチャク ニチャク サンチャク ヨンチャク ゴチャク ロクチャク ナナチャク ハッチャク "
          "キュウチャク ジュッチャク/ジッチャク",
    "羽": "イチワ ニワ サンバ/サンワ ヨンワ ゴワ ロッパ/ロクワ ナナワ ハッパ/ハチワ キュウワ "
          "ジュッパ/ジッパ/ジュウワ",
    "度": "イチド ニド サンド ヨンド ゴド ロクド ナナド ハチド キュウド ジュウド",
    "番": "イチバン ニバン サンバン ヨンバン ゴバン ロクバン ナナバン ハチバン キュウバン ジュウバン",
    "秒": "イチビョウ ニビョウ サンビョウ ヨンビョウ ゴビョウ ロクビョウ ナナビョウ ハチビョウ "
          "キュウビョウ ジュウビョウ",
}

# 分 (ふん/ぷん): 日本語文法基礎 Ⅶ.時刻・時間, https://cotohajime.net/2020/08/28/japanese_grammar_time/
# ("1いっぷん、2にふん、3さんぷん、4よんぷん、5ごふん … 10じゅっぷん、30さんじゅっぷん"; after
# a っ or ん it is ぷん). 6 to 9 by that rule (Makino & Tsutsui's type B').
MINUTES_ONE_TO_TEN = ("イップン ニフン サンプン ヨンプン ゴフン ロップン ナナフン ハップン/ハチフン "
                      "キュウフン ジュップン/ジップン")

# Wikipedia, "Japanese counter word", section Exceptions (the table of 日, 人, 月, 時, 時間, 階,
# 百, 千, 歳), https://en.wikipedia.org/wiki/Japanese_counter_word (read at its mirror
# https://www.liquisearch.com/japanese_counter_word/exceptions). 日 also from NHK ことばの
# ハンドブック 第2版 as quoted at http://oshiete.goo.ne.jp/qa/9192243.html (1日 イチニチ when
# days are counted, ツイタチ for the date; 14日 許容 ジューヨンニチ; 17日 ジューシチニチ; 19日
# ジュークニチ, 許容 ジューキューニチ; 20日 許容 ニジューニチ; 100日 ヒャクニチ; 1000日 センニチ).
# Variants: 7人 ナナニン beside シチニン (Makino & Tsutsui: "7 sounds more natural when it is
# pronounced nana"); 7時間 ナナジカン likewise.
WIKIPEDIA_EXCEPTIONS = [
    (1, "日", "ツイタチ/イチニチ"), (2, "日", "フツカ"), (3, "日", "ミッカ"), (4, "日", "ヨッカ"),
    (5, "日", "イツカ"), (6, "日", "ムイカ"), (7, "日", "ナノカ/ナヌカ"), (8, "日", "ヨウカ"),
    (9, "日", "ココノカ"), (10, "日", "トオカ"), (14, "日", "ジュウヨッカ/ジュウヨンニチ"),
    (17, "日", "ジュウシチニチ/ジュウナナニチ"), (19, "日", "ジュウクニチ/ジュウキュウニチ"),
    (20, "日", "ハツカ/ニジュウニチ"), (24, "日", "ニジュウヨッカ"), (100, "日", "ヒャクニチ"),
    (1000, "日", "センニチ"),
    (1, "人", "ヒトリ"), (2, "人", "フタリ"), (4, "人", "ヨニン"), (7, "人", "シチニン/ナナニン"),
    (14, "人", "ジュウヨニン"),
    (4, "月", "シガツ"), (7, "月", "シチガツ"), (9, "月", "クガツ"),
    (4, "時", "ヨジ"), (7, "時", "シチジ"), (9, "時", "クジ"),
    (4, "時間", "ヨジカン"), (7, "時間", "シチジカン/ナナジカン"), (9, "時間", "クジカン"),
    (14, "時間", "ジュウヨジカン"),
    (3, "階", "サンガイ/サンカイ"), (20, "歳", "ハタチ/ニジュッサイ/ニジッサイ"),
]

# Beyond 10 the same tables' rules, applied to the last spoken element of the number
# (Wikipedia, "Japanese counter word", Euphonic changes: rows 百 hyaku → hyakk-/hyapp-,
# 千 sen and 万 man → b/p like san; Makino & Tsutsui: 6 and 100 double only k, h, p).
LARGER_NUMBERS = [
    (11, "本", "ジュウイッポン"), (14, "本", "ジュウヨンホン"), (20, "本", "ニジュッポン/ニジッポン"),
    (100, "本", "ヒャッポン"), (300, "本", "サンビャッポン"), (600, "本", "ロッピャッポン"),
    (1000, "本", "センボン"), (8000, "本", "ハッセンボン"), (10000, "本", "イチマンボン"),
    (11, "個", "ジュウイッコ"), (14, "個", "ジュウヨンコ"), (20, "個", "ニジュッコ/ニジッコ"),
    (100, "個", "ヒャッコ"), (600, "個", "ロッピャッコ"), (1000, "個", "センコ"),
    (11, "匹", "ジュウイッピキ"), (100, "匹", "ヒャッピキ"), (1000, "匹", "センビキ"),
    (100, "杯", "ヒャッパイ"), (1000, "杯", "センバイ"),
    (11, "冊", "ジュウイッサツ"), (20, "冊", "ニジュッサツ/ニジッサツ"), (100, "冊", "ヒャクサツ"),
    (1000, "冊", "センサツ"),
    (11, "人", "ジュウイチニン"), (20, "人", "ニジュウニン"), (24, "人", "ニジュウヨニン"),
    (100, "人", "ヒャクニン"), (1000, "人", "センニン"),
    (30, "分", "サンジュップン/サンジップン"), (100, "分", "ヒャップン"),
    (100, "回", "ヒャッカイ"), (11, "日", "ジュウイチニチ"), (14, "時", "ジュウヨジ"),
    (11, "月", "ジュウイチガツ"), (10, "月", "ジュウガツ"), (100, "円", "ヒャクエン"),
    (1000, "円", "センエン"), (10000, "円", "イチマンエン"), (4, "円", "ヨエン"),
    (4, "年", "ヨネン"), (1000, "年", "センネン"), (100, "歳", "ヒャクサイ"),
]


def _cases():
  rows = {**TUFS_ONE_TO_TEN, **MAKINO_TSUTSUI_ONE_TO_TEN, "分": MINUTES_ONE_TO_TEN}
  cases = [(n, counter, reading) for counter, row in rows.items()
           for n, reading in enumerate(row.split(), 1)]
  return cases + WIKIPEDIA_EXCEPTIONS + LARGER_NUMBERS


COUNTER_CASES = _cases()


def test_the_table_is_big_enough():
  assert len(COUNTER_CASES) >= 80 and len({c for _, c, _ in COUNTER_CASES}) >= 25


@pytest.mark.parametrize("n, counter, accepted", COUNTER_CASES)
def test_counter_readings_match_the_tables(n, counter, accepted):
  assert katakana.read_counted(n, counter) in accepted.split("/")


@pytest.mark.parametrize("n, counter, accepted", COUNTER_CASES)
def test_counter_readings_in_text(n, counter, accepted):
  """The same through the analyser: ASCII digits, then full-width ones."""
  readings = {f"{reading} ノ" for reading in accepted.split("/")}
  assert katakana.to_katakana(f"{n}{counter}の") in readings
  full_width = str(n).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
  assert katakana.to_katakana(f"{full_width}{counter}の") in readings


@pytest.mark.parametrize("text, expected", [
    # The examples.
    ("1冊の本", "イッサツ ノ ホン"), ("6分", "ロップン"), ("20日", "ハツカ"), ("100本", "ヒャッポン"),
    ("9時", "クジ"), ("4月", "シガツ"),
    # Kanji numerals, in context (alone, 三本 is a surname to the analyser).
    ("三本の木", "サンボン ノ キ"), ("六匹の犬", "ロッピキ ノ イヌ"), ("百本のバラ", "ヒャッポン ノ バラ"),
    ("二十日の朝", "ハツカ ノ アサ"), ("四月の公園", "シガツ ノ コウエン"), ("九時の時計", "クジ ノ トケイ"),
    ("二三人の子供", "ニサンニン ノ コドモ"), ("一億二千万人", "イチオクニセンマンニン"),
    ("二〇二〇年", "ニセンニジュウネン"), ("万年筆", "マンネンヒツ"),
    # Dates, separators, decimals.
    ("5月1日", "ゴガツ ツイタチ"), ("1,000円", "センエン"), ("12,345人", "イチマンニセンサンビャクヨンジュウゴニン"),
    ("3、4人", "サン ヨニン"), ("1.5倍", "イッテンゴバイ"), ("3.14", "サンテンイチヨン"),
    ("１．５メートル", "イッテンゴメートル"), ("1億2000万人", "イチオクニセンマンニン"),
    ("3分の1", "サンブン ノ イチ"), ("3回目", "サンカイメ"), ("2人目", "フタリメ"),
    # Counters without rules here: the number's reading and the counter's.
    ("2両の電車", "ニリョウ ノ デンシャ"), ("3組", "サンクミ"), ("1位", "イチイ"), ("1票", "イッピョウ"),
    # Units and currencies in symbols, Latin letters.
    ("50%", "ゴジュウパーセント"), ("3kg", "サンキログラム"), ("30℃", "サンジュウド"),
    ("100m", "ヒャクメートル"), ("2L", "ニリットル"), ("¥100", "ヒャクエン"), ("$5", "ゴドル"),
    ("Tシャツ", "ティー シャツ"), ("TVを見る", "ティーブイ ヲ ミル"),
])
def test_numbers_in_text(text, expected):
  assert katakana.to_katakana(text) == expected


def test_decimals_and_accepted_variants():
  assert katakana.to_katakana("0.5") in ("ゼロテンゴ", "レイテンゴ")
  assert katakana.to_katakana("10.5") in ("ジュッテンゴ", "ジッテンゴ", "ジュウテンゴ")
  assert katakana.read_decimal(8, "25") in ("ハッテンニゴ", "ハチテンニゴ")


@pytest.mark.parametrize("n, reading", [
    (0, "ゼロ"), (10, "ジュウ"), (11, "ジュウイチ"), (100, "ヒャク"), (300, "サンビャク"),
    (600, "ロッピャク"), (800, "ハッピャク"), (1000, "セン"), (3000, "サンゼン"), (8000, "ハッセン"),
    (10**4, "イチマン"), (10**7, "イッセンマン"), (10**8, "イチオク"), (10**12, "イッチョウ"),
    (8 * 10**12, "ハッチョウ"), (2 * 10**12 + 3, "ニチョウサン"),
    (123456789, "イチオクニセンサンビャクヨンジュウゴマンロクセンナナヒャクハチジュウキュウ"),
])
def test_read_number(n, reading):
  assert katakana.read_number(n) == reading


def _kanji(n):
  """n written in kanji numerals (千二百三十四, 一億二千万)."""
  digits = "〇一二三四五六七八九"

  def group(g):
    out = ""
    for unit, name in ((1000, "千"), (100, "百"), (10, "十")):
      d, g = divmod(g, unit)
      out += ("" if d == 1 else digits[d]) + name if d else ""
    return out + (digits[g] if g else "")

  if n == 0:
    return digits[0]
  out = ""
  for unit, name in ((10**12, "兆"), (10**8, "億"), (10**4, "万")):
    g, n = divmod(n, unit)
    out += group(g) + name if g else ""
  return out + group(n)


def test_parse_number_reads_what_kanji_writes():
  rng = random.Random(0)
  for n in [0, 1, 10, 11, 20, 105, 1000, 10**4, 10**8 + 2, 10**12] + [
      rng.randrange(10**rng.randrange(1, 16)) for _ in range(300)]:
    assert katakana.parse_number(_kanji(n)) == n, _kanji(n)
    assert katakana.parse_number(str(n)) == n


_KATAKANA_ONLY = re.compile(r"[ァ-ヺー]+( [ァ-ヺー]+)*")
_UNKNOWN_COUNTERS = ["両", "位", "票", "組", "色", "号", "列", "段", "輪", "機", "粒", "皿", "袋", "ページ"]
_SUFFIXES = ["", "%", "kg", "cm", "m", "℃", "L", "目", "円札"]
_CONTEXTS = ["{}の猫がいる", "テーブルの上に{}ある", "{}、{}", "約{}の男性", "{}です。",
             "第{}回", "{}～{}の人", "（{}）", "{}-{}"]


def _written(rng, n):
  """n as a caption may write it: ASCII, full-width, with commas, kanji, or a decimal."""
  form = rng.randrange(5)
  if form == 0:
    return str(n)
  if form == 1:
    return str(n).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
  if form == 2:
    return f"{n:,}"
  if form == 3:
    return _kanji(n)
  return f"{n}.{rng.randrange(100)}"


def test_no_digit_or_symbol_survives():
  """Property: Japanese text with numbers anywhere reads as katakana, ー and spaces only."""
  rng = random.Random(9)
  counters = list(katakana._COUNTERS) + _UNKNOWN_COUNTERS  # pylint: disable=protected-access
  for _ in range(600):
    def phrase():
      n = rng.choice([rng.randrange(11), rng.randrange(100), rng.randrange(10**4),
                      rng.randrange(10**13)])
      unit = rng.choice(counters + _SUFFIXES)
      prefix = rng.choice(["", "", "", "¥", "$", "約", "第"])
      return prefix + _written(rng, n) + unit
    context = rng.choice(_CONTEXTS)
    text = context.format(*(phrase() for _ in range(context.count("{}"))))
    reading = katakana.to_katakana(text)
    assert _KATAKANA_ONLY.fullmatch(reading), (text, reading)
