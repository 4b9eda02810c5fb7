"""The katakana captioners as tasks: the original (`caption`) and Show and Tell (`caption_ar`).

Owns the `captions`/`caption_ids` fields, which caption each model learns, their heads
(model.py) and loss, the evaluation (CER and character BLEU-4 beside the best constant
captions'), captioning files (`python -m alti2v.caption`) and the captions sample layout.
"""
from __future__ import annotations

import collections
import logging
import os
from typing import Iterator, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v import metrics
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import image_files
from alti2v.data import input_pipeline
from alti2v.data import progress as progress_lib
from alti2v.reporting import panels
from alti2v.tasks import base
from alti2v.tasks.caption import decode
from alti2v.tasks.caption import model as caption_model
from alti2v.tasks.caption import sample_captions
from alti2v.tasks.caption import vocabulary as vocab
from alti2v.training import model_card
from alti2v.training import run_dir

CAPTIONS = "captions"  # Katakana captions (text), all of an image's references.
CAPTION_IDS = "caption_ids"  # The same, as fixed-length character ids.
METADATA_VOCABULARY = "caption_vocabulary"  # metadata.json's key for the characters.


def caption_features(length: int) -> tfds.features.FeaturesDict:
  """The features of a caption dataset: the common ones, every caption as text and as ids.

  The character vocabulary of the ids is metadata.json's "caption_vocabulary" (a nested
  Sequence of ClassLabel, which would carry it, does not read back in tfds 4.9).

  Args:
    length: ids per caption (characters, END, padding).
  """
  return features_lib.features_dict({
      CAPTIONS: tfds.features.Sequence(tfds.features.Text()),
      CAPTION_IDS: tfds.features.Tensor(shape=(None, length), dtype=np.int32),
  })


class CaptionTask(base.Task):
  """The original katakana captioner: every character from the image alone, so it learns one
  canonical caption per image (the first). Show and Tell (below) overrides what differs."""
  name = "caption"
  description = "the original katakana captioner"
  label_feature = CAPTION_IDS
  sample_layouts = (sample_captions.CAPTIONS,)
  card = model_card.CardText(
      intended_use=(
          "Short katakana captions of images like those it was trained on (alt text drafts "
          "for a person to check)."),
      limits=(
          "Its captions are at most the caption length it was built with and use only the "
          "characters of its vocabulary; compare its CER with the best constant caption's "
          "before trusting it. It decodes in a loop around the model, so it is not exported "
          "to ONNX or TFLite."),
      usage=("python -m alti2v.caption --model_dir RUN IMAGES...",
             "python -m alti2v.evaluate --model_dir RUN --data_dir DATA --split test"))

  def output_names(self, builder):
    return list(builder.info.metadata[METADATA_VOCABULARY])

  def label_fn(self, num_outputs):
    """A record's first (canonical) caption, ids.

    The original predicts every position from the image alone; trained on a caption
    drawn among several phrasings it learns their per-position blend (garbled text).
    """
    def label(example: dict):
      return tf.cast(example[CAPTION_IDS], tf.int32)[0]
    return label

  def head(self, features, num_outputs, config):
    return caption_model.caption_original_head(features, num_outputs, config.hidden_units,
                                               vocab.CAPTION_LENGTH)

  def default_loss(self):
    # PAD (id 0) positions do not count.
    return keras.losses.SparseCategoricalCrossentropy(ignore_class=vocab.PAD)

  def evaluate(self, run, data_dir, options, max_constant_candidates: int = 300):
    """CER and character BLEU-4 against every reference, beside the best constant captions'.

    The baselines are the train captions (the max_constant_candidates commonest) that, said
    for every image of the split, score the lowest CER ("constant_cer") and the highest
    BLEU-4 ("constant_bleu4"): a model that ignores the image can at best tie them.
    """
    builder = dataset_lib.load_builder(data_dir)

    def records(name, with_image=True):
      wanted = {CAPTIONS: True}
      if with_image:
        wanted[features_lib.IMAGE] = True
      ds = builder.as_dataset(split=name, decoders=tfds.decode.PartialDecoding(
          wanted, decoders={features_lib.IMAGE: tfds.decode.SkipDecoding()} if with_image
          else None))
      if not with_image:
        return ds.map(lambda ex: ex[CAPTIONS])
      return ds.map(lambda ex: (input_pipeline.to_model_input(ex[features_lib.IMAGE],
                                                               run.image_size),
                                ex[CAPTIONS]))

    decoder = decode.Decoder(run.model)
    hypotheses, references = [], []
    total = builder.info.splits[options.split].num_examples
    bar = progress_lib.maybe(options.progress, total, f"evaluate {options.split}")
    for images, refs in tfds.as_numpy(records(options.split).padded_batch(options.batch_size)):
      for ids in decoder.generate(images, options.beam_size):
        hypotheses.append(vocab.decode(ids, run.vocabulary))
      references += [[r.decode() for r in rs if r] for rs in refs]
      if bar is not None:
        bar.update(len(refs))
    if bar is not None:
      bar.close()
    train_captions = collections.Counter(
        c.decode() for cs in tfds.as_numpy(records("train", with_image=False)) for c in cs)
    candidates = [c for c, _ in train_captions.most_common(max_constant_candidates)]
    constant, constant_cer = metrics.best_constant_caption_by_cer(candidates, references)
    bleu_constant, constant_bleu = metrics.best_constant_caption(candidates, references)
    result = {
        "split": options.split, "num_examples": len(hypotheses),
        "beam_size": options.beam_size,
        "cer": metrics.character_error_rate(hypotheses, references),
        "bleu4": metrics.corpus_bleu(hypotheses, references),
        "constant_caption": constant, "constant_cer": constant_cer,
        "constant_bleu_caption": bleu_constant, "constant_bleu4": constant_bleu,
        "examples": list(zip(hypotheses[:3], [r[0] for r in references[:3]])),
    }
    logging.info("evaluation: %s", result)
    return result

  def report(self, result, model_dir):
    r = result
    lines = [
        f"{r['split']} ({r['num_examples']} images, beam {r['beam_size']}): "
        f"CER {r['cer']:.4f}  character BLEU-4 {r['bleu4']:.4f}",
        f"baseline, the best constant caption by CER 「{r['constant_caption']}」: "
        f"CER {r['constant_cer']:.4f} (the model: {r['cer'] / r['constant_cer']:.2f}x)",
        f"baseline, the best constant caption by BLEU-4 「{r['constant_bleu_caption']}」: "
        f"BLEU-4 {r['constant_bleu4']:.4f}"]
    lines += [f"  model: 「{hypothesis}」  reference: 「{reference}」"
              for hypothesis, reference in r["examples"]]
    return "\n".join(lines)

  def describe_example(self, example, names):
    captions = [c.decode("utf-8", "replace") for c in example[CAPTIONS] if c]
    return captions[0] if captions else ""

  def report_panels(self, run, data_dir, options, max_examples, num_images: int = 12):
    """A table of the split's first images with the model's caption and the references."""
    ds = dataset_lib.load_builder(data_dir).as_dataset(
        split=options.split, decoders=tfds.decode.PartialDecoding(
            {CAPTIONS: True, features_lib.IMAGE: True},
            decoders={features_lib.IMAGE: tfds.decode.SkipDecoding()}))
    ds = ds.take(min(num_images, max_examples)).map(lambda ex: (
        input_pipeline.to_model_input(ex[features_lib.IMAGE], run.image_size), ex[CAPTIONS]))
    decoder = decode.Decoder(run.model)
    rows = []
    for images, refs in tfds.as_numpy(ds.padded_batch(options.batch_size)):
      for image, ids, references in zip(images, decoder.generate(images, options.beam_size),
                                        refs):
        rows.append((image, [vocab.decode(ids, run.vocabulary),
                             " / ".join(r.decode() for r in references if r)]))
    return [panels.ImageTable(
        f"model and reference captions ({options.split}, beam {options.beam_size})",
        ["model", "references"], rows)]


class ShowAndTellTask(CaptionTask):
  """Show and Tell: autoregressive with teacher forcing, trained on a caption drawn among an
  image's references at each visit; greedy or beam-search decoding."""
  name = "caption_ar"
  description = "Show and Tell"

  def label_fn(self, num_outputs):
    """One of a record's captions (ids), drawn at random at each visit."""
    def label(example: dict):
      ids = tf.cast(example[CAPTION_IDS], tf.int32)
      pick = tf.random.uniform([], 0, tf.shape(ids)[0], dtype=tf.int32)
      return ids[pick]
    return label

  def head(self, features, num_outputs, config):
    return caption_model.show_and_tell_head(features, num_outputs, config.hidden_units,
                                            vocab.CAPTION_LENGTH)

  def pack(self, images, captions):
    """caption_in = START followed by the target shifted right (its last id dropped)."""
    start = tf.fill([tf.shape(captions)[0], 1], tf.constant(vocab.START, tf.int32))
    caption_in = tf.concat([start, captions[:, :-1]], axis=1)
    return {"image": images, "caption_in": caption_in}, captions


CAPTION = CaptionTask()
CAPTION_AR = ShowAndTellTask()
CAPTIONERS = (CAPTION.name, CAPTION_AR.name)


def caption_files(model_dir: str, paths: Sequence[str], beam_size: int = 1,
                  batch_size: int = 16, progress: bool = False
                  ) -> Iterator[tuple[str, Optional[str], str]]:
  """(path, caption or None, error) per file, in order (image_files' road, then decode).

  Args:
    progress: show the progress on stderr (alti2v/data/progress.py).
  """
  run = run_dir.load(model_dir)
  run.require_task(CAPTIONERS, "caption needs a captioner (--task=caption or caption_ar)")
  decoder = decode.Decoder(run.model)
  bar = progress_lib.maybe(progress, len(paths), "caption")
  try:
    for images, errors, batch_paths in image_files.image_dataset(
        paths, run.image_size, run.stored_size, batch_size):
      ids = decoder.generate(images.numpy(), beam_size)
      for path, error, row in zip(batch_paths.numpy(), errors.numpy(), ids):
        error = error.decode()
        yield (os.fsdecode(path), None if error else vocab.decode(row, run.vocabulary), error)
      if bar is not None:
        bar.update(len(ids))
  finally:
    if bar is not None:
      bar.close()
