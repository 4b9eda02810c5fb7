"""Command line: the nearest indexed images of query images, from a vectors folder made by `embed`.

  python -m alti2v.similar --index DIR [-k 10] [--metric cosine|hamming]
      [--index_type exact|ivf|hnsw] QUERY_PATHS...   (files, directories, globs)

Each query goes through the run that made DIR (meta.json's model_dir, or --model_dir) and is
searched with faiss (alti2v/similarity.py). One JSON line per query: {"query", "neighbours":
[{"path", "score"}]} (cosine similarity, best first) or [{"path", "distance"}] (Hamming
distance in bits), or {"query", "error"} for a file that cannot be read. A query that is
itself in DIR comes back first (--exclude_self drops it). An approximate index is built on
first use and saved in DIR.
"""
import contextlib
import sys

from absl import app, flags

from alti2v import similarity
from alti2v import tasks  # noqa: F401  (registers the tasks' layers for loading a run)
from alti2v.data import image_files

FLAGS = flags.FLAGS
flags.DEFINE_string("index", None, "A vectors folder written by python -m alti2v.embed.")
flags.DEFINE_integer("k", 10, "Neighbours per query.")
flags.DEFINE_enum("metric", "cosine", list(similarity.METRICS),
                  "cosine: on the float vectors; hamming: on the bits.")
flags.DEFINE_enum("index_type", "exact", list(similarity.INDEX_TYPES),
                  "exact: every vector compared; ivf or hnsw: approximate, for millions.")
flags.DEFINE_bool("exclude_self", False, "Leave a query's own path out of its neighbours.")
flags.DEFINE_string("model_dir", None, "The run that made the index, where it has moved "
                    "(default: the one meta.json names).")
flags.DEFINE_integer("nprobe", similarity.DEFAULT_NPROBE, "IVF: lists searched per query.")
flags.DEFINE_integer("ef_search", similarity.DEFAULT_EF_SEARCH,
                     "HNSW: candidates kept while searching.")
flags.DEFINE_integer("batch_size", 32, "Images per batch.")
flags.DEFINE_string("output", None, "Write JSON lines here instead of stdout.")
flags.DEFINE_bool("progress", False, "Show a progress bar (images/s) on stderr.")
flags.mark_flag_as_required("index")
flags.register_validator("k", lambda v: v >= 1, "--k must be >= 1")
flags.register_validator("nprobe", lambda v: v >= 1, "--nprobe must be >= 1")
flags.register_validator("ef_search", lambda v: v >= 1, "--ef_search must be >= 1")
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")


def main(argv) -> int:
  try:
    paths = image_files.expand_paths(argv[1:])
    if not paths:
      raise ValueError("no query images given")
    vectors = similarity.read_vectors(FLAGS.index)
    run = similarity.open_query_run(vectors, FLAGS.model_dir)
    lines = similarity.neighbours(
        vectors, run, paths, k=FLAGS.k, metric=FLAGS.metric, index_type=FLAGS.index_type,
        exclude_self=FLAGS.exclude_self, nprobe=FLAGS.nprobe, ef_search=FLAGS.ef_search,
        batch_size=FLAGS.batch_size, progress=FLAGS.progress)
    with (open(FLAGS.output, "w", encoding="utf-8") if FLAGS.output
          else contextlib.nullcontext(sys.stdout)) as out:
      for line in lines:
        out.write(image_files.json_line(line) + "\n")
  except (ValueError, FileNotFoundError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  app.run(main)
