"""Beam job: images + COCO-format captions (STAIR / YJ Captions) → a katakana caption dataset.

  python -m beam_jobs.build_caption_dataset --input_dir IMAGES --captions_json captions.json \
      --output_dir DATASET

COCO format: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]},
file_name relative to IMAGES. Captions are read in katakana (alti2v.katakana), cut to 50
characters (counted), and all of an image's captions are kept in its one record, in the
files' order (the first is the image's canonical caption): the JPEG is stored once,
evaluation scores against every reference, and training draws one caption per visit
(caption_ar) or learns the canonical one (caption). The character vocabulary (≤ 128 symbols with PAD, START, END, UNK; a space is a
symbol) comes from the train split: metadata.json's caption_vocabulary.
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

from alti2v import captions as captions_lib
from alti2v import features as features_lib
from alti2v import imaging
from beam_jobs import stages

DEFAULT_DATASET_NAME = "captions"


def load_coco(indexed_path: tuple[int, str]) -> list[tuple[str, tuple[int, int, str]]]:
  """(file_name, (file index, annotation index, caption)) of a COCO-format caption file.

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
      pairs.append((names[annotation["image_id"]], (file_index, i, str(annotation["caption"]))))
  return pairs


def join_images(key_and_groups, input_dir: str):
  """(relative path, ([image paths], [[(file, index, caption)]])) → Candidate, or a rejection.

  The candidate's captions are in the caption files' order (canonical first).
  """
  relative, (paths, caption_lists) = key_and_groups
  captions = [c for _, _, c in sorted(c for group in caption_lists for c in group)]
  paths = list(paths)
  if not paths:
    yield beam.pvalue.TaggedOutput(stages.REJECTED, stages.rejection(
        FileSystems.join(input_dir, relative), imaging.NO_IMAGE_FILE,
        f"{len(captions)} captions in the JSON, no image file"))
    return
  for path in paths:
    if not captions:
      yield beam.pvalue.TaggedOutput(stages.REJECTED, stages.rejection(
          path, imaging.NO_LABEL_FILE, "no caption for this image in the JSON"))
    else:
      yield stages.Candidate(path, None, tuple(captions))


def read_captions(candidate: stages.Candidate) -> tuple[str, ...]:
  """The candidate's captions in katakana (runs on the workers: MeCab per thread)."""
  from alti2v import katakana  # pylint: disable=import-outside-toplevel
  converted = tuple(c for c in (katakana.to_katakana(t) for t in candidate.label) if c)
  if not converted:
    raise imaging.Rejected(imaging.NO_TAGS, "no caption left after conversion")
  return converted


class EncodeCaptions(beam.DoFn):
  """(split, record with katakana captions) → (split, record with (texts, ids)), truncating."""

  def setup(self):
    self._truncated = stages.counter("captions_truncated")
    self._captions = stages.counter("captions")

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
    yield split, dataclasses.replace(record, label=(tuple(texts), tuple(ids)))


def to_example(record: stages.ImageRecord) -> dict:
  texts, ids = record.label
  return {**stages.example_fields(record), features_lib.CAPTIONS: list(texts),
          features_lib.CAPTION_IDS: np.stack(ids).astype(np.int32)}


def make_features(_: Sequence[str]):
  return features_lib.caption_features(captions_lib.CAPTION_LENGTH)


def build_parser() -> argparse.ArgumentParser:
  parser = stages.base_parser(
      "python -m beam_jobs.build_caption_dataset", __doc__.split("\n\n")[0],
      input_help="The images; COCO file_names are relative to it. Local or gs://.",
      default_name=DEFAULT_DATASET_NAME)
  parser.add_argument("--captions_json", required=True, action="append",
                      help="COCO-format caption file (repeat the flag for several).")
  parser.add_argument("--min_char_count", type=int, default=1,
                      help="Train occurrences a character needs to enter the vocabulary "
                      "(rarer ones become UNK).")
  return parser


def validate_args(args: argparse.Namespace) -> None:
  if args.min_char_count < 1:
    raise ValueError(f"--min_char_count must be >= 1, got {args.min_char_count}")
  stages.validate_common_args(args)


def build_pipeline(p: beam.Pipeline, args: argparse.Namespace) -> None:
  root = args.input_dir.rstrip("/") + "/"
  images = (
      p | "Discover" >> stages.DiscoverImages(args.input_dir, None))
  keyed_images = images.candidates | "KeyImages" >> beam.Map(
      lambda c: (c.image_path[len(root):], c.image_path))
  keyed_captions = (
      p
      | "CaptionFiles" >> beam.Create(list(enumerate(args.captions_json)))
      | "ReadCoco" >> beam.FlatMap(load_coco)
      # (file_name, (file index, annotation index, caption))
      | "GroupCaptions" >> beam.GroupByKey()
      | "ListCaptions" >> beam.MapTuple(lambda name, cs: (os.path.normpath(name), list(cs))))
  joined = (
      {"images": keyed_images, "captions": keyed_captions}
      | "Join" >> beam.CoGroupByKey()
      | "ToCandidates" >> beam.FlatMap(
          lambda kv: join_images((kv[0], (kv[1]["images"], kv[1]["captions"])),
                                 args.input_dir)).with_outputs(
                                     stages.REJECTED, main="candidates"))
  with_split, rejected = joined.candidates | "DecodeAndSplit" >> stages.DecodeAndSplit(
      args, read_captions)
  # (split, ImageRecord with katakana captions)
  chars = (
      with_split
      | "TrainChars" >> beam.FlatMap(
          lambda sr: [c for caption in sr[1].label for c in caption[:captions_lib.MAX_CHARS]]
          if sr[0] == "train" else ())
      | "CharVocabulary" >> stages.BuildVocabulary(
          captions_lib.MAX_VOCABULARY - len(captions_lib.SPECIALS), args.min_char_count)
      | "WithSpecials" >> beam.Map(captions_lib.vocabulary_from_chars))
  vocabulary = beam.pvalue.AsSingleton(chars)
  encoded = with_split | "Encode" >> beam.ParDo(EncodeCaptions(), vocabulary).with_outputs(
      "truncated", main="examples")
  stats = (
      encoded.examples
      | "CaptionCount" >> beam.Map(lambda sr: len(sr[1].label[0]))
      | "SumCaptions" >> beam.CombineGlobally(sum)
      | "WithTruncated" >> beam.Map(
          lambda n, truncated: {"captions": n, "captions_truncated": sum(truncated)},
          truncated=beam.pvalue.AsList(encoded.truncated)))
  _ = encoded.examples | "WriteDataset" >> stages.WriteDataset(
      args, (images[stages.REJECTED], joined[stages.REJECTED], *rejected), make_features,
      to_example, vocabulary, stats, describe,
      "Images with katakana captions, built by alti2v's build_caption_dataset.")


def describe(vocabulary: Sequence[str], stats: dict) -> tuple[dict, None]:
  return ({"builder": "beam_jobs.build_caption_dataset", "vocabulary_size": len(vocabulary),
           "caption_vocabulary": list(vocabulary),
           "max_caption_chars": captions_lib.MAX_CHARS, **stats}, None)


def run(argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
  """Parses argv, builds the dataset, and returns the finished Beam result (metrics)."""
  return stages.run_job(argv, build_parser(), validate_args, build_pipeline)


if __name__ == "__main__":
  stages.main(run, build_parser())
