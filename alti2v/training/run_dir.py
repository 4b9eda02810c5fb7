"""The run directory (model_dir): every file a training run and its evaluation leave, and loading a run.

Training writes config.json first and model_info.json last (its presence = a finished run);
evaluate adds the calibration files; evaluate, predict, screen and caption open a run with load().
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from typing import Any, Collection, Iterator, Optional, Sequence

import keras
import numpy as np

from alti2v.data import image_files
from alti2v.data import progress as progress_lib
from alti2v.training.config import TrainConfig

# Files of a model_dir, in the order a run writes them.
CONFIG_FILE = "config.json"  # The TrainConfig; a rerun with other settings is refused.
BACKUP_DIR = "backup"  # Latest state (weights, optimizer, epoch), written every epoch.
BEST_MODEL = "best.keras"  # The best epoch by validation loss so far.
BEST_FILE = "best.json"  # Its epoch and validation loss.
HISTORY_FILE = "history.csv"
LOG_DIR = "logs"  # TensorBoard.
MODEL_FILE = "model.keras"  # The exported model: the best epoch's weights.
SAVED_MODEL_DIR = "saved_model"
# Beside the model: its output names, in features.vocabulary_file(the task's label feature).
MODEL_INFO_FILE = "model_info.json"  # Written last: the run is finished.

# Written by evaluate (calibrated on the validation split), read by predict and screen.
TAG_THRESHOLDS_FILE = "tag_thresholds.json"  # A tagger's threshold per tag.
KEEP_THRESHOLD_FILE = "keep_threshold.json"  # A screening filter's one keep threshold.
PER_TAG_CSV = "per_tag_{split}.csv"  # A tagger's figures per tag on a split.
METRICS_FILE = "metrics.json"  # evaluate's result per split, each figure beside its baseline.
MODEL_CARD_FILE = "README.md"  # The model card (training/model_card.py): training, then evaluate.

# Written by python -m alti2v.export (training/exporting.py): EXPORT_DIR/<format>/ holds the
# model file, the vocabulary, the calibration files and EXPORT_INFO_FILE (how to feed it).
EXPORT_DIR = "export"
EXPORT_FILES = {"onnx": "model.onnx", "tflite": "model.tflite", "saved_model": "saved_model"}
EXPORT_INFO_FILE = "export.json"
# The names runs written before had for the same files; still read.
_OLD_NAMES = {TAG_THRESHOLDS_FILE: "thresholds.json", KEEP_THRESHOLD_FILE: "threshold.json"}
# Removed when a run trains on: they describe the old export.
CALIBRATION_FILES = (TAG_THRESHOLDS_FILE, KEEP_THRESHOLD_FILE, *_OLD_NAMES.values())

DEFAULT_THRESHOLD = 0.5  # A tag the thresholds file does not name.


def read_json(path: str) -> Optional[Any]:
  """The JSON value in path, or None when there is no such file."""
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_json(path: str, value: Any) -> None:
  """Writes value to path atomically: a reader sees the old file or the new, never half."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)
  os.replace(tmp, path)


def save_model(model: keras.Model, path: str) -> None:
  """model.save(path) atomically (never a half-written model at path)."""
  tmp = path[:-len(".keras")] + ".tmp.keras"
  model.save(tmp)
  os.replace(tmp, path)


def _read_calibration(model_dir: str, name: str) -> Optional[Any]:
  """A calibration file's value, under its name or the name older runs gave it."""
  value = read_json(os.path.join(model_dir, name))
  return value if value is not None else read_json(os.path.join(model_dir, _OLD_NAMES[name]))


def prepare(config: TrainConfig) -> Optional[dict]:
  """Creates model_dir, or checks that it holds this same run.

  Returns:
    A finished run's model_info (nothing to train), else None. Training on a finished
    run (more epochs) removes its model_info and calibration files first.

  Raises:
    ValueError: model_dir holds a run with other settings, or --overwrite was asked
      of a folder that is not a run.
  """
  if config.overwrite and os.path.exists(config.model_dir):
    if os.listdir(config.model_dir) and not os.path.exists(
        os.path.join(config.model_dir, CONFIG_FILE)):
      raise ValueError(f"--overwrite: {config.model_dir} is not a training run "
                       f"(no {CONFIG_FILE}); refusing to delete it")
    logging.info("--overwrite: removing %s", config.model_dir)
    shutil.rmtree(config.model_dir)
  os.makedirs(config.model_dir, exist_ok=True)
  stored = read_json(os.path.join(config.model_dir, CONFIG_FILE))
  current = dataclasses.asdict(config)
  if stored is not None:
    as_json = lambda value: json.loads(json.dumps(value))  # Tuples → lists, as stored.
    # A field the stored run lacks is newer than the run, which had its default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    changed = sorted(k for k in current if k not in TrainConfig.RESUMABLE_CHANGES
                     and as_json(current[k]) != stored.get(k, as_json(defaults[k])))
    if changed:
      raise ValueError(
          f"{config.model_dir} holds a run with other settings ({', '.join(changed)}); "
          "use another model_dir or --overwrite")
  write_json(os.path.join(config.model_dir, CONFIG_FILE), current)
  info = read_json(os.path.join(config.model_dir, MODEL_INFO_FILE))
  if info is not None and info["epochs"] >= config.epochs:
    return info
  if info is not None:  # Training on: the old export, calibration and figures no longer apply.
    for name in (MODEL_INFO_FILE, *CALIBRATION_FILES, METRICS_FILE):
      path = os.path.join(config.model_dir, name)
      if os.path.exists(path):
        os.unlink(path)
  return None


def export(model_dir: str, model: keras.Model, vocabulary: Sequence[str], info: dict,
           copy_files: Sequence[str] = ()) -> None:
  """Writes the finished run: model.keras, a SavedModel, the output names, model_info last.

  Args:
    vocabulary: the output names, written to info["vocabulary_file"].
    info: model_info.json (the task, sizes, epochs, and the files named here).
    copy_files: files copied into model_dir under their own names (what the dataset
      stores beside the vocabulary, e.g. a tagger's tag categories).
  """
  for path in copy_files:
    target = os.path.join(model_dir, os.path.basename(path))
    shutil.copyfile(path, target + ".tmp")
    os.replace(target + ".tmp", target)
  save_model(model, os.path.join(model_dir, info["model"]))
  saved_model = os.path.join(model_dir, info["saved_model"])
  tmp = saved_model + ".tmp"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  model.export(tmp, verbose=False)
  if os.path.exists(saved_model):
    shutil.rmtree(saved_model)
  os.rename(tmp, saved_model)
  with open(os.path.join(model_dir, info["vocabulary_file"]), "w", encoding="utf-8") as f:
    f.write("".join(f"{t}\n" for t in vocabulary))
  write_json(os.path.join(model_dir, MODEL_INFO_FILE), info)  # Last: the run is finished.


def read_info(model_dir: str) -> dict:
  """model_info.json of a finished run.

  Raises:
    FileNotFoundError: model_dir holds no finished run.
  """
  info = read_json(os.path.join(model_dir, MODEL_INFO_FILE))
  if info is None:
    raise FileNotFoundError(f"{model_dir} holds no finished training run "
                            f"({MODEL_INFO_FILE} is missing)")
  return info


def write_tag_thresholds(model_dir: str, vocabulary: Sequence[str],
                         thresholds: np.ndarray, **about) -> str:
  """Saves a tagger's per-tag thresholds (with `about`: how they were chosen); returns the path."""
  path = os.path.join(model_dir, TAG_THRESHOLDS_FILE)
  write_json(path, {**about, "thresholds": {t: float(v) for t, v in zip(vocabulary, thresholds)}})
  return path


def read_tag_thresholds(model_dir: str, vocabulary: Sequence[str]) -> Optional[np.ndarray]:
  """The per-tag thresholds evaluate saved, in vocabulary order (DEFAULT_THRESHOLD for a tag
  it does not name); None when evaluate has not run."""
  saved = _read_calibration(model_dir, TAG_THRESHOLDS_FILE)
  if saved is None:
    return None
  by_tag = saved["thresholds"]
  return np.array([by_tag.get(t, DEFAULT_THRESHOLD) for t in vocabulary])


def calibration_paths(model_dir: str) -> list[str]:
  """The calibration files evaluate wrote in model_dir (under their current or old names)."""
  found = []
  for name in (TAG_THRESHOLDS_FILE, KEEP_THRESHOLD_FILE):
    for candidate in (name, _OLD_NAMES[name]):
      path = os.path.join(model_dir, candidate)
      if os.path.exists(path):
        found.append(path)
        break
  return found


def write_keep_threshold(model_dir: str, threshold: float, **about) -> str:
  """Saves a screening filter's keep threshold (with `about`); returns the path."""
  path = os.path.join(model_dir, KEEP_THRESHOLD_FILE)
  write_json(path, {"threshold": threshold, **about})
  return path


def read_keep_threshold(model_dir: str) -> Optional[float]:
  """The keep threshold evaluate saved; None when evaluate has not run."""
  saved = _read_calibration(model_dir, KEEP_THRESHOLD_FILE)
  return None if saved is None else float(saved["threshold"])


class TrainedRun:
  """A finished run, loaded: its model, output names, sizes and calibrated thresholds.

  The custom layers and losses of the run's task must be registered first (import
  alti2v.tasks, as every command does).

  Attributes:
    model_dir: where it was loaded from.
    info: model_info.json.
    task: the task's name.
    model: the exported Keras model.
    vocabulary: the output names (tags, classes, labels or characters).
    image_size: the model's input side.
    stored_size: the side images were stored at in its dataset (predict normalises
      files to it first, as the builder did).
    thresholds: per-output thresholds evaluate calibrated (a tagger's), or None.
  """

  def __init__(self, model_dir: str):
    self.model_dir = model_dir
    self.info = read_info(model_dir)
    self.task = self.info["task"]
    self.model = keras.models.load_model(os.path.join(model_dir, self.info["model"]))
    with open(os.path.join(model_dir, self.info["vocabulary_file"]), encoding="utf-8") as f:
      self.vocabulary = f.read().split("\n")[:-1]
    self.image_size = self.info["image_size"]
    self.stored_size = self.info.get("stored_image_size") or self.image_size
    self.thresholds = read_tag_thresholds(model_dir, self.vocabulary)
    self._hidden = None  # hidden_model(), built on first use.

  def require_task(self, names: Collection[str], needed: str) -> None:
    """Raises ValueError "MODEL_DIR holds a TASK model; NEEDED" unless the task is in names."""
    if self.task not in names:
      raise ValueError(f"{self.model_dir} holds a {self.task} model; {needed}")

  def score_files(self, paths: Sequence[str], batch_size: int = 32,
                  progress: bool = False, label: str = "scoring"
                  ) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """(path, model output or None, error) per file, in order (image_files' road).

    Args:
      progress: show the progress (data/progress.py) on stderr, its lines starting with label.
    """
    return self._run_files(self.model, paths, batch_size, progress, label)

  def embed_files(self, paths: Sequence[str], batch_size: int = 32,
                  progress: bool = False, label: str = "embedding"
                  ) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """(path, hidden-layer activations or None, error) per file, in order (score_files' road).

    The activations are the input of the output layer: with a dense head (tagger, student,
    screening filter) the `hidden_units` ReLU outputs, Illustration2Vec's feature vector.

    Raises:
      ValueError: the model does not end in one Dense layer over one image input.
    """
    return self._run_files(self.hidden_model(), paths, batch_size, progress, label)

  def hidden_model(self) -> keras.Model:
    """The model cut below its output layer: images → the output Dense layer's input.

    Found by the layer's type, not its name, so runs written before the head's layers were
    named still load.

    Raises:
      ValueError: the model does not end in one Dense layer over one image input (a
        captioner's decoder).
    """
    if self._hidden is None:
      output = self.model.layers[-1]
      if (len(self.model.inputs) != 1 or len(self.model.outputs) != 1
          or not isinstance(output, keras.layers.Dense)):
        raise ValueError(f"{self.model_dir} holds a {self.task} model, which does not end "
                         "in a dense head over the image: it has no feature vector")
      self._hidden = keras.Model(self.model.inputs, output.input, name="hidden")
    return self._hidden

  def _run_files(self, model: keras.Model, paths: Sequence[str], batch_size: int,
                 progress: bool, label: str
                 ) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    bar = progress_lib.maybe(progress, len(paths), label)
    try:
      for images, errors, batch_paths in image_files.image_dataset(
          paths, self.image_size, self.stored_size, batch_size):
        scores = np.asarray(model.predict_on_batch(images), np.float32)
        for path, error, row in zip(batch_paths.numpy(), errors.numpy(), scores):
          error = error.decode()
          yield os.fsdecode(path), None if error else row, error
        if bar is not None:
          bar.update(len(scores))
    finally:
      if bar is not None:
        bar.close()


def load(model_dir: str) -> TrainedRun:
  """The finished run in model_dir (FileNotFoundError when there is none)."""
  return TrainedRun(model_dir)
