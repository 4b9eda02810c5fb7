"""Command line: katakana captions for image files with a trained captioner.

  python -m alti2v.caption --model_dir RUN [--beam_size 3] PATHS...   (files, directories, globs)

Prints `path<TAB>caption` per file (`path<TAB># error: reason` for an unreadable one). Files take
predict's road (alti2v/data/image_files.py); decoding is alti2v/tasks/caption/decode.py's: the
original captioner predicts every position at once (--beam_size has nothing to search), Show
and Tell (task caption_ar) is decoded step by step, greedy or with a beam.
"""
from absl import app, flags

from alti2v import tasks
from alti2v.data import image_files

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished captioner run (task caption or caption_ar).")
flags.DEFINE_integer("beam_size", 1, "Beam width for the Show-and-Tell decoder; 1 = greedy.")
flags.DEFINE_integer("batch_size", 16, "Images per batch.")
flags.DEFINE_bool("progress", True, "Show progress on stderr: a bar on a terminal, else a "
                  "line every few seconds.")
flags.mark_flag_as_required("model_dir")
flags.register_validator("beam_size", lambda v: v >= 1, "--beam_size must be >= 1")
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")


def main(argv):
  paths = image_files.expand_paths(argv[1:])
  if not paths:
    raise SystemExit("no image files given")
  for path, text, error in tasks.caption.caption_files(FLAGS.model_dir, paths,
                                                       FLAGS.beam_size, FLAGS.batch_size,
                                                       FLAGS.progress):
    print(f"{path}\t{text}" if text is not None else f"{path}\t# error: {error}", flush=True)


if __name__ == "__main__":
  app.run(main)
