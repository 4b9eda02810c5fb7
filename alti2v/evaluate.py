"""Command line for evaluation: each figure of a finished run beside its naive baseline.

  python -m alti2v.evaluate --model_dir RUN --data_dir DATASET --split test [--output_json F]
      [--beam_size B]                                     (captioners)
      [--target_precision P | --target_recall R]          (screening filter)

The run's own task evaluates it (alti2v.tasks): a tagger's mAP beside the constant predictor's
(each tag's train frequency) and F1 at per-tag thresholds calibrated on validation (saved for
predict); a screening filter's keep threshold (saved for screen) and ROC-AUC; a student's MAE
beside the mean-score predictor's; a captioner's CER and BLEU-4 beside the best constant caption's.
"""
from absl import app, flags

from alti2v import tasks
from alti2v.training import run_dir

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished training run.")
flags.DEFINE_string("data_dir", None, "The dataset directory.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("beam_size", 1, "Captioners: beam width (1 = greedy).")
flags.DEFINE_float("target_precision", None,
                   "screen: the keep threshold is the lowest with this precision "
                   "on validation.")
flags.DEFINE_float("target_recall", None,
                   "screen: the keep threshold is the highest with this recall on "
                   "validation. Neither: max F1.")
flags.DEFINE_bool("progress", True, "Show progress on stderr: a bar on a terminal, else a "
                  "line every few seconds.")
flags.DEFINE_string("output_json", None,
                    "Also write the result (every figure and its baseline) to this file.")
flags.mark_flags_as_required(["model_dir", "data_dir"])
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")
flags.register_validator("beam_size", lambda v: v >= 1, "--beam_size must be >= 1")
for _name in ("target_precision", "target_recall"):
  flags.register_validator(_name, lambda v: v is None or 0 < v <= 1,
                           f"--{_name} must be in (0, 1]")


def main(argv):
  del argv
  task, result = tasks.run_evaluation(FLAGS.model_dir, FLAGS.data_dir, tasks.EvalOptions(
      split=FLAGS.split, batch_size=FLAGS.batch_size, beam_size=FLAGS.beam_size,
      target_precision=FLAGS.target_precision, target_recall=FLAGS.target_recall,
      progress=FLAGS.progress))
  print(task.report(result, FLAGS.model_dir))
  if FLAGS.output_json:
    run_dir.write_json(FLAGS.output_json, {"task": task.name, **result})


if __name__ == "__main__":
  app.run(main)
