"""Command line: sort a scraped folder into OUT/ok and OUT/ng with a trained screening filter.

  python -m alti2v.screen --model_dir RUN --input_dir SCRAPED --output_dir OUT
      [--mode copy|move|manifest] [--threshold T]

Losing no file: see alti2v/tasks/screen/sorting.py (scores.csv, the journal, durable copies
and moves). Prints the counts of this run's decisions as one JSON line.
"""
import json

from absl import app, flags

from alti2v.tasks.screen import sorting

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished screening-filter run (task=screen).")
flags.DEFINE_string("input_dir", None, "The scraped folder (searched recursively).")
flags.DEFINE_string("output_dir", None, "Where ok/, ng/, unreadable/ and scores.csv go.")
flags.DEFINE_enum("mode", "copy", list(sorting.MODES),
                  "copy: the input stays; move: files leave the input; manifest: "
                  "scores.csv only.")
flags.DEFINE_float("threshold", None,
                   "Keep when score >= T; default: the threshold evaluate saved.")
flags.DEFINE_integer("batch_size", 32, "Images per batch.")
flags.DEFINE_bool("progress", True, "Show a progress bar (images/s) on stderr.")
flags.mark_flags_as_required(["model_dir", "input_dir", "output_dir"])


def main(argv):
  del argv
  counts = sorting.screen(FLAGS.model_dir, FLAGS.input_dir, FLAGS.output_dir,
                          mode=FLAGS.mode, threshold=FLAGS.threshold,
                          batch_size=FLAGS.batch_size, progress=FLAGS.progress)
  print(json.dumps({"output_dir": FLAGS.output_dir, **counts}))


if __name__ == "__main__":
  app.run(main)
