"""python -m alti2v.export: ONNX, TFLite and SavedModel exports give the Keras model's scores."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

from alti2v import tasks
from alti2v.training import exporting
from alti2v.training import run_dir
from tests.conftest import tiny_config

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def sample_images(tiny_dataset, count=3):
  """Real sample image files, through predict's road (image_files)."""
  images_dir, _ = tiny_dataset
  paths = sorted(os.path.join(root, n) for root, _, names in os.walk(images_dir)
                 for n in names if n.endswith((".jpg", ".png")))[:count]
  return paths


def export_command(*args):
  return subprocess.run([sys.executable, "-m", "alti2v.export", *args],
                        capture_output=True, text=True, check=False, env=ENV)


def test_onnx_export_by_the_command_gives_the_keras_scores(trained_tagger, tiny_dataset,
                                                           tmp_path):
  _, model_dir = trained_tagger
  paths = sample_images(tiny_dataset)
  tasks.run_evaluation(model_dir, trained_tagger[0])  # Thresholds to carry beside.
  done = export_command("--model_dir", model_dir, "--format", "onnx",
                        "--images", ",".join(paths))
  assert done.returncode == 0, done.stderr[-2000:]
  out = os.path.join(model_dir, "export", "onnx")
  assert sorted(os.listdir(out)) == ["export.json", "model.onnx", "tag_thresholds.json",
                                     "tags.labels.txt"]
  assert f"wrote {out}/model.onnx (tagger" in done.stdout
  assert "checked on 3 of the given image files at batch 1 and 3" in done.stdout
  run = run_dir.load(model_dir)
  with open(os.path.join(out, "tags.labels.txt"), encoding="utf-8") as f:
    assert f.read().split("\n")[:-1] == run.vocabulary
  with open(os.path.join(out, "tag_thresholds.json"), encoding="utf-8") as f:
    assert list(json.load(f)["thresholds"].values()) == list(run.thresholds)
  info = json.loads(open(os.path.join(out, "export.json"), encoding="utf-8").read())
  assert info["input"]["shape"] == [None, run.image_size, run.image_size, 3]
  assert info["input"]["dtype"] == "uint8"
  assert info["output"]["shape"] == [None, len(run.vocabulary)]
  # Scores of real files, at batch 1 and batch 3, against Keras on the same pixels.
  keras_scores = np.stack([s for _, s, _ in run.score_files(paths, batch_size=3)])
  images, _ = exporting.check_images(run, paths)
  session = onnxruntime.InferenceSession(os.path.join(out, "model.onnx"),
                                         providers=["CPUExecutionProvider"])
  assert session.get_inputs()[0].shape[0] not in (1, 3)  # A symbolic batch dimension.
  for batch in (1, 3):
    scores = session.run(["scores"], {"image": images[:batch]})[0]
    assert scores.dtype == np.float32 and scores.shape == (batch, len(run.vocabulary))
    np.testing.assert_allclose(scores, keras_scores[:batch], atol=1e-4, rtol=0)
  assert not os.path.exists(out + ".tmp")


@pytest.mark.parametrize("fmt", ["tflite", "saved_model"])
def test_tflite_and_saved_model_exports_give_the_keras_scores(screen_model, tmp_path, fmt):
  run = run_dir.load(screen_model)
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (3, run.image_size, run.image_size, 3), np.uint8)
  result = exporting.export_run(run, fmt, str(tmp_path / fmt), images, "random")
  expected = np.asarray(run.model.predict_on_batch(images), np.float32)
  for batch in (1, 3):
    if fmt == "tflite":
      interpreter = tf.lite.Interpreter(model_path=result.model_path)
      index = interpreter.get_input_details()[0]["index"]
      interpreter.resize_tensor_input(index, [batch, run.image_size, run.image_size, 3])
      interpreter.allocate_tensors()
      interpreter.set_tensor(index, images[:batch])
      interpreter.invoke()
      scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    else:
      serve = tf.saved_model.load(result.model_path).signatures["serving_default"]
      scores = serve(image=tf.constant(images[:batch]))["scores"].numpy()
    assert scores.shape == (batch, 1)
    np.testing.assert_allclose(scores, expected[:batch], atol=1e-4, rtol=0)
  # The keep threshold travels beside the model once evaluate has written it (another test
  # may have evaluated the shared screen_model before this one).
  calibration = [os.path.basename(p) for p in run_dir.calibration_paths(screen_model)]
  assert sorted(os.listdir(result.output_dir)) == sorted(
      ["export.json", os.path.basename(result.model_path), "label.labels.txt", *calibration])


def test_a_mismatch_writes_nothing(trained_tagger, tmp_path):
  run = run_dir.load(trained_tagger[1])
  images = np.random.default_rng(2).integers(0, 256, (3, run.image_size, run.image_size, 3),
                                             np.uint8)
  out = tmp_path / "out"
  # onnxruntime's kernels round differently from TensorFlow's (by ~1e-7 on the tagger's 26
  # scores): at a tolerance of 1e-12 the check must catch it and leave no folder.
  with pytest.raises(exporting.ExportMismatch, match="differ from the Keras model's"):
    exporting.export_run(run, "onnx", str(out), images, "random", tolerance=1e-12)
  assert not out.exists() and not (tmp_path / "out.tmp").exists()


def test_a_mixed_precision_run_exports_in_float32(tiny_dataset, tmp_path):
  _, data = tiny_dataset
  model_dir = tmp_path / "bf16"
  tasks.train(tiny_config(data, model_dir, task="tagger",
                          steps_per_epoch=1, mixed_precision="mixed_bfloat16"))
  keras.mixed_precision.set_global_policy("float32")
  run = run_dir.load(str(model_dir))
  images, _ = exporting.check_images(run)  # From the run's dataset.
  result = exporting.export_run(run, "onnx", images=images, images_source="validation")
  assert result.output_dir == os.path.join(str(model_dir), "export", "onnx")
  session = onnxruntime.InferenceSession(result.model_path, providers=["CPUExecutionProvider"])
  scores = session.run(["scores"], {"image": images})[0]
  assert scores.dtype == np.float32
  np.testing.assert_allclose(
      scores, exporting.float32_model(run.model).predict_on_batch(images), atol=1e-4, rtol=0)
  # The mixed-precision model itself is within its bfloat16 rounding.
  np.testing.assert_allclose(scores, np.asarray(run.model.predict_on_batch(images), np.float32),
                             atol=2e-2, rtol=0)
  assert "float32" in result.info["checked"]["note"]


def test_a_captioner_is_refused_in_one_line(tiny_dataset, tmp_path):
  _, data = tiny_dataset
  model_dir = str(tmp_path / "captioner")
  os.makedirs(model_dir)
  config = tiny_config(data, model_dir, task="caption")
  model = tasks.get_task("caption").build_model(config, 12)
  run_dir.export(model_dir, model, [f"c{i}" for i in range(12)], {
      "task": "caption", "image_size": 32, "vocabulary_file": "caption_ids.labels.txt",
      "num_outputs": 12, "epochs": 1, "model": run_dir.MODEL_FILE,
      "saved_model": run_dir.SAVED_MODEL_DIR})
  done = export_command("--model_dir", model_dir, "--format", "onnx")
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      f"export: {model_dir} holds a caption model, which does not give one score vector per "
      "image (a captioner decodes in a loop: use python -m alti2v.caption); export serves "
      "single-pass scorers (tagger, screen, distill)")
  assert not os.path.exists(os.path.join(model_dir, "export"))
