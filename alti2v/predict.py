"""Command line: tags for image files with a trained tagger, as JSON lines (and caption files).

  python -m alti2v.predict --model_dir RUN [--output FILE] PATHS...   (files, directories, globs)
      [--general_threshold G --character_threshold C --category_thresholds=meta=0.9,...]
      [--write_captions [--append | --overwrite] [--always_first_tags T] ...]

Each line is {"path", "tags": {"general": [{"tag", "score"}, ...], "character": [...], ...},
"rating": {"tag", "score"}} (+ "vector"; --flat: "tags" one list), or {"path", "error"} for a
file that cannot be read (reported, not fatal). --output appends: paths already in FILE are
skipped, a torn last line is cut, so a killed run resumes. --write_captions also writes each
image's tags into name.txt beside it (never over an existing one unless --append or
--overwrite). Files take the training road (alti2v/data/image_files.py); the lines are
alti2v.tasks.tagger.tag_line's, UTF-8, a name that is not UTF-8 written with JSON's \\u escapes.
"""
import contextlib
import sys

from absl import app, flags

from alti2v import tasks
from alti2v.data import image_files
from alti2v.training import run_dir

captions = tasks.tagger.captions
FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished training run.")
flags.DEFINE_integer("top_k", 0, "Keep at most K tags per image (0 = no cap).")
flags.DEFINE_float("threshold", -1.0,
                   "One threshold for every tag (wins over the per-category ones); -1 = "
                   f"calibrated per-tag thresholds ({run_dir.TAG_THRESHOLDS_FILE} from "
                   "evaluate), else 0.5.")
flags.DEFINE_float("general_threshold", -1.0,
                   "Threshold of every general tag; -1 = the per-tag ones.")
flags.DEFINE_float("character_threshold", -1.0,
                   "Threshold of every character tag; -1 = the per-tag ones.")
flags.DEFINE_string("category_thresholds", "",
                    "Per category, e.g. copyright=0.5,meta=0.9 (categories: "
                    f"{', '.join(tasks.tagger.CATEGORIES)}). The rating is always the best "
                    "rating tag, whatever its score.")
flags.DEFINE_bool("flat", False, "\"tags\" as one list, best first, not grouped by category.")
flags.DEFINE_bool("vector", False, "Add the tag-probability vector to each line.")
flags.DEFINE_integer("batch_size", 32, "Images per batch.")
flags.DEFINE_string("output", None,
                    "Append JSON lines here instead of stdout; paths already in it are "
                    "skipped (a killed run resumes; a torn last line is cut).")
flags.DEFINE_bool("overwrite_output", False, "Start --output over instead of resuming it.")
flags.DEFINE_bool("progress", True, "Show progress on stderr: a bar with rate and ETA on a "
                  "terminal, else a line every few seconds.")
flags.DEFINE_bool("write_captions", False,
                  "Also write each image's tags (best first) into a caption file beside it.")
flags.DEFINE_string("caption_extension", ".txt",
                    "The caption file's extension (name.jpg → name.txt).")
flags.DEFINE_string("caption_separator", ", ", "Between the tags of a caption.")
flags.DEFINE_bool("replace_underscores", False, "long_hair → long hair in captions.")
flags.DEFINE_string("undesired_tags", "", "Comma-separated tags never written to a caption.")
flags.DEFINE_string("always_first_tags", "",
                    "Comma-separated tags written first in every caption (e.g. a trigger "
                    "word), predicted or not.")
flags.DEFINE_bool("append", False, "Add the new tags to an existing caption file.")
flags.DEFINE_bool("overwrite", False, "Replace an existing caption file (default: skip the "
                  "image: a tag file of a training corpus is never changed by default).")
flags.mark_flag_as_required("model_dir")
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")
flags.register_validator("top_k", lambda v: v >= 0, "--top_k must be >= 0")
for _name in ("threshold", "general_threshold", "character_threshold"):
  flags.register_validator(_name, lambda v: v == -1 or 0 <= v <= 1,
                           f"--{_name} must be in [0, 1] (or -1: the calibrated thresholds)")
flags.register_validator("category_thresholds", lambda v: _category_thresholds(v) is not None,
                         "--category_thresholds must be category=threshold pairs, e.g. "
                         "copyright=0.5,meta=0.9, each in [0, 1]")
flags.register_multi_flags_validator(["append", "overwrite"],
                                     lambda v: not (v["append"] and v["overwrite"]),
                                     "--append and --overwrite exclude each other")


def _category_thresholds(text):
  try:
    return tasks.tagger.parse_category_thresholds(text)
  except ValueError:
    return None


def main(argv):
  paths = image_files.expand_paths(argv[1:])
  if not paths:
    raise SystemExit("no image files given")
  by_category = tasks.tagger.merge_category_thresholds(
      FLAGS.category_thresholds, FLAGS.general_threshold, FLAGS.character_threshold)
  try:
    caption_options = captions.CaptionOptions(
        extension=FLAGS.caption_extension, separator=FLAGS.caption_separator,
        replace_underscores=FLAGS.replace_underscores,
        undesired_tags=captions.split_tags(FLAGS.undesired_tags),
        always_first_tags=captions.split_tags(FLAGS.always_first_tags),
        mode=(captions.APPEND if FLAGS.append else
              captions.OVERWRITE if FLAGS.overwrite else captions.SKIP))
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  if FLAGS.output and not FLAGS.overwrite_output:
    try:
      done = image_files.resume_json_lines(FLAGS.output)
    except ValueError as e:
      raise SystemExit(f"error: {e} (--overwrite_output starts it over)") from None
    todo = [p for p in paths if p not in done]
    if len(todo) < len(paths):
      print(f"{FLAGS.output}: {len(paths) - len(todo)} of {len(paths)} files already "
            "tagged, skipped", file=sys.stderr)
    paths = todo
  lines = tasks.tagger.tag_lines(
      run_dir.load(FLAGS.model_dir), paths, top_k=FLAGS.top_k,
      threshold=None if FLAGS.threshold < 0 else FLAGS.threshold,
      category_thresholds=by_category, vector=FLAGS.vector, grouped=not FLAGS.flat,
      batch_size=FLAGS.batch_size, progress=FLAGS.progress)
  counts = {}
  mode = "w" if FLAGS.overwrite_output else "a"
  with (open(FLAGS.output, mode, encoding="utf-8") if FLAGS.output
        else contextlib.nullcontext(sys.stdout)) as out:
    for line in lines:
      if FLAGS.write_captions:
        status = _write_caption(line, caption_options)
        counts[status] = counts.get(status, 0) + 1
      out.write(image_files.json_line(line) + "\n")
      out.flush()  # Whole lines on disk: a killed run resumes after the last one.
  if FLAGS.write_captions:
    print("captions: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
          + f" ({FLAGS.caption_extension} files)", file=sys.stderr)
    if counts.get("error"):
      return 1
  return 0


def _write_caption(line: dict, options) -> str:
  """Writes line's caption file; adds {"caption": {"file", "status"(, "error")}}; the status."""
  if "error" in line:
    return "unreadable images (no caption)"
  path = captions.caption_path(line["path"], options.extension)
  try:
    path, status = captions.write_caption(line["path"], tasks.tagger.line_tags(line), options)
  except (OSError, UnicodeDecodeError) as e:
    line["caption"] = {"file": path, "status": "error", "error": str(e)}
    return "error"
  line["caption"] = {"file": path, "status": status}
  return status


if __name__ == "__main__":
  app.run(main)
