"""Beam job: images + COCO-format captions (STAIR / YJ Captions) → a katakana caption dataset.

  python -m beam_jobs.build_caption_dataset --input_dir IMAGES --captions_json captions.json \
      --output_dir DATASET

COCO format: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]},
file_name relative to IMAGES. Captions are read in katakana (alti2v.tasks.caption.katakana), cut to 50
characters (counted), and all of an image's captions are kept in its one record, in the
files' order (the first is the image's canonical caption): the JPEG is stored once,
evaluation scores against every reference, and training draws one caption per visit
(caption_ar) or learns the canonical one (caption). The character vocabulary (≤ 128 symbols
with PAD, START, END, UNK; a space is a symbol) comes from the train split: metadata.json's
caption_vocabulary.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from alti2v.data import features as features_lib
from alti2v.data import imaging
from alti2v.tasks.caption import katakana
from alti2v.tasks.caption import task as caption
from alti2v.tasks.caption import vocabulary as captions_lib
from beam_jobs.stages import elements
from beam_jobs.stages import files
from beam_jobs.stages import job
from beam_jobs.stages import read
from beam_jobs.stages import vocabulary
from beam_jobs.stages import write
from beam_jobs.stages.elements import REJECTED, Candidate, ImageRecord

Captions = tuple[str, ...]  # The raw label: an image's captions, canonical first.


@dataclasses.dataclass(frozen=True)
class EncodedCaptions:
  """The stored label: the captions cut to MAX_CHARS, and each as CAPTION_LENGTH ids."""
  texts: tuple[str, ...]
  ids: tuple[np.ndarray, ...]


def name_key(relative: str) -> bytes:
  """The join key of an image's path relative to --input_dir: its bytes (os.fsencode).

  Beam encodes a str key as strict UTF-8, and a scraped name that is not UTF-8 reaches
  Python surrogate-escaped (as does a COCO file_name written with such \\udcNN escapes).
  """
  relative = os.path.normpath(relative)
  try:
    return os.fsencode(relative)
  except UnicodeEncodeError:  # A lone surrogate that no file name gives: matches no file.
    return relative.encode("utf-8", "surrogatepass")


def load_coco(indexed_path: tuple[int, str]) -> list[tuple[bytes, tuple[int, int, str]]]:
  """(name_key(file_name), (file index, annotation index, caption)) of a COCO caption file.

  The indices keep each image's captions in the order the files list them: the first
  caption of an image is its canonical one (the one-caption captioner learns it).
  """
  file_index, path = indexed_path
  with FileSystems.open(path) as f:
    coco = json.load(f)
  names = {image["id"]: image["file_name"] for image in coco["images"]}
  pairs = []
  for i, annotation in enumerate(coco["annotations"]):
    if annotation["image_id"] in names and str(annotation.get("caption", "")).strip():
      pairs.append((name_key(names[annotation["image_id"]]),
                    (file_index, i, str(annotation["caption"]))))
  return pairs


def join_images(key_and_groups, input_dir: str):
  """(name_key, ([image paths as bytes], [[(file, index, caption)]])) → Candidate[Captions].

  An image without captions, or captions without an image, is rejected instead.

  The candidate's captions are in the caption files' order (canonical first).
  """
  relative, (paths, caption_lists) = key_and_groups
  captions = [c for _, _, c in sorted(c for group in caption_lists for c in group)]
  paths = [os.fsdecode(p) for p in paths]
  if not paths:
    yield elements.rejected(files.join(input_dir, os.fsdecode(relative)),
                            features_lib.NO_IMAGE_FILE,
                            f"{len(captions)} captions in the JSON, no image file")
    return
  for path in paths:
    if not captions:
      yield elements.rejected(path, features_lib.NO_LABEL_FILE,
                              "no caption for this image in the JSON")
    else:
      yield Candidate(path, known_label=tuple(captions))


class EncodeCaptions(beam.DoFn):
  """(split, ImageRecord[Captions]) → (split, ImageRecord[EncodedCaptions]), truncating."""

  def setup(self):
    self._truncated = elements.counter("captions_truncated")
    self._captions = elements.counter("captions")

  def process(self, split_and_record, vocabulary):
    split, record = split_and_record
    texts, ids = [], []
    for caption in record.label:
      text, cut = captions_lib.truncate(caption)
      if cut:
        self._truncated.inc()
        yield beam.pvalue.TaggedOutput("truncated", 1)
      self._captions.inc()
      texts.append(text)
      ids.append(captions_lib.encode(text, vocabulary))
    yield split, dataclasses.replace(record, label=EncodedCaptions(tuple(texts), tuple(ids)))


class CaptionDatasetBuilder(job.DatasetBuilder):
  """Images + COCO captions → ImageRecord[Captions] (katakana) → ImageRecord[EncodedCaptions]."""
  module = "beam_jobs.build_caption_dataset"
  description = __doc__.split("\n\n")[0]
  default_dataset_name = "captions"
  worker_extras = ("caption",)  # MeCab (fugashi), its dictionary and jaconv: read_label.
  input_help = "The images; COCO file_names are relative to it. Local or gs://."
  dataset_description = ("Images with katakana captions, built by alti2v's "
                         "build_caption_dataset.")

  def add_flags(self, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--captions_json", required=True, action="append",
                        help="COCO-format caption file (repeat the flag for several).")
    parser.add_argument("--min_char_count", type=int, default=1,
                        help="Train occurrences a character needs to enter the vocabulary "
                        "(rarer ones become UNK).")

  def validate(self, args: argparse.Namespace) -> None:
    if args.min_char_count < 1:
      raise ValueError(f"--min_char_count must be >= 1, got {args.min_char_count}")

  def candidates(self, p: beam.Pipeline, args: argparse.Namespace
                 ) -> tuple[beam.PCollection, tuple]:
    """The images under --input_dir joined with their captions by COCO file_name."""
    images = p | "Discover" >> read.DiscoverImages(args.input_dir, None)
    keyed_images = images.candidates | "KeyImages" >> beam.Map(
        lambda c: (name_key(files.relative_path(c.image_path, args.input_dir)),
                   os.fsencode(c.image_path)))
    # (name_key, image path), both bytes
    keyed_captions = (
        p
        | "CaptionFiles" >> beam.Create(list(enumerate(args.captions_json)))
        | "ReadCoco" >> beam.FlatMap(load_coco)
        # (file_name, (file index, annotation index, caption))
        | "GroupCaptions" >> beam.GroupByKey()
        | "ListCaptions" >> beam.MapTuple(lambda key, cs: (key, list(cs))))
    joined = (
        {"images": keyed_images, "captions": keyed_captions}
        | "Join" >> beam.CoGroupByKey()
        | "ToCandidates" >> beam.FlatMap(
            lambda kv: join_images((kv[0], (kv[1]["images"], kv[1]["captions"])),
                                   args.input_dir)).with_outputs(
                                       REJECTED, main="candidates"))
    return joined.candidates, (images[REJECTED], joined[REJECTED])

  def read_label(self, candidate: Candidate[Captions], args: argparse.Namespace) -> Captions:
    """The candidate's captions in katakana (runs on the workers: MeCab per thread)."""
    converted = tuple(c for c in (katakana.to_katakana(t) for t in candidate.known_label) if c)
    if not converted:
      raise imaging.Rejected(features_lib.NO_TAGS, "no caption left after conversion")
    return converted

  def label_examples(self, with_split: beam.PCollection,
                     args: argparse.Namespace) -> job.Labelled:
    chars = (
        with_split
        | "TrainChars" >> beam.FlatMap(
            lambda sr: [c for caption in sr[1].label for c in caption[:captions_lib.MAX_CHARS]]
            if sr[0] == "train" else ())
        | "CharVocabulary" >> vocabulary.BuildVocabulary(
            captions_lib.MAX_VOCABULARY - len(captions_lib.SPECIALS), args.min_char_count)
        | "WithSpecials" >> beam.Map(captions_lib.vocabulary_from_chars))
    chars_side = beam.pvalue.AsSingleton(chars)
    encoded = with_split | "Encode" >> beam.ParDo(EncodeCaptions(), chars_side).with_outputs(
        "truncated", main="examples")
    # (split, ImageRecord[EncodedCaptions])
    truncated = encoded.truncated | "SumTruncated" >> beam.CombineGlobally(sum)
    stats = (
        encoded.examples
        | "CaptionCount" >> beam.Map(lambda sr: len(sr[1].label.texts))
        | "SumCaptions" >> beam.CombineGlobally(sum)
        | "WithTruncated" >> beam.Map(
            lambda n, truncated: {"captions": n, "captions_truncated": truncated},
            truncated=beam.pvalue.AsSingleton(truncated)))
    return job.Labelled(encoded.examples, chars_side, stats)

  def features(self, chars: Sequence[str]):
    del chars  # Ids are stored as integers, not as a ClassLabel of the vocabulary.
    return caption.caption_features(captions_lib.CAPTION_LENGTH)

  def to_example(self, record: ImageRecord[EncodedCaptions]) -> dict:
    return {**write.example_fields(record), caption.CAPTIONS: list(record.label.texts),
            caption.CAPTION_IDS: np.stack(record.label.ids).astype(np.int32)}

  def describe(self, chars: Sequence[str], stats: dict) -> tuple[dict, None]:
    """The character vocabulary and the caption counts."""
    return ({"vocabulary_size": len(chars), caption.METADATA_VOCABULARY: list(chars),
             "max_caption_chars": captions_lib.MAX_CHARS, **stats}, None)


BUILDER = CaptionDatasetBuilder()


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return BUILDER.run(argv)


if __name__ == "__main__":
  BUILDER.main()
