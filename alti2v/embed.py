"""Command line: Illustration2Vec feature vectors of image files, as a vectors folder for `similar`.

  python -m alti2v.embed --model_dir RUN --output DIR PATHS...   (files, directories, globs)

DIR gets each readable file's hidden-layer activations (the `hidden_units`-wide layer below
the tags: i2v's 4,096-d feature at configs/i2v.flags' scale) as L2-normalised float16 shards,
their packed sign bits (i2v's binary vector), paths.jsonl, errors.jsonl (files that could not
be read, also printed on stderr) and meta.json, written last (alti2v/similarity.py). Prints one
JSON line: the folder, vectors, dimension, errors. --index_type ivf|hnsw also builds that
approximate index now (else `similar` builds it on first use).
"""
import json
import sys

from absl import app, flags

from alti2v import similarity
from alti2v import tasks  # noqa: F401  (registers the tasks' layers for loading a run)
from alti2v.data import image_files
from alti2v.training import run_dir

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished tagger or distillation-student run.")
flags.DEFINE_string("output", None, "The vectors folder to write (a vectors folder there "
                    "is replaced).")
flags.DEFINE_enum("index_type", "exact", list(similarity.INDEX_TYPES),
                  "ivf or hnsw: also build that approximate index (cosine and hamming) now; "
                  "exact indexes are built when searched.")
flags.DEFINE_integer("batch_size", 32, "Images per batch.")
flags.DEFINE_integer("shard_size", similarity.DEFAULT_SHARD_SIZE, "Vectors per shard.")
flags.DEFINE_bool("progress", True, "Show a progress bar (images/s) on stderr.")
flags.mark_flags_as_required(["model_dir", "output"])
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")
flags.register_validator("shard_size", lambda v: v >= 1, "--shard_size must be >= 1")


def main(argv) -> int:
  try:
    paths = image_files.expand_paths(argv[1:])
    if not paths:
      raise ValueError("no image files given")
    meta = similarity.write_vectors(run_dir.load(FLAGS.model_dir), paths, FLAGS.output,
                                    batch_size=FLAGS.batch_size, shard_size=FLAGS.shard_size,
                                    progress=FLAGS.progress)
    if FLAGS.index_type != "exact":
      vectors = similarity.read_vectors(FLAGS.output)
      for metric in similarity.METRICS:
        similarity.load_index(vectors, metric, FLAGS.index_type)
  except (ValueError, FileNotFoundError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for error in similarity.read_errors(FLAGS.output):
    print(f"unreadable: {image_files.json_line(error)}", file=sys.stderr)
  print(json.dumps({"output": FLAGS.output, "vectors": meta["count"],
                    "dimension": meta["dimension"], "errors": meta["errors"]}))
  return 0


if __name__ == "__main__":
  app.run(main)
