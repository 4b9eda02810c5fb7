"""Exports a finished run for other runtimes (ONNX, TFLite, a SavedModel), checked against Keras.

export_run writes RUN/export/<format>/: the model file, the vocabulary, the calibrated
thresholds and export.json (how to feed it), through a temporary folder renamed last, and only
after the exported model gave the Keras model's scores on sample images at two batch sizes.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from typing import Optional, Sequence

import keras
import numpy as np
import onnxruntime
import tensorflow as tf
import tf2onnx
# The TFLite converter leaves Keras 3's resource variables unread (every score NaN) unless the
# graph's weights are constants first; tf2onnx freezes with this same function.
from tensorflow.python.framework import convert_to_constants

from alti2v.data import image_files
from alti2v.data import input_pipeline
from alti2v.training import run_dir

FORMATS = tuple(run_dir.EXPORT_FILES)  # onnx, tflite, saved_model.
TOLERANCE = 1e-4  # Max absolute difference from the Keras model's scores.
INPUT_NAME = "image"
OUTPUT_NAME = "scores"
ONNX_OPSET = 17
CHECK_BATCH = 3  # Checked at batch 1 and at this batch: the batch size is dynamic.
CHECK_SPLIT = "validation"  # Every trained run's dataset has one (training needs it).


class ExportMismatch(RuntimeError):
  """The exported model's scores differ from the Keras model's by more than the tolerance."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """What export_run wrote.

  Attributes:
    output_dir: the folder (model file, vocabulary, thresholds, export.json).
    model_path: the model file (or SavedModel folder) in it.
    info: export.json's contents.
  """
  output_dir: str
  model_path: str
  info: dict


def check_exportable(run: run_dir.TrainedRun) -> None:
  """Refuses a model that is not one image in, one score vector per image out.

  A captioner decodes in a loop around its model (Show and Tell also reads the caption so
  far): its forward pass alone would give per-position logits, not captions.

  Raises:
    ValueError: in one line, naming the command that serves the model.
  """
  model = run.model
  if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
    raise ValueError(
        f"{run.model_dir} holds a {run.task} model, which does not give one score vector "
        "per image (a captioner decodes in a loop: use python -m alti2v.caption); export "
        "serves single-pass scorers (tagger, screen, distill)")


def float32_model(model: keras.Model) -> keras.Model:
  """The model computing in float32 (same weights): a mixed-precision model rebuilt, else itself.

  Runtimes other than TensorFlow run bfloat16 poorly or not at all; the float32 copy is
  what is exported and what its scores are checked against.
  """
  mixed = []

  def to_float32(config):
    if isinstance(config, dict):
      if (config.get("class_name") == "DTypePolicy"
          and config["config"]["name"].startswith("mixed_")):
        mixed.append(True)
        return {**config, "config": {**config["config"], "name": "float32"}}
      return {key: to_float32(value) for key, value in config.items()}
    if isinstance(config, list):
      return [to_float32(value) for value in config]
    return config

  config = to_float32(model.get_config())  # Nested models (the backbone) included.
  if not mixed:
    return model
  copy = model.__class__.from_config(config)
  copy.set_weights(model.get_weights())
  return copy


def serving_function(model: keras.Model, image_size: int) -> tf.types.experimental.PolymorphicFunction:
  """uint8 [batch, S, S, 3] "image" → {"scores": float32 [batch, outputs]}, any batch size."""
  @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8,
                                              name=INPUT_NAME)])
  def serve(image):
    return {OUTPUT_NAME: tf.cast(model(image, training=False), tf.float32)}
  serve.model = model  # Tracked: a SavedModel of serve saves the weights.
  return serve


def check_images(run: run_dir.TrainedRun, paths: Sequence[str] = (),
                 count: int = CHECK_BATCH) -> tuple[np.ndarray, str]:
  """(uint8 images [count, S, S, 3], where they come from) to check an export on.

  Args:
    paths: image files (predict's road); none = the run's dataset (its validation split),
      or seeded random pixels when that dataset is gone.
  """
  if paths:
    images = [image for image, error, _ in image_files.image_dataset(
        paths, run.image_size, run.stored_size, 1).unbatch().as_numpy_iterator() if not error]
    if not images:
      raise ValueError("none of the --images files could be read")
    return np.stack(images[:count]), f"{min(count, len(images))} of the given image files"
  config = run_dir.read_json(os.path.join(run.model_dir, run_dir.CONFIG_FILE)) or {}
  data_dir = config.get("data_dir", "")
  if data_dir and os.path.isdir(data_dir):
    batch = next(iter(input_pipeline.input_fn(
        data_dir, CHECK_SPLIT, count, training=False, image_size=run.image_size,
        label_fn=lambda example: tf.zeros([]), label_features=())))
    images = batch[0].numpy()
    return images, f"{len(images)} {CHECK_SPLIT} images of {data_dir}"
  rng = np.random.default_rng(0)
  return (rng.integers(0, 256, (count, run.image_size, run.image_size, 3), np.uint8),
          f"{count} random images ({data_dir or 'the dataset'} is gone)")


def _scores_onnx(path: str, images: np.ndarray) -> np.ndarray:
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


def _scores_tflite(path: str, images: np.ndarray) -> np.ndarray:
  interpreter = tf.lite.Interpreter(model_path=path)
  (input_detail,), (output_detail,) = (interpreter.get_input_details(),
                                       interpreter.get_output_details())
  interpreter.resize_tensor_input(input_detail["index"], images.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(input_detail["index"], images)
  interpreter.invoke()
  return interpreter.get_tensor(output_detail["index"])


def _scores_saved_model(path: str, images: np.ndarray) -> np.ndarray:
  serve = tf.saved_model.load(path).signatures["serving_default"]
  return serve(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()


def _write_onnx(serve, path: str) -> None:
  model_proto, _ = tf2onnx.convert.from_function(
      serve, input_signature=serve.input_signature, opset=ONNX_OPSET)
  # tf2onnx names the output after the graph's tensor ("Identity:0"): give it our name.
  graph = model_proto.graph
  old = graph.output[0].name
  for node in graph.node:
    node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
  graph.output[0].name = OUTPUT_NAME
  with open(path, "wb") as f:
    f.write(model_proto.SerializeToString())


def _write_tflite(serve, path: str) -> None:
  frozen = convert_to_constants.convert_variables_to_constants_v2(serve.get_concrete_function())
  converted = tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
  with open(path, "wb") as f:
    f.write(converted)


def _write_saved_model(serve, path: str) -> None:
  module = tf.Module()
  module.model = serve.model
  module.serve = serve
  tf.saved_model.save(module, path, signatures={"serving_default": serve})


_WRITERS = {"onnx": _write_onnx, "tflite": _write_tflite, "saved_model": _write_saved_model}
_SCORERS = {"onnx": _scores_onnx, "tflite": _scores_tflite,
            "saved_model": _scores_saved_model}
_LOADING = {
    "onnx": "onnxruntime.InferenceSession('model.onnx').run(['scores'], {'image': images})[0]",
    "tflite": "tf.lite.Interpreter('model.tflite'): resize_tensor_input(0, images.shape), "
              "allocate_tensors, set_tensor, invoke, get_tensor of the one output",
    "saved_model": "tf.saved_model.load('saved_model').signatures['serving_default']"
                   "(image=images)['scores']",
}


def _input_description(run: run_dir.TrainedRun) -> dict:
  s = run.image_size
  return {
      "name": INPUT_NAME, "dtype": "uint8", "shape": [None, s, s, 3],
      "layout": "NHWC, RGB, values 0-255 (the batch size is free)",
      "preprocessing_in_the_model": "RGB→BGR and the ImageNet mean subtracted "
                                    "(VGG preprocessing): feed raw pixels, not normalised",
      "caller_must": [
          "decode the image to RGB (EXIF orientation applied, transparency on white)",
          f"resize so that its longer side is {run.stored_size} px, aspect kept (never "
          "upscaled), as the dataset builder stored it",
          f"resize so that the longer side is {s} px (if it is not already) and pad "
          f"with black to {s}x{s}, centred: tf.image.resize_with_pad, rounded to uint8 "
          f"(the training data at {s} px had only the pad; data stored at 2, 4 or 8 "
          f"times {s} px was decoded at 1/2, 1/4 or 1/8 scale: "
          "alti2v.data.input_pipeline.to_model_input)",
      ],
      "same_in_python": "alti2v.data.image_files.image_dataset(paths, image_size, "
                        "stored_image_size, batch_size)",
  }


def _output_description(run: run_dir.TrainedRun, vocabulary_file: str) -> dict:
  return {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None, len(run.vocabulary)],
          "meaning": f"one sigmoid probability per name of {vocabulary_file} (same order)"}


def default_output(model_dir: str, fmt: str) -> str:
  """RUN/export/<format>."""
  return os.path.join(model_dir, run_dir.EXPORT_DIR, fmt)


def export_run(run: run_dir.TrainedRun, fmt: str, output_dir: Optional[str] = None,
               images: Optional[np.ndarray] = None, images_source: str = "",
               tolerance: float = TOLERANCE) -> ExportResult:
  """Exports run's model to fmt, checks it against Keras, writes it with what it needs beside.

  Args:
    run: a finished run (run_dir.load) with one image in and a score vector out.
    fmt: one of FORMATS.
    output_dir: default RUN/export/<format>; replaced whole if it exists.
    images: uint8 [n, S, S, 3] the export is checked on, at batch 1 and batch n
      (default: check_images(run)).
    images_source: what images are, for export.json.
    tolerance: the largest absolute difference from the Keras model's scores allowed.

  Returns:
    What was written.

  Raises:
    ValueError: an unknown format, or a model that does not export (check_exportable).
    ExportMismatch: the exported model's scores differ from Keras' (nothing is written).
  """
  if fmt not in FORMATS:
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
  check_exportable(run)
  if images is None:
    images, images_source = check_images(run)
  output_dir = output_dir or default_output(run.model_dir, fmt)
  model = float32_model(run.model)
  keras_scores = np.asarray(model.predict_on_batch(images), np.float32)
  mixed_difference = (float(np.abs(np.asarray(run.model.predict_on_batch(images), np.float32)
                                   - keras_scores).max()) if model is not run.model else 0.0)

  tmp = output_dir.rstrip(os.sep) + ".tmp"
  if os.path.exists(tmp):  # Left by an export that was killed.
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  try:
    model_name = run_dir.EXPORT_FILES[fmt]
    model_path = os.path.join(tmp, model_name)
    _WRITERS[fmt](serving_function(model, run.image_size), model_path)
    differences = {}
    for batch in sorted({1, len(images)}):
      scores = _SCORERS[fmt](model_path, images[:batch])
      if scores.shape != keras_scores[:batch].shape:
        raise ExportMismatch(f"the {fmt} model gives scores of shape {scores.shape} for "
                             f"{batch} images; Keras gives {keras_scores[:batch].shape}")
      differences[batch] = float(np.abs(scores - keras_scores[:batch]).max())
      if not differences[batch] <= tolerance:
        raise ExportMismatch(
            f"the {fmt} model's scores differ from the Keras model's by up to "
            f"{differences[batch]:.3g} at batch {batch} (tolerance {tolerance:g}); "
            "nothing was written")
    vocabulary_file = run.info["vocabulary_file"]
    shutil.copyfile(os.path.join(run.model_dir, vocabulary_file),
                    os.path.join(tmp, vocabulary_file))
    calibration = []
    for path in run_dir.calibration_paths(run.model_dir):
      shutil.copyfile(path, os.path.join(tmp, os.path.basename(path)))
      calibration.append(os.path.basename(path))
    info = {
        "format": fmt, "model": model_name, "task": run.task,
        "source": os.path.abspath(run.model_dir),
        "input": _input_description(run),
        "output": _output_description(run, vocabulary_file),
        "vocabulary_file": vocabulary_file,
        "thresholds_files": calibration,
        "load": _LOADING[fmt],
        "checked": {"images": images_source, "tolerance": tolerance,
                    "max_abs_difference_by_batch": {str(b): d for b, d in differences.items()}},
    }
    if model is not run.model:
      info["checked"]["note"] = (
          f"the run trained in {run.info.get('mixed_precision')}; the export computes in "
          f"float32 and is checked against the same weights in float32 (the mixed-"
          f"precision Keras model differs from it by up to {mixed_difference:.3g})")
    run_dir.write_json(os.path.join(tmp, run_dir.EXPORT_INFO_FILE), info)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.exists(output_dir):
    shutil.rmtree(output_dir)
  os.rename(tmp, output_dir)
  logging.info("exported %s to %s", fmt, output_dir)
  return ExportResult(output_dir, os.path.join(output_dir, model_name), info)
