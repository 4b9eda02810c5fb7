"""Command line: a trained run as a file other runtimes load (ONNX, TFLite, SavedModel).

  python -m alti2v.export --model_dir RUN --format onnx|tflite|saved_model [--output DIR]
      [--images PATHS...]                   (check on these files; default: the run's dataset)

Writes RUN/export/<format>/ (or --output): the model (uint8 images [batch, S, S, 3] in,
float32 scores [batch, outputs] out, any batch size), the vocabulary, the thresholds evaluate
calibrated and export.json (how to prepare an image). The export is run through its runtime
(onnxruntime, the TFLite interpreter, TensorFlow) at batch 1 and 3 and must give the Keras
model's scores to 1e-4, or nothing is written (alti2v/training/exporting.py). Captioners are
refused: they decode in a loop (python -m alti2v.caption).
"""
from absl import app, flags

from alti2v import tasks  # noqa: F401  (registers the tasks' custom layers and losses)
from alti2v.data import image_files
from alti2v.training import exporting
from alti2v.training import run_dir

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished training run.")
flags.DEFINE_enum("format", None, list(exporting.FORMATS), "The runtime to export for.")
flags.DEFINE_string("output", None, "Output folder; default MODEL_DIR/export/FORMAT "
                    "(replaced whole).")
flags.DEFINE_list("images", [], "Image files (or folders, globs) to check the export on; "
                  "default: the run's dataset.")
flags.DEFINE_float("tolerance", exporting.TOLERANCE,
                   "Largest absolute difference from the Keras model's scores allowed.")
flags.mark_flags_as_required(["model_dir", "format"])
flags.register_validator("tolerance", lambda v: v > 0, "--tolerance must be > 0")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    run = run_dir.load(FLAGS.model_dir)
    exporting.check_exportable(run)
    images, source = exporting.check_images(run, image_files.expand_paths(FLAGS.images))
    result = exporting.export_run(run, FLAGS.format, FLAGS.output, images, source,
                                  FLAGS.tolerance)
  except (ValueError, FileNotFoundError, exporting.ExportMismatch) as e:
    raise SystemExit(f"export: {e}") from None
  checked = result.info["checked"]
  worst = max(checked["max_abs_difference_by_batch"].values())
  print(f"wrote {result.model_path} ({run.task}, input uint8 [batch, {run.image_size}, "
        f"{run.image_size}, 3], output float32 [batch, {len(run.vocabulary)}])")
  print(f"checked on {checked['images']} at batch "
        f"{' and '.join(checked['max_abs_difference_by_batch'])}: max |{FLAGS.format} - "
        f"Keras| = {worst:.2g} (tolerance {checked['tolerance']:g})")
  print(f"beside it: {', '.join([result.info['vocabulary_file'], *result.info['thresholds_files'], run_dir.EXPORT_INFO_FILE])}")


if __name__ == "__main__":
  app.run(main)
