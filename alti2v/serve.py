"""Command line: a web page and JSON API that answer for a trained run, on this machine.

  python -m alti2v.serve --model_dir RUN [--port 8000]   then open http://127.0.0.1:8000/

Drop or pick images on the page to see their tags (grouped by category, a threshold slider),
keep/drop (a screening filter) or caption (a captioner); `POST /v1/tag` answers the same as
JSON (alti2v/serving/app.py documents it; /docs lists it). Uploads take predict's road.
"""
import sys

from absl import app, flags
import uvicorn

from alti2v.serving import answers
from alti2v.serving import app as app_lib
from alti2v.training import run_dir

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished training run (tagger, distill, screen, "
                    "caption or caption_ar).")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine only).")
flags.DEFINE_integer("port", 8000, "Port to listen on.")
flags.DEFINE_float("max_upload_mb", app_lib.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                   "The most MiB one request may send (413 above it).")
flags.DEFINE_integer("max_files", app_lib.DEFAULT_MAX_FILES, "The most images in one request.")
flags.DEFINE_integer("max_pixels", answers.DEFAULT_MAX_PIXELS,
                     "Images with more pixels are refused before decoding (422).")
flags.DEFINE_integer("beam_size", 1, "A Show-and-Tell captioner's beam width; 1 = greedy.")
flags.DEFINE_string("index", None, "A similarity index: answers list the most similar "
                    "indexed images (needs alti2v.similar; not available yet).")
flags.mark_flag_as_required("model_dir")
flags.register_validator("port", lambda v: 1 <= v <= 65535, "--port must be in [1, 65535]")
flags.register_validator("max_upload_mb", lambda v: v > 0, "--max_upload_mb must be > 0")
flags.register_validator("max_files", lambda v: v >= 1, "--max_files must be >= 1")
flags.register_validator("max_pixels", lambda v: v >= 1, "--max_pixels must be >= 1")
flags.register_validator("beam_size", lambda v: v >= 1, "--beam_size must be >= 1")


def main(argv) -> int:
  del argv
  if FLAGS.index is not None:
    # The hook: answers.Answerer(similar=...) takes the index's neighbours function.
    print("error: --index: similarity search (alti2v.similar) is not available in this "
          "version", file=sys.stderr)
    return 2
  try:
    answerer = answers.Answerer(run_dir.load(FLAGS.model_dir), max_pixels=FLAGS.max_pixels,
                                beam_size=FLAGS.beam_size)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  web_app = app_lib.create_app(answerer, max_upload_bytes=int(FLAGS.max_upload_mb * 2**20),
                               max_files=FLAGS.max_files)
  print(f"serving {FLAGS.model_dir} ({answerer.run.task}) on "
        f"http://{FLAGS.host}:{FLAGS.port}/ (Ctrl-C stops)", flush=True)
  uvicorn.run(web_app, host=FLAGS.host, port=FLAGS.port, log_level="warning")
  return 0


if __name__ == "__main__":
  app.run(main)
