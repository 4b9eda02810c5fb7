"""Command line: sort a scraped folder into OUT/ok and OUT/ng with a trained screening filter.

  python -m alti2v.screen --model_dir RUN --input_dir SCRAPED --output_dir OUT
      [--mode copy|move|manifest] [--threshold T]

Losing no file: see alti2v/tasks/screen/sorting.py (scores.csv, the journal, the failed list,
durable copies and moves, the lock on OUT). Prints the counts of this run's files as one JSON
line. Exit status: 0 all done; 1 some copies or moves failed (the files stay where they were;
run the same command again to retry them), or some folders could not be listed (their images
wait for a later run); 2 refused before screening (no such input, OUT
held by another run or bound to another input or mode, not a screening filter).
"""
import json
import sys

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
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")
flags.register_validator("threshold", lambda v: v is None or 0 <= v <= 1,
                         "--threshold must be in [0, 1]")


def main(argv) -> int:
  del argv
  try:
    counts = sorting.screen(FLAGS.model_dir, FLAGS.input_dir, FLAGS.output_dir,
                            mode=FLAGS.mode, threshold=FLAGS.threshold,
                            batch_size=FLAGS.batch_size, progress=FLAGS.progress)
  except ValueError as e:  # A refusal (sorting.screen's Raises): one line, no traceback.
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps({"output_dir": FLAGS.output_dir, **counts}))
  if counts["failed"]:
    print(f"error: {counts['failed']} files could not be {sorting.PAST[FLAGS.mode]} "
          "(reasons logged above); they are where they were and not in scores.csv: run the "
          "same command again to retry them", file=sys.stderr)
    return 1
  if counts["unreadable_folders"]:
    print(f"error: {counts['unreadable_folders']} folders could not be listed (named above): "
          "their images were not screened; make them readable and run the same command "
          "again", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  app.run(main)
