"""Caption files beside images (as WD14/DeepDanbooru taggers write them for training sets):
`name.txt` holding the predicted tags, best first, joined by a separator.

An image that already has a caption file is skipped unless appending or overwriting, so that
a tagger's own corpus (name.txt tag files beside the images) is never changed by default.
Every file is written atomically: a temporary file in the same folder, then os.replace.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

SKIP, APPEND, OVERWRITE = "skip", "append", "overwrite"
MODES = (SKIP, APPEND, OVERWRITE)
# What write_caption did: a new file, added to one, replaced one, left one alone.
WRITTEN, APPENDED, OVERWRITTEN, SKIPPED = "written", "appended", "overwritten", "skipped"


@dataclasses.dataclass(frozen=True)
class CaptionOptions:
  """How tags become a caption file.

  Attributes:
    extension: the caption file is the image's name with this extension (".txt").
    separator: between tags (", ").
    replace_underscores: "long_hair" → "long hair" (the tags first and undesired alike).
    undesired_tags: never written (compared with and without underscores).
    always_first_tags: written first in every caption, in this order (e.g. a trigger
      word), whether predicted or not; a predicted one is not repeated.
    mode: SKIP an image that has a caption file, APPEND the new tags to it (those it
      lacks), or OVERWRITE it.
  """
  extension: str = ".txt"
  separator: str = ", "
  replace_underscores: bool = False
  undesired_tags: tuple[str, ...] = ()
  always_first_tags: tuple[str, ...] = ()
  mode: str = SKIP

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"unknown caption mode {self.mode!r}; known: {', '.join(MODES)}")
    if not self.extension.startswith(".") or os.sep in self.extension:
      raise ValueError(f"a caption extension starts with '.' and names no folder, got "
                       f"{self.extension!r}")


def split_tags(text: str) -> tuple[str, ...]:
  """"a, b,c" → ("a", "b", "c"): a comma-separated list (flag values), blanks dropped."""
  return tuple(t.strip() for t in text.split(",") if t.strip())


def caption_path(image_path: str, extension: str = ".txt") -> str:
  """The caption file of an image: its name with the extension ("a/1.jpg" → "a/1.txt")."""
  return os.path.splitext(image_path)[0] + extension


def _key(tag: str) -> str:
  return tag.strip().replace(" ", "_").lower()


def caption_tags(tags: Sequence[str], options: CaptionOptions) -> list[str]:
  """The caption's tags: always_first_tags, then tags (best first) minus undesired and repeats."""
  undesired = {_key(t) for t in options.undesired_tags}
  first = list(options.always_first_tags)
  seen = {_key(t) for t in first}
  rest = []
  for tag in tags:
    key = _key(tag)
    if key in undesired or key in seen:
      continue
    seen.add(key)
    rest.append(tag.replace("_", " ") if options.replace_underscores else tag)
  return first + rest


def _write_atomically(path: str, text: str) -> None:
  folder, name = os.path.split(path)
  tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_caption(image_path: str, tags: Sequence[str], options: CaptionOptions
                  ) -> tuple[str, str]:
  """Writes (or skips) an image's caption file.

  Args:
    image_path: the image; its caption file is caption_path(image_path, options.extension).
    tags: its predicted tags, best first.

  Returns:
    (caption file, what was done: WRITTEN, APPENDED, OVERWRITTEN or SKIPPED).

  Raises:
    OSError: the file cannot be read (appending) or written.
    UnicodeDecodeError: appending to a file that is not UTF-8 (it is left alone).
  """
  path = caption_path(image_path, options.extension)
  new = caption_tags(tags, options)
  exists = os.path.exists(path)
  if exists and options.mode == SKIP:
    return path, SKIPPED
  if exists and options.mode == APPEND:
    with open(path, encoding="utf-8-sig") as f:
      old = [t.strip() for t in f.read().split(options.separator.strip() or None)]
    old = [t for t in old if t]
    known = {_key(t) for t in old}
    new = old + [t for t in new if _key(t) not in known]
  _write_atomically(path, options.separator.join(new) + "\n")
  if not exists:
    return path, WRITTEN
  return path, APPENDED if options.mode == APPEND else OVERWRITTEN
