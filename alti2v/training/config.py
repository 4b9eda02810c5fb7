"""The one typed training config: built from flags by alti2v.train, read by the training loop."""
from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence

MIN_IMAGE_SIZE = 32
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# alti2v.training.distribute.STRATEGIES (kept here too: the config imports no TensorFlow).
STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run depends on.

  Attributes:
    task: what is learned; a registered task's name (alti2v.tasks: "tagger").
    data_dir: a finished dataset directory (written by a beam_jobs builder).
    model_dir: checkpoints, logs and the exported model go here.
    image_size: side of the square model input, pixels.
    batch_size: global batch size, split over replicas.
    epochs: epochs to train in total (a resumed run counts the epochs already done).
    steps_per_epoch: batches per epoch; 0 = one pass over the train split.
    validation_steps: batches per validation; 0 = the whole validation split.
    learning_rate: Adam's learning rate.
    backbone: "vgg16" or "small" (a 4-block CNN for quick CPU runs).
    weights: "imagenet", a local VGG16 .h5 weights file (include_top=False), or
      "none" for random initialisation.
    frozen_layers: freeze backbone.layers[:N] (input layer included); only with
      pretrained weights.
    hidden_units: units of the head's hidden Dense layer.
    dropout: dropout rate before the output layer.
    augmentations: training augmentations ("flip", "crop"); crop is opt-in because
      it can cut away what a label says.
    mixed_precision: "auto" = mixed_float16 on GPUs, mixed_bfloat16 on a CPU with
      bf16 instructions, float32 otherwise; or one of those names.
    cpu_replicas: split the CPU into N logical devices and mirror over them
      (testing MirroredStrategy without GPUs; 1 = the one-GPU path); 0 = off.
    strategy: "auto" = MirroredStrategy over all GPUs (or cpu_replicas logical
      CPUs), else one device; "mirrored", "one_device", or "multi_worker" =
      MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (the chief writes
      model_dir, which every worker must be able to read: BUILD.md).
    data_service: "grpc://HOST:PORT" of a tf.data service dispatcher
      (python -m alti2v.data_service): its workers read and decode the records,
      each once per epoch; "" = decode here. Part of the machinery, not of the
      run: a resume may change it.
    loss: "" = the task's loss; distill also takes "bce" or "kl".
    shuffle_buffer: examples in the shuffle buffer (stored JPEGs, ~25 kB each).
    seed: seed for initialisation, dropout, file order, shuffling and augmentations.
    deterministic: bit-for-bit repeatable training on the same machine and software
      (op determinism, tf.data in a fixed order, everything seeded by seed). Its cost
      was within noise on a 2-core CPU (README); deterministic GPU kernels can be
      slower. Part of the run: a resume keeps it.
    overwrite: start over in a model_dir that holds a run.
  """
  task: str = "tagger"
  data_dir: str = ""
  model_dir: str = ""
  image_size: int = 224
  batch_size: int = 64
  epochs: int = 10
  steps_per_epoch: int = 0
  validation_steps: int = 0
  learning_rate: float = 1e-3
  backbone: str = "vgg16"
  weights: str = "imagenet"
  frozen_layers: int = 0
  hidden_units: int = 4096
  dropout: float = 0.3
  augmentations: Sequence[str] = ("flip",)
  mixed_precision: str = "auto"
  cpu_replicas: int = 0
  strategy: str = "auto"
  data_service: str = ""
  loss: str = ""
  shuffle_buffer: int = 2048
  seed: int = 0
  deterministic: bool = False
  overwrite: bool = False

  def __post_init__(self):
    object.__setattr__(self, "augmentations", tuple(self.augmentations))
    if not self.data_dir or not self.model_dir:
      raise ValueError("data_dir and model_dir are required")
    if self.mixed_precision not in PRECISIONS:
      raise ValueError(f"mixed_precision must be one of {PRECISIONS}, "
                       f"got {self.mixed_precision!r}")
    if self.strategy not in STRATEGIES:
      raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
    if self.strategy in ("multi_worker", "one_device") and self.cpu_replicas > 1:
      raise ValueError(f"cpu_replicas={self.cpu_replicas} splits the CPU for mirrored "
                       f"training; --strategy={self.strategy} cannot use it")
    if self.data_service and not self.data_service.startswith("grpc://"):
      raise ValueError(f"data_service must be grpc://HOST:PORT (a tf.data service "
                       f"dispatcher), got {self.data_service!r}")
    if self.data_service and self.deterministic:
      raise ValueError("deterministic training cannot read through a data service: its "
                       "workers deliver in the order they finish")
    for name in ("batch_size", "epochs", "hidden_units", "shuffle_buffer"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("steps_per_epoch", "validation_steps", "frozen_layers", "cpu_replicas"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
    # Both backbones halve the image 4-5 times; VGG16 itself refuses less than 32 px.
    if self.image_size < MIN_IMAGE_SIZE:
      raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {self.image_size}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

  @property
  def weights_arg(self) -> Optional[str]:
    """weights as keras.applications takes it (None for "none")."""
    return None if self.weights in ("", "none", "None") else self.weights

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  # Fields that may change between a run and its resumption.
  RESUMABLE_CHANGES = ("epochs", "overwrite", "cpu_replicas", "data_service")
