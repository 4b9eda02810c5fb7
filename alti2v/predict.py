"""Command line: tags for image files with a trained tagger, as JSON lines.

  python -m alti2v.predict --model_dir RUN PATHS...   (files, directories, globs)

Each line is {"path", "tags": [{"tag", "score"}, ...]} (+ "vector"), or {"path", "error"} for a
file that cannot be read (reported, not fatal). Files take the training road
(alti2v/data/image_files.py); the tags are alti2v.tasks.tagger.tag_lines'. The lines are
UTF-8, a name that is not UTF-8 written with JSON's \\u escapes (image_files.json_line).
"""
import contextlib
import sys

from absl import app, flags

from alti2v import tasks
from alti2v.data import image_files
from alti2v.training import run_dir

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished training run.")
flags.DEFINE_integer("top_k", 0, "Keep at most K tags per image (0 = no cap).")
flags.DEFINE_float("threshold", -1.0,
                   "One threshold for every tag; -1 = calibrated per-tag thresholds "
                   f"({run_dir.TAG_THRESHOLDS_FILE} from evaluate), else 0.5.")
flags.DEFINE_bool("vector", False, "Add the tag-probability vector to each line.")
flags.DEFINE_integer("batch_size", 32, "Images per batch.")
flags.DEFINE_string("output", None, "Write JSON lines here instead of stdout.")
flags.DEFINE_bool("progress", True, "Show a progress bar (images/s) on stderr.")
flags.mark_flag_as_required("model_dir")
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")
flags.register_validator("top_k", lambda v: v >= 0, "--top_k must be >= 0")
flags.register_validator("threshold", lambda v: v == -1 or 0 <= v <= 1,
                         "--threshold must be in [0, 1] (or -1: the calibrated thresholds)")


def main(argv):
  paths = image_files.expand_paths(argv[1:])
  if not paths:
    raise SystemExit("no image files given")
  lines = tasks.tagger.tag_lines(
      run_dir.load(FLAGS.model_dir), paths, top_k=FLAGS.top_k,
      threshold=None if FLAGS.threshold < 0 else FLAGS.threshold, vector=FLAGS.vector,
      batch_size=FLAGS.batch_size, progress=FLAGS.progress)
  with (open(FLAGS.output, "w", encoding="utf-8") if FLAGS.output
        else contextlib.nullcontext(sys.stdout)) as out:
    for line in lines:
      out.write(image_files.json_line(line) + "\n")


if __name__ == "__main__":
  app.run(main)
