"""Command line: a dataset or a training run as pictures, in one report.html with its PNGs.

  python -m alti2v.report DATASET_DIR [--output DIR]       examples per split, label frequency
      (the vocabulary cut-off marked) and top labels per split, labels per image, stored sizes
      and aspect ratios, rejections by reason with example paths, random training images
  python -m alti2v.report RUN_DIR [--output DIR] [--split test] [--max_examples N]
      the training curves (history.csv) and the task's figures on recomputed predictions
      (tagger: AP per tag, PR curves, thresholds; screen: score histograms at the keep
      threshold, confusion matrix; distill: student against teacher; captioners: captions),
      then its dataset's report

Reads the shards once, streaming (alti2v/reporting/build.py); the output defaults to DIR/report/.
"""
import sys

from absl import app, flags

from alti2v.data import dataset as dataset_lib
from alti2v.reporting import build

FLAGS = flags.FLAGS
flags.DEFINE_string("output", "", f"Folder for report.html and its PNGs (default DIR/"
                    f"{build.REPORT_DIR}).")
flags.DEFINE_integer("num_samples", 16, "Random training images shown in the grid.")
flags.DEFINE_string("split", "test", "A run: the split its figures are computed on.")
flags.DEFINE_integer("max_examples", 2000, "A run: images of --split predicted at most.")
flags.DEFINE_integer("batch_size", 64, "A run: images per batch.")
flags.DEFINE_string("data_dir", "", "A run: its dataset (default: the one it trained on).")
flags.DEFINE_integer("seed", 0, "Picks the grid's random images.")
flags.DEFINE_bool("progress", True, "Show a progress bar on stderr (when it is a terminal).")
flags.register_validator("num_samples", lambda v: v >= 0, "--num_samples must be >= 0")
flags.register_validator("max_examples", lambda v: v >= 1, "--max_examples must be >= 1")
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python -m alti2v.report DATASET_DIR|RUN_DIR [--output DIR]",
                         exitcode=2)
  try:
    path = build.write_report(argv[1], build.ReportOptions(
        output_dir=FLAGS.output, num_samples=FLAGS.num_samples, split=FLAGS.split,
        max_examples=FLAGS.max_examples, batch_size=FLAGS.batch_size,
        data_dir=FLAGS.data_dir, seed=FLAGS.seed, progress=FLAGS.progress))
  except dataset_lib.DatasetError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  app.run(main)
