"""Running a finished training run in Beam: a RunInference ModelHandler around run_dir.load.

  stored-form JPEG (image_files.stored_form) → PredictionResult(jpeg, the model's output row)
  (with features: PredictionResult(jpeg, (output row, hidden-layer activations)))
Each worker process loads the run once (RunInference shares it between the process's threads)
and takes predict's road: image_files.model_inputs, then the model's predict_on_batch. Beside
the jobs, not in stages/: it opens a trained run (alti2v.training, the tasks' registry).
"""
from __future__ import annotations

import os
import tempfile
import threading
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
import keras

from alti2v import tasks  # noqa: F401  Registers the tasks' custom layers before a load.
from alti2v.data import features as features_lib
from alti2v.data import image_files
from alti2v.training import run_dir
from beam_jobs.stages import files


def is_local(path: str) -> bool:
  return "://" not in path


def local_run_dir(model_dir: str) -> str:
  """model_dir itself when local; else a local copy of it (copy_run into a temporary folder).

  run_dir.load reads with open() and Keras' loader, which take local paths only.
  """
  if is_local(model_dir):
    return model_dir
  return copy_run(model_dir, tempfile.mkdtemp(prefix="alti2v-run-"))


def copy_run(model_dir: str, local_dir: str) -> str:
  """Copies the files a finished run is opened with, through Beam's FileSystems (gs://).

  model_info.json, the model file, its output names (and their categories) and the
  calibration files; not the
  checkpoints, logs or SavedModel.

  Returns:
    local_dir.

  Raises:
    FileNotFoundError: model_dir holds no finished run.
  """
  if not FileSystems.exists(files.join(model_dir, run_dir.MODEL_INFO_FILE)):
    raise FileNotFoundError(f"{model_dir} holds no finished training run "
                            f"({run_dir.MODEL_INFO_FILE} is missing)")
  info = run_dir.read_json(_copy(model_dir, run_dir.MODEL_INFO_FILE, local_dir))
  # A tagger's categories lie beside its vocabulary ("tags.labels.txt" → "tags.categories.txt").
  categories = features_lib.categories_file(
      info["vocabulary_file"][:-len(features_lib.vocabulary_file(""))])
  for name in (info["model"], info["vocabulary_file"], categories,
               *run_dir.CALIBRATION_FILES):
    if name in (info["model"], info["vocabulary_file"]) or FileSystems.exists(
        files.join(model_dir, name)):
      _copy(model_dir, name, local_dir)
  return local_dir


def _copy(model_dir: str, name: str, local_dir: str) -> str:
  path = os.path.join(local_dir, name)
  tmp = path + ".tmp"
  with FileSystems.open(files.join(model_dir, name)) as source, open(tmp, "wb") as target:
    while chunk := source.read(16 * 2**20):
      target.write(chunk)
  os.replace(tmp, path)
  return path


def open_run(model_dir: str) -> run_dir.TrainedRun:
  """The finished run in model_dir (local or gs://), loaded (run_dir.load)."""
  return run_dir.load(local_run_dir(model_dir))


class LoadedRun:
  """A run as a worker holds it: the threads of a process share one model, one call at a time.

  Keras builds its predict function on the first call, which is not safe to race; the
  model itself uses every core (TensorFlow's intra-op threads) within one call.
  """

  def __init__(self, run: run_dir.TrainedRun, features: bool = False):
    """Args:
      features: the model also outputs the hidden-layer activations (run.hidden_model()'s
        output, Illustration2Vec's feature vector): one pass through the backbone for both.
    """
    self.run = run
    self.features = features
    self.model = (keras.Model(run.model.inputs,
                              [run.model.outputs[0], run.hidden_model().outputs[0]])
                  if features else run.model)
    self.lock = threading.Lock()


class TrainedRunHandler(ModelHandler[bytes, PredictionResult, LoadedRun]):
  """RunInference with a finished run: stored-form JPEG → PredictionResult(jpeg, output row).

  Wrap it in KeyedModelHandler to carry each image's path as the key. The row is what
  TrainedRun.score_files gives predict for the same file: float32, one value per output name;
  with features, the inference is (that row, the activations TrainedRun.embed_files gives).
  """

  def __init__(self, model_dir: str, *, min_batch_size: int = 1, max_batch_size: int = 32,
               share_across_processes: bool = False, features: bool = False):
    """Args:
      model_dir: a finished run, local (on every worker) or gs://.
      min_batch_size, max_batch_size: the bounds of Beam's adaptive batching (BatchElements).
      share_across_processes: one model per machine instead of one per SDK process (a GPU
        worker: its memory holds one copy).
      features: also return the hidden-layer activations (a tagger's or student's).
    """
    super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size,
                     large_model=share_across_processes)
    self._model_dir = model_dir
    self._features = features

  def load_model(self) -> LoadedRun:
    return LoadedRun(open_run(self._model_dir), self._features)

  def run_inference(self, batch: Sequence[bytes], model: LoadedRun,
                    inference_args: Optional[dict[str, Any]] = None
                    ) -> Iterable[PredictionResult]:
    images = image_files.model_inputs(batch, model.run.image_size)
    if len(images) == 1:
      # A batch of one takes other CPU kernels (matrix times vector), which round the last
      # bit differently: scored as two, a file's scores do not depend on Beam's batching.
      images = np.concatenate([images, images])
    with model.lock:
      outputs = model.model.predict_on_batch(images)
    if model.features:
      scores, hidden = (np.asarray(o, np.float32) for o in outputs)
      return [PredictionResult(jpeg, (row, vector))
              for jpeg, row, vector in zip(batch, scores, hidden)]  # zip: unpadded
    scores = np.asarray(outputs, np.float32)
    return [PredictionResult(jpeg, row) for jpeg, row in zip(batch, scores)]  # zip: unpadded

  def get_num_bytes(self, batch: Sequence[bytes]) -> int:
    return sum(len(jpeg) for jpeg in batch)

  def validate_inference_args(self, inference_args: Optional[dict[str, Any]]) -> None:
    if inference_args:
      raise ValueError(f"TrainedRunHandler takes no inference_args, got {inference_args}")
