"""Command line: a web page and JSON API that answer for a trained run, on this machine.

  python -m alti2v.serve --model_dir RUN [--port 8000]   then open http://127.0.0.1:8000/

  python -m alti2v.serve --model_dir RUN --index VECTORS [--similar_k 8] [--metric cosine]

Drop or pick images on the page to see their tags (grouped by category, a threshold slider),
keep/drop (a screening filter) or caption (a captioner); `POST /v1/tag` answers the same as
JSON (alti2v/serving/app.py documents it; /docs lists it). Uploads take predict's road.
With --index (a vectors folder from alti2v.embed, made with this very model), each answer
also lists the most similar indexed images, with thumbnails.
"""
import sys

from absl import app, flags
import uvicorn

from alti2v import similarity
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
flags.DEFINE_string("index", None, "A vectors folder (python -m alti2v.embed) made with "
                    "--model_dir's model: answers list the most similar indexed images.")
flags.DEFINE_integer("similar_k", answers.DEFAULT_SIMILAR_K,
                     "With --index: similar images per upload.")
flags.DEFINE_enum("metric", "cosine", list(similarity.METRICS),
                  "With --index: cosine (the float vectors) or hamming (the bits).")
flags.DEFINE_enum("index_type", "exact", list(similarity.INDEX_TYPES),
                  "With --index: exact, or ivf/hnsw (approximate, for millions; built on "
                  "first use and kept in the folder).")
flags.mark_flag_as_required("model_dir")
flags.register_validator("port", lambda v: 1 <= v <= 65535, "--port must be in [1, 65535]")
flags.register_validator("max_upload_mb", lambda v: v > 0, "--max_upload_mb must be > 0")
flags.register_validator("max_files", lambda v: v >= 1, "--max_files must be >= 1")
flags.register_validator("max_pixels", lambda v: v >= 1, "--max_pixels must be >= 1")
flags.register_validator("beam_size", lambda v: v >= 1, "--beam_size must be >= 1")
flags.register_validator("similar_k", lambda v: v >= 1, "--similar_k must be >= 1")


def main(argv) -> int:
  del argv
  try:
    if FLAGS.index is None:
      run, similar = run_dir.load(FLAGS.model_dir), None
    else:
      # The run must be the one the vectors were made with (their model fingerprint).
      vectors = similarity.read_vectors(FLAGS.index)
      run = similarity.open_query_run(vectors, FLAGS.model_dir)
      similar = answers.SimilarImages(vectors, run, k=FLAGS.similar_k, metric=FLAGS.metric,
                                      index_type=FLAGS.index_type)
    answerer = answers.Answerer(run, max_pixels=FLAGS.max_pixels, beam_size=FLAGS.beam_size,
                                similar=similar)
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  web_app = app_lib.create_app(answerer, max_upload_bytes=int(FLAGS.max_upload_mb * 2**20),
                               max_files=FLAGS.max_files)
  index = f", similar images from {FLAGS.index}" if similar is not None else ""
  print(f"serving {FLAGS.model_dir} ({answerer.run.task}{index}) on "
        f"http://{FLAGS.host}:{FLAGS.port}/ (Ctrl-C stops)", flush=True)
  uvicorn.run(web_app, host=FLAGS.host, port=FLAGS.port, log_level="warning")
  return 0


if __name__ == "__main__":
  app.run(main)
