"""The character vocabulary of katakana captions: special tokens, encoding to fixed-length ids, decoding.

A caption of at most MAX_CHARS characters is stored as CAPTION_LENGTH ids: its characters,
END, then PAD. The vocabulary (≤ MAX_VOCABULARY symbols) is PAD, START, END, UNK, then the
characters of the train split by frequency; a space is stored under the name SPACE_NAME.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

MAX_CHARS = 50
CAPTION_LENGTH = MAX_CHARS + 1  # + END
MAX_VOCABULARY = 128
PAD, START, END, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
SPACE_NAME = "▁"  # A space, as a vocabulary name (label files strip whitespace).


def vocabulary_from_chars(chars: Sequence[str]) -> list[str]:
  """The vocabulary names: specials, then chars (most frequent first), spaces renamed."""
  return list(SPECIALS) + [SPACE_NAME if c == " " else c for c in chars]


def truncate(caption: str) -> tuple[str, bool]:
  """(caption cut to MAX_CHARS characters, whether it was cut)."""
  return caption[:MAX_CHARS], len(caption) > MAX_CHARS


def encode(caption: str, vocabulary: Sequence[str]) -> np.ndarray:
  """int32 [CAPTION_LENGTH]: ids of the (truncated) caption's characters, END, PAD..."""
  index = {name: i for i, name in enumerate(vocabulary)}
  ids = [index.get(SPACE_NAME if c == " " else c, UNK) for c in caption[:MAX_CHARS]]
  ids.append(END)
  return np.array(ids + [PAD] * (CAPTION_LENGTH - len(ids)), np.int32)


def decode(ids: Iterable[int], vocabulary: Sequence[str]) -> str:
  """Ids → text, stopping at END or PAD (or MAX_CHARS); START skipped; UNK shown as "?"."""
  out = []
  for i in ids:
    if len(out) == MAX_CHARS:
      break
    i = int(i)
    if i in (END, PAD):
      break
    if i == START:
      continue
    name = vocabulary[i] if i < len(vocabulary) else "?"
    out.append(" " if name == SPACE_NAME else "?" if i == UNK else name)
  return "".join(out)
