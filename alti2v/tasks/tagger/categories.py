"""Tag categories (general, character, copyright, artist, meta, rating): the file a user gives
at build time, the copy stored beside the vocabulary, and reading it back.

The user's file is CSV, `name,category` a line with an optional header, or WD14's
selected_tags.csv (`tag_id,name,category,count`, with its header); a category is a name or
Danbooru's number (0 general, 1 artist, 3 copyright, 4 character, 5 meta, 9 rating as in
WD14). A tag the file does not name is general, or rating when it is called "rating:…".
The dataset and the run store one category per vocabulary line in tags.categories.txt.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Callable, Optional, Sequence

from alti2v.data import features as features_lib

GENERAL = "general"
CHARACTER = "character"
COPYRIGHT = "copyright"
ARTIST = "artist"
META = "meta"
RATING = "rating"
CATEGORIES = (GENERAL, CHARACTER, COPYRIGHT, ARTIST, META, RATING)  # In output order.
DANBOORU_NUMBERS = {"0": GENERAL, "1": ARTIST, "3": COPYRIGHT, "4": CHARACTER, "5": META,
                    "9": RATING}
RATING_PREFIX = "rating:"


def category_of(value: str) -> Optional[str]:
  """A category from its name or Danbooru number ("4" or "Character" → "character"), or None."""
  value = value.strip().lower()
  return DANBOORU_NUMBERS.get(value, value if value in CATEGORIES else None)


def default_category(tag: str) -> str:
  """The category of a tag a categories file does not name."""
  return RATING if tag.startswith(RATING_PREFIX) else GENERAL


def parse_categories_csv(text: str, source: str = "the categories file"
                         ) -> dict[str, str]:
  """{tag name as written: category} from a categories file's text.

  Args:
    text: `name,category` lines (optional header naming them), or WD14's
      `tag_id,name,category,count` with its header.
    source: the file's name, for errors.

  Raises:
    ValueError: a line with too few columns or an unknown category (its line number).
  """
  rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
  name_col, category_col, start = 0, 1, 0
  if rows:
    header = [c.strip().lower() for c in rows[0]]
    if "name" in header and "category" in header:
      name_col, category_col, start = header.index("name"), header.index("category"), 1
  found: dict[str, str] = {}
  for number, row in enumerate(rows[start:], start + 1):
    if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
      continue
    if len(row) <= max(name_col, category_col):
      raise ValueError(f"{source} line {number}: expected name,category, got {row!r}")
    category = category_of(row[category_col])
    if category is None:
      raise ValueError(
          f"{source} line {number}: unknown category {row[category_col].strip()!r} for "
          f"{row[name_col].strip()!r}; known: {', '.join(CATEGORIES)} or Danbooru's numbers "
          f"{', '.join(f'{n}={c}' for n, c in DANBOORU_NUMBERS.items())}")
    found[row[name_col].strip()] = category
  return found


def vocabulary_categories(vocabulary: Sequence[str], by_name: dict[str, str],
                          normalize: Callable[[str], str] = lambda name: name
                          ) -> list[str]:
  """One category per vocabulary tag: the file's (names normalised), else default_category."""
  normalized = {normalize(name): category for name, category in by_name.items()}
  return [normalized.get(tag, default_category(tag)) for tag in vocabulary]


def categories_text(categories: Sequence[str]) -> str:
  """tags.categories.txt: one category a line, in vocabulary order."""
  return "".join(f"{c}\n" for c in categories)


def read_categories(folder: str, vocabulary: Sequence[str],
                    feature: str = "tags") -> list[str]:
  """The categories stored in a dataset or run folder, in vocabulary order.

  A folder without the file (built without --tag_categories, or before categories
  existed) gives default_category for every tag: general, rating for "rating:…".

  Raises:
    ValueError: the file does not have one known category per vocabulary tag.
  """
  path = os.path.join(folder, features_lib.categories_file(feature))
  if not os.path.exists(path):
    return [default_category(tag) for tag in vocabulary]
  with open(path, encoding="utf-8") as f:
    stored = f.read().split("\n")[:-1]
  if len(stored) != len(vocabulary) or any(c not in CATEGORIES for c in stored):
    raise ValueError(f"{path} does not hold one category per tag of the vocabulary "
                     f"({len(stored)} lines for {len(vocabulary)} tags)")
  return stored
