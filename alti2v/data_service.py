"""Command line for a tf.data service: decode the training input on other machines' cores.

  python -m alti2v.data_service dispatcher --port 5050
  python -m alti2v.data_service worker --dispatcher_address HOST:5050 --port 5051 --host HOST
  python -m alti2v.train ... --data_service grpc://HOST:5050

Each process prints the address it serves ("dispatcher at grpc://HOST:PORT") and runs
until killed. Workers read the dataset's files by their path: data_dir must be the same
path on every worker (gs:// or a shared mount). BUILD.md says when this pays.
"""
from absl import app, flags, logging
import tensorflow as tf

from alti2v.data import service

ROLES = service.ROLES
FLAGS = flags.FLAGS
flags.DEFINE_integer("port", 0, "Port to serve on; 0 = any free port (printed).")
flags.DEFINE_string("host", "localhost",
                    "This machine's name as trainers and workers reach it (a worker "
                    "tells the dispatcher this; on a cluster, the host's own name).")
flags.DEFINE_string("dispatcher_address", None,
                    "worker: HOST:PORT (or grpc://HOST:PORT) of the dispatcher.")
flags.DEFINE_string("work_dir", None,
                    "dispatcher: keep its journal here, so that a restarted dispatcher "
                    "resumes its jobs (fault-tolerant mode); none = in memory only.")
flags.register_validator("port", lambda v: 0 <= v <= 65535, "--port must be in [0, 65535]")


def main(argv):
  logging.set_verbosity(logging.INFO)
  if len(argv) != 2 or argv[1] not in ROLES:
    raise SystemExit(f"usage: python -m alti2v.data_service {'|'.join(ROLES)} [flags]")
  try:
    server, address = service.start(argv[1], FLAGS.port, FLAGS.host,
                                    FLAGS.dispatcher_address or "", FLAGS.work_dir or "")
  except (ValueError, tf.errors.OpError) as e:
    raise SystemExit(f"error: {getattr(e, 'message', e)}") from None
  print(f"{argv[1]} at {address}", flush=True)
  server.join()


if __name__ == "__main__":
  app.run(main)
