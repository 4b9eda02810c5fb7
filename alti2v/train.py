"""Command line for training: absl flags → TrainConfig → alti2v.tasks.train.

  python -m alti2v.train --flagfile configs/i2v.flags --data_dir DATASET --model_dir RUN

Intentionally kept short: the logic lives in alti2v.training (the loop) and alti2v.tasks
(what is learned), which the tests import.
"""
from absl import app, flags, logging
import tensorflow as tf

from alti2v import tasks
from alti2v.models import backbones
from alti2v.training import config as config_lib

_DEFAULTS = config_lib.TrainConfig.__dataclass_fields__
FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "tagger", [t.name for t in tasks.all_tasks()],
                  "What to learn: " + ", ".join(f"{t.name} ({t.description})"
                                                for t in tasks.all_tasks()) + ".")
flags.DEFINE_string("data_dir", None, "Dataset directory (from a beam_jobs builder).")
flags.DEFINE_string("model_dir", None, "Where checkpoints, logs and the model go.")
flags.DEFINE_integer("image_size", 224, "Side of the square model input, pixels.")
flags.DEFINE_integer("batch_size", 64, "Global batch size (split over replicas).")
flags.DEFINE_integer("epochs", 10, "Epochs in total (a resumed run counts done ones).")
flags.DEFINE_integer("steps_per_epoch", 0, "Batches per epoch; 0 = one pass over train.")
flags.DEFINE_integer("validation_steps", 0, "Batches per validation; 0 = whole split.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_enum("backbone", "vgg16", ["vgg16", "small"],
                  "vgg16, or small (a 4-block CNN for quick CPU runs).")
flags.DEFINE_string("weights", "imagenet",
                    "imagenet (Keras downloads it), a local VGG16 no-top .h5 file, or none.")
flags.DEFINE_integer("frozen_layers", 0,
                     "Freeze backbone.layers[:N], input layer included; only with "
                     "pretrained weights.")
flags.DEFINE_integer("hidden_units", 4096, "Units of the head's hidden Dense layer.")
flags.DEFINE_float("dropout", 0.3, "Dropout before the output layer.")
flags.DEFINE_list("augmentations", ["flip"], "Training augmentations: flip, crop.")
flags.DEFINE_enum("mixed_precision", "auto", list(config_lib.PRECISIONS),
                  "auto = mixed_float16 on GPUs, mixed_bfloat16 on a bf16 CPU, else float32.")
flags.DEFINE_integer("cpu_replicas", 0,
                     "Split the CPU into N logical devices and mirror over them (testing; "
                     "1 = the one-GPU path); 0 = off.")
flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES),
                  "auto = mirror over all GPUs (or --cpu_replicas), else one device; "
                  "mirrored; one_device; multi_worker = MultiWorkerMirroredStrategy over "
                  "the cluster in TF_CONFIG (BUILD.md: Training past one machine).")
flags.DEFINE_string("data_service", "",
                    "grpc://HOST:PORT of a tf.data service dispatcher (python -m "
                    "alti2v.data_service): its workers read and decode; empty = here.")
flags.register_validator(
    "data_service", lambda v: not v or v.startswith("grpc://"),
    "--data_service must be grpc://HOST:PORT")
flags.DEFINE_string("loss", "", "Empty = the task's loss; distill: bce (default) or kl.")
flags.DEFINE_integer("shuffle_buffer", 2048, "Shuffle buffer, in examples.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("deterministic", False,
                  "Bit-for-bit repeatable training on the same machine (op determinism, "
                  "fixed tf.data order, everything seeded by --seed); may be slower.")
flags.DEFINE_bool("overwrite", False, "Start over in a model_dir that holds a run.")
flags.mark_flags_as_required(["data_dir", "model_dir"])


def config_from_flags() -> config_lib.TrainConfig:
  """The TrainConfig the parsed flags describe (one flag per field)."""
  return config_lib.TrainConfig(**{name: FLAGS[name].value for name in _DEFAULTS})


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  try:
    info = tasks.train(config_from_flags())
  except (ValueError, backbones.WeightsDownloadError) as e:
    # A run that cannot start (bad settings, no validation split, no weights) says
    # what to do in one line; a traceback would bury it.
    raise SystemExit(f"error: {e}") from None
  except (tf.errors.UnavailableError, tf.errors.AbortedError,
          tf.errors.DeadlineExceededError) as e:
    if FLAGS.strategy != "multi_worker":
      raise
    # Another worker died: MultiWorkerMirroredStrategy cannot go on with fewer.
    first_line = e.message.strip().splitlines()[0] if e.message.strip() else ""
    raise SystemExit(
        f"error: the cluster lost a worker ({first_line[:200]}); restart every worker "
        "with the same command: the run resumes from its last epoch's backup") from None
  if not info.get("chief", True):
    print(f"worker done: best epoch {info['best_epoch']}, val_loss "
          f"{info['best_val_loss']:.4f} (the chief wrote {FLAGS.model_dir})")
    return
  print(f"model in {FLAGS.model_dir}: best epoch {info['best_epoch']}, "
        f"val_loss {info['best_val_loss']:.4f}")


if __name__ == "__main__":
  app.run(main)
