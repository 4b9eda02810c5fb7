"""The tf.data input pipeline: a finished dataset directory → batches of (uint8 images, labels).

Reads with tensorflow-datasets' own reader (file sharding by InputContext, interleave,
parsing with the feature spec); decodes the JPEG once, here; pads to square and resizes.
Labels are made by a task's label function (by default the multi-hot of a dataset's one
class-list feature, e.g. a tagged dataset's tags).
"""
from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib

AUGMENTATIONS = ("flip", "crop")
DEFAULT_SHUFFLE_BUFFER = 2048


def to_model_input(jpeg: tf.Tensor, image_size: int,
                   mirror: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Stored JPEG bytes → uint8 [image_size, image_size, 3], padded to square (aspect kept).

  The same function serves training, evaluation and prediction. When the stored
  longer side already equals image_size (build with --image_size = training size),
  only a pad is done: no resize on the hot path.

  Args:
    jpeg: the stored JPEG's bytes (string scalar).
    image_size: side of the square result.
    mirror: bool scalar or None: also flip left-right (training's "flip"). The same
      pixels as flipping the padded result, but on the pad-only path the flip is done
      on the smaller decoded image and the pad placed for it: one image copy fewer
      per image on the hot path (benchmarks/input_benchmark.py).
  """
  image = tf.io.decode_jpeg(jpeg, channels=3)
  shape = tf.shape(image)
  longer = tf.maximum(shape[0], shape[1])

  def pad_only():
    top, left = (image_size - shape[0]) // 2, (image_size - shape[1]) // 2
    if mirror is None:
      return tf.image.pad_to_bounding_box(image, top, left, image_size, image_size)
    # Flipping the padded image moves the (one pixel larger) right margin to the left.
    flipped = tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)
    left = tf.where(mirror, image_size - shape[1] - left, left)
    return tf.pad(flipped, [[top, image_size - shape[0] - top],
                            [left, image_size - shape[1] - left], [0, 0]])

  def resize_and_pad():
    resized = tf.image.resize_with_pad(image, image_size, image_size,
                                       antialias=True)
    resized = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
    if mirror is None:
      return resized
    return tf.cond(mirror, lambda: tf.reverse(resized, [1]), lambda: resized)

  image = tf.cond(longer == image_size, pad_only, resize_and_pad)
  image.set_shape([image_size, image_size, 3])
  return image


def _augment_seeds(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
  return crop_seed, flip_seed


def flips(seed: tf.Tensor) -> tf.Tensor:
  """Whether augment's "flip" mirrors the image it is given with this seed (bool scalar).

  The decision tf.image.stateless_random_flip_left_right takes, so that the flip can
  be done inside to_model_input (mirror=) with the same result.
  """
  _, flip_seed = _augment_seeds(seed)
  return tf.random.stateless_uniform([], seed=flip_seed, minval=0, maxval=1.0) < 0.5


def augment(image: tf.Tensor, augmentations: Sequence[str], seed: tf.Tensor) -> tf.Tensor:
  """Per-image random augmentations. "crop" is opt-in: a crop can cut away what a label says.

  Args:
    image: uint8 [S, S, 3].
    augmentations: a subset of AUGMENTATIONS.
    seed: int64 [2], this image's own: the same seed gives the same augmentation.
      Stateless ops keep Dataset.map parallel under op determinism, where a
      stateful random op would make it run serially.
  """
  check_augmentations(augmentations)
  crop_seed, flip_seed = _augment_seeds(seed)
  if "crop" in augmentations:
    size = image.shape[0]
    crop = int(size * 0.875)
    image = tf.image.stateless_random_crop(image, [crop, crop, 3], seed=crop_seed)
    image = tf.cast(tf.round(tf.image.resize(image, [size, size])), tf.uint8)
  if "flip" in augmentations:
    # Per image: a batch-level flip computes a flipped copy of every image (slower).
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
  return image


def check_augmentations(augmentations: Sequence[str]) -> None:
  unknown = set(augmentations) - set(AUGMENTATIONS)
  if unknown:
    raise ValueError(f"unknown augmentations {sorted(unknown)}; known: {AUGMENTATIONS}")


def multi_hot(feature: str, num_classes: int) -> Callable[[dict], tf.Tensor]:
  """Label function: the class ids in a record's `feature` → multi-hot float32 [num_classes]."""
  def label(example: dict) -> tf.Tensor:
    ids = tf.cast(example[feature], tf.int64)
    hot = tf.scatter_nd(ids[:, None], tf.ones_like(ids, tf.float32), [num_classes])
    return tf.minimum(hot, 1.0)
  return label


def default_label(builder: tfds.core.DatasetBuilder) -> tuple[Callable, tuple[str]]:
  """(label_fn, label_features) when none is given: the multi-hot of the dataset's one
  class-list feature (a tagged dataset's tags).

  Raises:
    ValueError: the dataset has no such feature, or several: pass a task's label_fn.
  """
  own = [key for key, spec in builder.info.features.items()
         if isinstance(spec, tfds.features.Sequence)
         and isinstance(spec.feature, tfds.features.ClassLabel)]
  if len(own) != 1:
    raise ValueError(f"no default label for a dataset with the features "
                     f"{sorted(builder.info.features.keys())}: pass label_fn and "
                     "label_features (a task's)")
  return multi_hot(own[0], builder.info.features[own[0]].feature.num_classes), (own[0],)


def check_shards(data_dir: str, builder: tfds.core.DatasetBuilder, split: str) -> None:
  """Every shard of split exists with the size the builder wrote (a stat() each, no read).

  Raises:
    DatasetError naming the first missing or resized shard.
  """
  metadata_path = tf.io.gfile.join(data_dir, features_lib.METADATA_FILE)
  sizes = None
  if tf.io.gfile.exists(metadata_path):
    with tf.io.gfile.GFile(metadata_path) as f:
      sizes = json.load(f).get("shard_file_bytes", {}).get(split)
  for i, path in enumerate(dataset_lib.shard_paths(builder, split)):
    if not tf.io.gfile.exists(path):
      raise dataset_lib.DatasetError(f"shard {path} is missing")
    if sizes is not None and tf.io.gfile.stat(path).length != sizes[i]:
      raise dataset_lib.DatasetError(
          f"shard {path} is {tf.io.gfile.stat(path).length} bytes but the build "
          f"wrote {sizes[i]}: it was truncated or replaced")


def input_fn(data_dir: str, split: str, batch_size: int, *, training: bool,
             image_size: int = 224,
             input_context: Optional[tf.distribute.InputContext] = None,
             augmentations: Sequence[str] = ("flip",),
             label_fn: Optional[Callable[[dict], tf.Tensor]] = None,
             label_features: Sequence[str] = (),
             shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
             seed: Optional[int] = None,
             with_path: bool = False,
             drop_remainder: Optional[bool] = None,
             deterministic: bool = False,
             data_service: str = "") -> tf.data.Dataset:
  """Batches of (uint8 images [B, S, S, 3], labels) from a finished dataset directory.

  Plugs into `strategy.distribute_datasets_from_function(lambda ctx: input_fn(...,
  input_context=ctx))`: files are sharded over input pipelines and each batch has
  the per-replica size.

  Args:
    data_dir: a dataset directory written by a beam_jobs builder.
    split: "train", "validation", "test", or any tfds split expression.
    batch_size: the global batch size (per replica = batch_size / replicas).
    training: shuffle, repeat forever, augment, drop the last partial batch and
      allow non-deterministic order (unless deterministic); otherwise one
      deterministic pass.
    image_size: side of the square model input.
    input_context: from distribute_datasets_from_function; None = one pipeline.
    augmentations: applied in training; a subset of AUGMENTATIONS.
    label_fn: record dict → label tensor (a task's label_fn); default: the
      multi-hot of the dataset's one class-list feature (default_label).
    label_features: the record features label_fn reads; only these (and the
      image) are parsed.
    shuffle_buffer: examples in the shuffle buffer (training).
    seed: makes file order, shuffles and augmentations repeatable.
    with_path: also yield the source paths: (images, labels, paths).
    drop_remainder: drop the last partial batch; default = training. Evaluation
      over several replicas needs it (an empty replica batch breaks BatchNorm).
    deterministic: training batches in the same order, with the same
      augmentations, every run with the same seed (slower: nothing is taken
      out of order when ready first).
    data_service: "grpc://HOST:PORT" of a tf.data service dispatcher: its workers
      read, decode and batch (each record once per epoch: the files are split
      among them as they ask, "distributed_epoch"); this process only receives
      batches. "" = everything here.

  Raises:
    DatasetError: data_dir is not a finished dataset, or a shard is missing or resized.
    ValueError: deterministic training without a seed, or through a data service.
  """
  check_augmentations(augmentations)
  if deterministic and training and seed is None:
    raise ValueError("a deterministic training pipeline needs a seed")
  if deterministic and data_service:
    raise ValueError("a deterministic pipeline cannot go through a data service: its "
                     "workers deliver in the order they finish")
  in_order = deterministic or not training
  builder = dataset_lib.load_builder(data_dir)
  if split in builder.info.splits:
    check_shards(data_dir, builder, split)
  if label_fn is None:
    label_fn, label_features = default_label(builder)
  per_replica = (input_context.get_per_replica_batch_size(batch_size)
                 if input_context else batch_size)
  read_config = tfds.ReadConfig(
      input_context=input_context,  # Each pipeline reads its own subset of files.
      shuffle_seed=seed,
      interleave_cycle_length=16,  # Files read in parallel, records interleaved.
      interleave_block_length=1,
      try_autocache=False,  # Never cache a dataset that can be millions of images.
      skip_prefetch=True,  # We prefetch once, at the end.
      # A data service worker reads only the files it is handed: fewer records
      # than the split holds.
      assert_cardinality=not data_service)
  wanted = {features_lib.IMAGE: True, **{name: True for name in label_features}}
  if with_path:
    wanted[features_lib.PATH] = True
  ds = builder.as_dataset(
      split=split, shuffle_files=training, read_config=read_config,
      # Parse only what is used; the JPEG is decoded once, below.
      decoders=tfds.decode.PartialDecoding(
          wanted, decoders={features_lib.IMAGE: tfds.decode.SkipDecoding()}))

  options = tf.data.Options()
  # Order matters for evaluation and repeatable runs; otherwise, in training, take
  # whatever is ready first.
  options.deterministic = in_order
  # Files are sharded above, by input_context: tf.distribute must not shard again.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.OFF)
  # Each image's ops are small (decode, pad, flip, a label scatter): handing them to
  # the intra-op pool costs more than it gains; the parallel map uses the cores
  # (measured: README, Benchmarks).
  options.threading.max_intra_op_parallelism = 1
  ds = ds.with_options(options)
  if training:
    # Shuffle records before decoding: the buffer holds small JPEGs, not pixels.
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
    # A seed of its own for each image's augmentations, from a seeded stream, folded
    # with the pipeline's id so that replicas do not draw the same ones.
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    seeds = tf.data.Dataset.random(seed=seed).batch(2).map(
        lambda s: tf.random.fold_in(s, pipeline_id))
    ds = tf.data.Dataset.zip((ds, seeds))

  def parse(example, augment_seed=None):
    if training and tuple(augmentations) == ("flip",):
      # The default: flipped during the decode-and-pad (same pixels, one copy fewer).
      image = to_model_input(example[features_lib.IMAGE], image_size,
                             mirror=flips(augment_seed))
    else:
      image = to_model_input(example[features_lib.IMAGE], image_size)
      if training:
        image = augment(image, augmentations, augment_seed)
    outputs = (image, label_fn(example))
    if with_path:
      outputs += (example[features_lib.PATH],)
    return outputs

  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=in_order)
  # drop_remainder in training keeps every step's shape static and replicas equal.
  ds = ds.batch(per_replica,
                drop_remainder=training if drop_remainder is None else drop_remainder,
                num_parallel_calls=tf.data.AUTOTUNE)
  if data_service:
    # After the batch: the service's workers decode and batch, and send one message
    # per batch (measured with 2 workers on 2 cores at 224 px: 1455 images/s in
    # batches of 64, 879 with one image per message; BUILD.md). DYNAMIC = "distributed_epoch": the
    # dispatcher hands each worker files as it asks, so every record is read once
    # per epoch however many workers there are.
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=data_service))
  return ds.prefetch(tf.data.AUTOTUNE)


def num_examples(data_dir: str, split: str) -> int:
  return dataset_lib.load_builder(data_dir).info.splits[split].num_examples
