"""The Illustration2Vec tagger: multi-label tags, learned from images beside Safebooru-style tag files.

Owns the `tags` field, the multi-hot label, the head and loss, the evaluation (mAP beside each
tag's train frequency as a constant score; F1 at per-tag thresholds calibrated on validation),
tagging files (`python -m alti2v.predict`) and the Safebooru sample layout.
"""
from __future__ import annotations

import csv
import logging
import os
from typing import Iterator, Optional, Sequence

import keras
import numpy as np
import tensorflow_datasets as tfds

from alti2v import metrics
from alti2v import models
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import input_pipeline
from alti2v.data import samples
from alti2v.reporting import panels
from alti2v.tasks import base
from alti2v.tasks.tagger import categories as categories_lib
from alti2v.training import model_card
from alti2v.training import run_dir

TAGS = "tags"  # Tag ids into the vocabulary (tags.labels.txt).
NO_TAG_FILE = "no_tag_file"  # An image without its .txt tag file.
# A tag file that is neither UTF-8 nor UTF-8/UTF-16 with a byte-order mark, or that holds
# NUL, control characters or U+FFFD (binary, or text already damaged by a conversion).
BAD_TAG_ENCODING = "bad_tag_encoding"
REJECTION_REASONS = (NO_TAG_FILE, BAD_TAG_ENCODING)
MIN_SUPPORT = 5  # Validation positives below which a tag's calibrated threshold is floored.
RARE_FLOOR = 0.5


def tagged_features(vocabulary: Sequence[str]) -> tfds.features.FeaturesDict:
  """The features of a tagged-image dataset: the common ones and its tags.

  Args:
    vocabulary: tag names; a tag's index in it is its class id.
  """
  return features_lib.features_dict(
      {TAGS: tfds.features.Sequence(tfds.features.ClassLabel(names=list(vocabulary)))})


def train_frequencies(data_dir: str, num_tags: int) -> np.ndarray:
  """Fraction of train images carrying each tag, from the builder's tag_counts.tsv."""
  num_train = dataset_lib.load_builder(data_dir).info.splits["train"].num_examples
  counts = np.zeros(num_tags)
  with open(os.path.join(data_dir, features_lib.TAG_COUNTS_FILE), encoding="utf-8") as f:
    next(f)
    for line in f:
      _, tag_id, train, *_ = line.rstrip("\n").split("\t")
      counts[int(tag_id)] = int(train)
  return counts / max(1, num_train)


# Sample data: the Safebooru layout.


def _tag_text(tags: Sequence[str], style: int) -> str:
  """The tag file in one of the layouts found in the wild."""
  if style == 0:
    return " ".join(tags) + "\n"
  if style == 1:  # Comma separated, human spelling: "Red Circle, two shapes".
    return ", ".join(t.replace("_", " ").title() if i % 2 else t
                     for i, t in enumerate(tags))
  return "\n".join(tags) + "\n"


def write_corpus(out_dir: str, num_images: int, seed: int = 0) -> list[str]:
  """Writes `num_images` images with their tag files into out_dir (a few per sub-folder).

  Args:
    out_dir: created if missing.
    num_images: how many images.
    seed: the corpus for a seed is the same on every machine.

  Returns:
    The image paths written, in index order.
  """
  paths = []
  for index in range(num_images):
    sample = samples.draw_sample(index, seed)
    folder = os.path.join(out_dir, f"{index // 1000:04d}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{index:06d}{samples.image_extension(index)}")
    samples.save_image(sample.image, path)
    with open(os.path.join(folder, f"{index:06d}.txt"), "w", encoding="utf-8") as f:
      f.write(_tag_text(sample.tags, index % 3))
    paths.append(path)
  return paths


SAMPLE_CATEGORIES_FILE = "tag_categories.csv"


def sample_categories() -> dict[str, str]:
  """The sample tags' categories, as a toy Danbooru: each coloured shape ("red_circle") is a
  character, each background a copyright, the shape counts meta; the rest general."""
  found = {f"{color}_{shape}": categories_lib.CHARACTER
           for color in samples.COLORS for shape in samples.SHAPES}
  found.update({f"{b}_background": categories_lib.COPYRIGHT for b in samples.BACKGROUNDS})
  found.update({t: categories_lib.META for t in samples.COUNT_TAGS.values()})
  return found


def write_tag_categories(path: str) -> str:
  """Writes the sample's categories file (CSV name,category with a header); returns path."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["name", "category"])
    writer.writerows(sorted(sample_categories().items()))
  return path


def _write_safebooru(out_dir: str, num_images: int, seed: int) -> str:
  paths = write_corpus(out_dir, num_images, seed)
  categories = write_tag_categories(os.path.join(out_dir, SAMPLE_CATEGORIES_FILE))
  return (f"wrote {len(paths)} images with tag files under {out_dir}, and their tag "
          f"categories in {categories}")


SAFEBOORU = samples.SampleLayout("safebooru", "N.jpg beside N.txt (tagger)", _write_safebooru)


class TaggerTask(base.Task):
  """Illustration2Vec: an independent sigmoid per tag, binary cross-entropy."""
  name = "tagger"
  description = "multi-label tags"
  label_feature = TAGS
  rejection_reasons = REJECTION_REASONS
  sample_layouts = (SAFEBOORU,)
  card = model_card.CardText(
      intended_use=(
          "Tagging illustrations like those it was trained on with the tags of its vocabulary "
          "(search, sorting, suggesting tags to a person who checks them), and its "
          "probability vector as a feature for similar-image search."),
      limits=(
          "It knows only the tags of its vocabulary, learnt from the tag files as scraped: a "
          "tag the taggers often forgot is under-predicted. Rare tags (few validation "
          "positives) have floored thresholds and unreliable figures: read per_tag_<split>.csv "
          "before trusting one. Images unlike the training data (photos, another style) get "
          "scores without meaning. Not for decisions about people."),
      usage=("python -m alti2v.predict --model_dir RUN IMAGES...",
             "python -m alti2v.evaluate --model_dir RUN --data_dir DATA --split test",
             "python -m alti2v.export --model_dir RUN --format onnx   # or tflite, saved_model"))

  def label_fn(self, num_outputs):
    return input_pipeline.multi_hot(TAGS, num_outputs)

  def head(self, features, num_outputs, config):
    return models.dense_head(features, num_outputs, config.hidden_units, config.dropout)

  def default_loss(self):
    return keras.losses.BinaryCrossentropy()

  def metrics(self, num_outputs):
    return [
        keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_outputs,
                          name="pr_auc"),
        keras.metrics.Precision(thresholds=0.5, name="precision"),
        keras.metrics.Recall(thresholds=0.5, name="recall"),
    ]

  def evaluate(self, run, data_dir, options):
    """Calibrates per-tag thresholds on validation (saved for predict), evaluates the split,
    writes the per-tag CSV.

    Returns:
      {"map", "constant_map", "micro_f1", "macro_f1", "num_examples", "per_tag_csv",
       "thresholds" (the thresholds file), "split", "per_category": {category: {"map",
       "constant_map", "num_tags"}} for each category of the vocabulary}.
    """
    split = options.split
    val_labels, val_scores = self.predict_split(run, data_dir, "validation",
                                                options.batch_size,
                                                progress=options.progress)
    thresholds = metrics.calibrate_thresholds(val_labels, val_scores, MIN_SUPPORT, RARE_FLOOR)
    thresholds_path = run_dir.write_tag_thresholds(
        run.model_dir, run.vocabulary, thresholds, calibrated_on="validation",
        num_examples=len(val_labels), min_support=MIN_SUPPORT, rare_floor=RARE_FLOOR)
    labels, scores = (val_labels, val_scores) if split == "validation" else (
        self.predict_split(run, data_dir, split, options.batch_size,
                           progress=options.progress))
    map_, aps = metrics.mean_average_precision(labels, scores)
    constant = np.broadcast_to(train_frequencies(data_dir, len(run.vocabulary)), scores.shape)
    constant_map, _ = metrics.mean_average_precision(labels, constant)
    f1 = metrics.f1_at(labels, scores, thresholds)
    per_category = _per_category_map(
        labels, scores, constant, categories_lib.read_categories(run.model_dir, run.vocabulary))
    csv_path = os.path.join(run.model_dir, run_dir.PER_TAG_CSV.format(split=split))
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["tag", "support", "precision", "recall", "f1", "ap", "threshold"])
      for j, tag in enumerate(run.vocabulary):
        writer.writerow([tag, int(f1["support"][j]), f"{f1['precision'][j]:.4f}",
                         f"{f1['recall'][j]:.4f}", f"{f1['f1'][j]:.4f}",
                         "" if np.isnan(aps[j]) else f"{aps[j]:.4f}", f"{thresholds[j]:.4f}"])
    result = {"split": split, "num_examples": int(len(labels)), "map": map_,
              "constant_map": constant_map, "micro_f1": f1["micro_f1"],
              "macro_f1": f1["macro_f1"], "per_tag_csv": csv_path,
              "thresholds": thresholds_path, "per_category": per_category}
    logging.info("evaluation: %s", result)
    return result

  def report(self, result, model_dir):
    r = result
    lines = [
        f"{r['split']} ({r['num_examples']} images): "
        f"mAP {r['map']:.4f}  (baseline, each tag's train frequency: "
        f"{r['constant_map']:.4f}, {r['map'] / r['constant_map']:.2f}x)  "
        f"micro-F1 {r['micro_f1']:.4f}  macro-F1 {r['macro_f1']:.4f}"]
    per_category = r.get("per_category", {})
    if len(per_category) > 1:  # All general: the line above says it all.
      for category, c in per_category.items():
        ratio = (f"{c['map'] / c['constant_map']:.2f}x" if c["constant_map"] > 0
                 else "no baseline")
        lines.append(f"  {category:<10} {c['num_tags']:>4} tags: mAP {c['map']:.4f}  "
                     f"(baseline {c['constant_map']:.4f}, {ratio})")
    lines.append(f"per-tag metrics: {r['per_tag_csv']}; thresholds: {r['thresholds']}")
    return "\n".join(lines)

  def describe_example(self, example, names):
    return " ".join(names[i] for i in example[TAGS])

  def report_panels(self, run, data_dir, options, max_examples):
    """AP per tag (weakest named), PR curves of the commonest tags, the calibrated thresholds."""
    labels, scores = self.predict_split(run, data_dir, options.split, options.batch_size,
                                        max_examples=max_examples)
    _, aps = metrics.mean_average_precision(labels, scores)
    about = f"{options.split}, {len(labels)} images"
    found = [
        panels.Ranked(f"AP per tag ({about}), weakest first", run.vocabulary, aps, "AP",
                      note="tags without a positive in the split are left out"),
        panels.Curves(f"PR curves of the 6 commonest tags ({about})", "recall", "precision",
                      panels.pr_curves(labels, scores, run.vocabulary,
                                       np.argsort(-labels.sum(0), kind="stable")[:6]))]
    if run.thresholds is not None:
      found.append(panels.Histogram(
          "per-tag thresholds calibrated on validation (evaluate)", "threshold",
          {"tags": run.thresholds}, bins=np.linspace(0, 1, 21).tolist(),
          note=f"tags with fewer than {MIN_SUPPORT} validation positives get at least "
               f"{RARE_FLOOR}"))
    return found


def _per_category_map(labels: np.ndarray, scores: np.ndarray, constant: np.ndarray,
                      categories: Sequence[str]) -> dict[str, dict]:
  """{category: {"map", "constant_map", "num_tags"}} for each category of the vocabulary
  (categories.CATEGORIES order); a category whose tags have no positive in the split has
  NaN mAPs."""
  found = {}
  for category in categories_lib.CATEGORIES:
    columns = [j for j, c in enumerate(categories) if c == category]
    if not columns:
      continue
    map_, _ = metrics.mean_average_precision(labels[:, columns], scores[:, columns])
    constant_map, _ = metrics.mean_average_precision(labels[:, columns], constant[:, columns])
    found[category] = {"map": map_, "constant_map": constant_map, "num_tags": len(columns)}
  return found


TAGGER = TaggerTask()
