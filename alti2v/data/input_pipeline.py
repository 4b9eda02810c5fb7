"""The tf.data input pipeline: a finished dataset directory → batches of (uint8 images, labels).

The order, and why (measured: README, Benchmarks): the split's files (sharded by
InputContext, shuffled in training) → their serialized records, interleaved → shuffle (small
JPEGs, not pixels) → repeat → batch the records → one call per batch: parse_example, draw
the batch's augmentations, decode and pad image after image in a graph loop, label the batch
→ prefetch. Nothing runs per image as a tf.data element: per-element parsing and mapping cost
more than the pad and the flip together. Labels are made by a task's label function (by
default the multi-hot of a dataset's one class-list feature, e.g. a tagged dataset's tags).
"""
from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib

AUGMENTATIONS = ("flip", "crop")
DEFAULT_SHUFFLE_BUFFER = 2048


def mirrored(image: tf.Tensor, mirror: tf.Tensor) -> tf.Tensor:
  """The image flipped left-right when mirror (bool scalar), else as it is."""
  return tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)


def pad_to_square(image: tf.Tensor, image_size: int,
                  mirror: Optional[tf.Tensor] = None) -> tf.Tensor:
  """uint8 [h, w, 3] with h, w <= image_size → [image_size, image_size, 3], centred on
  black where tf.image.pad_to_bounding_box puts it; flipped left-right first when mirror.

  Args:
    image: the decoded image.
    image_size: side of the square result.
    mirror: bool scalar or None. The same pixels as flipping the padded result: the flip
      is done on the smaller image and the pad placed for it (one image copy fewer).
  """
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  top, left = (image_size - height) // 2, (image_size - width) // 2
  if mirror is not None:
    image = mirrored(image, mirror)
    # Flipping the padded image moves the (one pixel larger) right margin to the left.
    left = tf.where(mirror, image_size - width - left, left)
  return place(image, image_size, image_size, top, left)


def place(image: tf.Tensor, height: int, width: int, top: tf.Tensor,
          left: tf.Tensor) -> tf.Tensor:
  """uint8 [h, w, 3] → [height, width, 3] with the image's top-left corner at (top, left),
  black around it (the image must fit)."""
  shape = tf.shape(image)

  def zeros(rows, columns):
    return tf.zeros(tf.stack([rows, columns, 3]), tf.uint8)

  # Concatenated zeros: a copy per row. tf.pad walks pixel by pixel (4x the time of
  # these two concats at 224 px, measured: README, Benchmarks).
  image = tf.concat([zeros(shape[0], left), image,
                     zeros(shape[0], width - shape[1] - left)], 1)
  return tf.concat([zeros(top, width), image, zeros(height - shape[0] - top, width)], 0)


def to_model_input(jpeg: tf.Tensor, image_size: int,
                   mirror: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Stored JPEG bytes → uint8 [image_size, image_size, 3], padded to square (aspect kept).

  The same function serves training, evaluation and prediction. When the stored
  longer side already equals image_size (build with --image_size = training size),
  only a pad is done: no resize on the hot path. When it is 2, 4 or 8 times
  image_size or more, the JPEG is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain
  (decode_jpeg's ratio: less work than a full decode, and no resize when the scale
  lands on image_size; measured: README, Benchmarks); what is left is resized.

  Args:
    jpeg: the stored JPEG's bytes (string scalar).
    image_size: side of the square result.
    mirror: bool scalar or None: also flip left-right (training's "flip"). The same
      pixels as flipping the padded result, but on the pad-only path the flip is done
      on the smaller decoded image and the pad placed for it: one image copy fewer
      per image on the hot path (benchmarks/input_benchmark.py).
  """
  shape = tf.io.extract_jpeg_shape(jpeg)  # From the header: nothing decoded yet.
  image = decode_at_least(jpeg, tf.maximum(shape[0], shape[1]), image_size)
  decoded = tf.shape(image)

  def pad_only():
    return pad_to_square(image, image_size, mirror)

  def resize_and_pad():
    resized = tf.image.resize_with_pad(image, image_size, image_size,
                                       antialias=True)
    resized = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
    if mirror is None:
      return resized
    return mirrored(resized, mirror)

  # Stored at image_size, or at 2, 4 or 8 times it: no resize.
  image = tf.cond(tf.maximum(decoded[0], decoded[1]) == image_size, pad_only, resize_and_pad)
  image.set_shape([image_size, image_size, 3])
  return image


DCT_RATIOS = (1, 2, 4, 8)  # The scales libjpeg decodes at (decode_jpeg's ratio).


def decode_at_least(jpeg: tf.Tensor, longer: tf.Tensor, size: int) -> tf.Tensor:
  """Decodes a JPEG at the smallest DCT scale (DCT_RATIOS) whose longer side is still
  >= size: uint8 [h, w, 3].

  Args:
    longer: the JPEG's longer side (from its header).
  """
  # libjpeg's scaled side is ceil(side / ratio).
  fits = [tf.cast((longer + r - 1) // r >= size, tf.int32) for r in DCT_RATIOS[1:]]
  index = tf.add_n(fits)  # The ratios that fit are the first ones.
  return tf.switch_case(index, [
      (lambda r=r: tf.io.decode_jpeg(jpeg, channels=3, ratio=r)) for r in DCT_RATIOS])


def model_inputs(jpegs: tf.Tensor, heights: tf.Tensor, widths: tf.Tensor, image_size: int,
                 mirror: Optional[tf.Tensor] = None) -> tf.Tensor:
  """A batch of stored JPEGs [n] → uint8 [n, image_size, image_size, 3]: to_model_input's
  pixels, image after image in one loop.

  When every stored longer side (heights, widths: the records' own) is image_size, the
  loop only decodes and pads (pad_to_square); otherwise it runs to_model_input.

  Args:
    mirror: bool [n] or None: which images to flip left-right.
  """
  n = tf.shape(jpegs)[0]
  signature = tf.TensorSpec([image_size, image_size, 3], tf.uint8)
  flip = (lambda i: None) if mirror is None else (lambda i: mirror[i])

  def pad_only():
    return tf.map_fn(
        lambda i: pad_to_square(tf.io.decode_jpeg(jpegs[i], channels=3), image_size, flip(i)),
        tf.range(n), fn_output_signature=signature, parallel_iterations=1)

  def general():
    return tf.map_fn(lambda i: to_model_input(jpegs[i], image_size, flip(i)),
                     tf.range(n), fn_output_signature=signature, parallel_iterations=1)

  # One decision per batch: a per-image tf.cond costs about as much as the pad.
  stored_at_size = tf.reduce_all(tf.maximum(heights, widths) == image_size)
  images = tf.cond(stored_at_size, pad_only, general)
  images.set_shape(jpegs.shape[:1].concatenate([image_size, image_size, 3]))  # Static batch.
  return images


def augment_randomness(seed: tf.Tensor, n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """A batch's augmentation draws from its seed: (crop seeds int64 [n, 2], mirror bool [n]).

  Drawn for the whole batch at once (a few ops per batch, not per image); the same seed
  gives the same draws.
  """
  crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
  crop_seeds = tf.random.stateless_uniform([n, 2], seed=crop_seed, minval=None,
                                           maxval=None, dtype=tf.int64)
  mirror = tf.random.stateless_uniform([n], seed=flip_seed) < 0.5
  return crop_seeds, mirror


def augment(image: tf.Tensor, augmentations: Sequence[str], crop_seed: tf.Tensor,
            mirror: tf.Tensor) -> tf.Tensor:
  """Per-image random augmentations. "crop" is opt-in: a crop can cut away what a label says.

  Args:
    image: uint8 [S, S, 3].
    augmentations: a subset of AUGMENTATIONS.
    crop_seed: int64 [2], this image's own (augment_randomness): the same seed gives the
      same crop. Stateless ops keep Dataset.map parallel under op determinism, where a
      stateful random op would make it run serially.
    mirror: bool scalar, this image's own (augment_randomness): flip it ("flip").
  """
  check_augmentations(augmentations)
  if "crop" in augmentations:
    size = image.shape[0]
    top, left, crop = crop_window(size, crop_seed)
    image = _crop_to_size(image[top:top + crop, left:left + crop], size)
  if "flip" in augmentations:
    image = mirrored(image, mirror)
  return image


CROP_FRACTION = 0.875  # "crop": a square of this fraction of the side, then resized back.


def crop_window(image_size: int, crop_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, int]:
  """(top, left, side) of "crop"'s square in the model input, drawn from crop_seed."""
  crop = int(image_size * CROP_FRACTION)
  top, left = tf.unstack(tf.random.stateless_uniform(
      [2], seed=crop_seed, minval=0, maxval=image_size - crop + 1, dtype=tf.int32))
  return top, left, crop


def _crop_to_size(image: tf.Tensor, image_size: int) -> tf.Tensor:
  return tf.cast(tf.round(tf.image.resize(image, [image_size, image_size])), tf.uint8)


def cropped_model_input(jpeg: tf.Tensor, image_size: int, augmentations: Sequence[str],
                        crop_seed: tf.Tensor, mirror: tf.Tensor) -> tf.Tensor:
  """augment(to_model_input(jpeg, image_size), augmentations, crop_seed, mirror) with "crop"
  in augmentations, decoding only the crop's part of the JPEG (decode_and_crop_jpeg) when
  it is stored at image_size.

  The pixels differ from cropping the decoded image at the crop's edges (libjpeg's chroma
  upsampling there: up to ~30 levels on a few pixels, a mean of a few hundredths of a
  level); elsewhere they are the same.
  """
  size = image_size
  top, left, crop = crop_window(size, crop_seed)
  shape = tf.io.extract_jpeg_shape(jpeg)
  height, width = shape[0], shape[1]
  # The crop in the stored image's coordinates (its margins in the model input: pad).
  margin_top, margin_left = (size - height) // 2, (size - width) // 2
  y0 = tf.clip_by_value(top - margin_top, 0, height)
  y1 = tf.clip_by_value(top + crop - margin_top, 0, height)
  x0 = tf.clip_by_value(left - margin_left, 0, width)
  x1 = tf.clip_by_value(left + crop - margin_left, 0, width)

  def decode_the_crop():
    part = tf.image.decode_and_crop_jpeg(jpeg, tf.stack([y0, x0, y1 - y0, x1 - x0]),
                                         channels=3)
    return place(part, crop, crop, margin_top + y0 - top, margin_left + x0 - left)

  def crop_the_input():
    return to_model_input(jpeg, size)[top:top + crop, left:left + crop]

  stored_at_size = tf.maximum(height, width) == size
  cropped = tf.cond(stored_at_size & (y1 > y0) & (x1 > x0), decode_the_crop, crop_the_input)
  image = _crop_to_size(cropped, size)
  if "flip" in augmentations:
    image = mirrored(image, mirror)
  return image


def check_augmentations(augmentations: Sequence[str]) -> None:
  unknown = set(augmentations) - set(AUGMENTATIONS)
  if unknown:
    raise ValueError(f"unknown augmentations {sorted(unknown)}; known: {AUGMENTATIONS}")


def batch_labels(label_fn: Callable[[dict], tf.Tensor]) -> Callable[[dict], tf.Tensor]:
  """Marks a label function as one that labels a whole batch at once.

  Such a function gets the parsed batch (features_lib.batch_parser's dict: [B, ...]
  tensors, a RaggedTensor [B, None, ...] for a sequence) and returns labels [B, ...]:
  a few ops per batch instead of per image (measured: README, Benchmarks). An unmarked
  label function gets one record's features and returns its label.
  """
  label_fn.batched = True
  return label_fn


def is_batch_label_fn(label_fn: Callable) -> bool:
  return getattr(label_fn, "batched", False)


def multi_hot(feature: str, num_classes: int) -> Callable[[dict], tf.Tensor]:
  """Batch label function: each record's class ids in `feature` → multi-hot float32
  [B, num_classes]."""
  @batch_labels
  def label(batch: dict) -> tf.Tensor:
    ids = batch[feature]  # RaggedTensor [B, None]
    hot = scatter_rows(ids, tf.ones_like(ids.values, tf.float32), num_classes)
    return tf.minimum(hot, 1.0)
  return label


def scatter_rows(ids: tf.RaggedTensor, values: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Each row's values at its class ids (ids: RaggedTensor [B, None]; values: one per id,
  in ids.values' order) → dense [B, num_classes]; a repeated id sums."""
  cells = tf.stack([ids.value_rowids(), tf.cast(ids.values, tf.int64)], axis=1)
  shape = tf.stack([ids.nrows(), tf.constant(num_classes, tf.int64)])
  return tf.scatter_nd(cells, values, shape)


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


INTERLEAVE_FILES = 16  # Files read at once, their records interleaved one by one.


def read_records(builder: tfds.core.DatasetBuilder, split: str, *, training: bool,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 seed: Optional[int] = None, in_order: bool = True,
                 assert_cardinality: bool = True) -> tf.data.Dataset:
  """The serialized records of a split (any tfds split expression, e.g. "train[:10%]").

  The files as tensorflow-datasets' reader reads them, without its per-record parsing:
  sharded over input pipelines by input_context, shuffled in training (seeded by
  seed), INTERLEAVE_FILES at once.

  Raises:
    ValueError: more input pipelines than the split has files.
  """
  instructions = builder.info.splits[split].file_instructions
  if not instructions:
    raise ValueError(f"split {split!r} selects no records")
  pipelines = input_context.num_input_pipelines if input_context else 1
  if pipelines > 1 and len(instructions) < pipelines:
    raise ValueError(
        f"split {split!r} has {len(instructions)} files for {pipelines} input pipelines: "
        "each pipeline reads whole files, so some would read nothing (build with more "
        "shards, or train on fewer workers)")
  files = tf.data.Dataset.from_tensor_slices((
      [str(i.filename) for i in instructions],
      np.array([i.skip for i in instructions], np.int64),
      np.array([-1 if i.takes_all else i.take for i in instructions], np.int64)))
  if pipelines > 1:
    files = files.shard(pipelines, input_context.input_pipeline_id)
  if training:
    files = files.shuffle(len(instructions), seed=seed, reshuffle_each_iteration=True)
  # Remote files (gs://...) are read in parallel to hide their latency; local ones one
  # after another: parallel reader threads cost more CPU than they save (measured:
  # README, Benchmarks).
  remote = any("://" in str(i.filename) for i in instructions)
  ds = files.interleave(
      lambda path, skip, take: tf.data.TFRecordDataset(path).skip(skip).take(take),
      cycle_length=INTERLEAVE_FILES, block_length=1,
      **({"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": in_order} if remote else {}))
  if assert_cardinality and pipelines == 1:
    ds = ds.apply(tf.data.experimental.assert_cardinality(
        builder.info.splits[split].num_examples))
  return ds


def _row(records: dict, i: tf.Tensor) -> dict:
  """Record i of a parsed batch (features_lib.batch_parser's dict): a ragged feature's
  row as a dense tensor, as the record's own features come."""
  return {name: (value.values[value.row_splits[i]:value.row_splits[i + 1]]
                 if isinstance(value, tf.RaggedTensor) else value[i])
          for name, value in records.items()}


def _label_spec(label_fn: Callable, features: tfds.features.FeaturesDict,
                names: Sequence[str]):
  """The TensorSpec (or structure of them) of label_fn's result for one record."""
  infos = features.get_serialized_info()
  record = {name: tf.TensorSpec(infos[name].shape, tf.as_dtype(infos[name].dtype))
            for name in names}
  traced = tf.function(label_fn).get_concrete_function(record)
  return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype),
                               traced.structured_outputs)


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
    label_fn: record dict → label tensor (a task's label_fn), or a batch label
      function (batch_labels: parsed batch → labels [B, ...]); default: the
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
  wanted = [features_lib.IMAGE, features_lib.HEIGHT, features_lib.WIDTH, *label_features] + (
      [features_lib.PATH] if with_path else [])
  parse_batch = features_lib.batch_parser(builder.info.features, wanted)
  label_spec = (None if is_batch_label_fn(label_fn)
                else _label_spec(label_fn, builder.info.features, label_features))

  # Serialized records: small, so shuffling and batching them is cheap.
  ds = read_records(builder, split, training=training, input_context=input_context,
                    seed=seed, in_order=in_order,
                    # A data service worker reads only the files it is handed: fewer
                    # records than the split holds.
                    assert_cardinality=not data_service)
  options = tf.data.Options()
  # Order matters for evaluation and repeatable runs; otherwise, in training, take
  # whatever is ready first.
  options.deterministic = in_order
  # Files are sharded in read_records, by input_context: tf.distribute must not shard again.
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.OFF)
  # Each image's ops are small (decode, pad, flip, a label scatter): handing them to
  # the intra-op pool costs more than it gains; the parallel map over batches uses the
  # cores (measured: README, Benchmarks).
  options.threading.max_intra_op_parallelism = 1
  ds = ds.with_options(options)
  if training:
    # Shuffle records before decoding: the buffer holds small JPEGs, not pixels.
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
  # Batch the records, then parse, decode and label a whole batch in one function call:
  # one parse_example per batch, and no per-image tf.data element (measured: per-image
  # parsing and mapping cost more than the pad and the flip together; README).
  # drop_remainder in training keeps every step's shape static and replicas equal.
  ds = ds.batch(per_replica,
                drop_remainder=training if drop_remainder is None else drop_remainder)
  if training:
    # A seed for each batch from a seeded stream, folded with the pipeline's id so that
    # replicas do not draw the same augmentations; each image's own is drawn from it.
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    seeds = tf.data.Dataset.random(seed=seed).batch(2).map(
        lambda s: tf.random.fold_in(s, pipeline_id))
    ds = tf.data.Dataset.zip((ds, seeds))

  cropping = training and "crop" in augmentations
  # The default: flipped during the decode-and-pad (same pixels, one copy fewer).
  fused_flip = training and "flip" in augmentations and not cropping

  def make_batch(serialized, batch_seed=None):
    records = parse_batch(serialized)
    n = tf.shape(serialized)[0]
    jpegs = records[features_lib.IMAGE]
    if training:
      crop_seeds, mirror = augment_randomness(batch_seed, n)
    if not cropping:
      images = model_inputs(jpegs, records[features_lib.HEIGHT], records[features_lib.WIDTH],
                            image_size, mirror if fused_flip else None)
    else:
      images = tf.map_fn(
          lambda i: cropped_model_input(jpegs[i], image_size, augmentations, crop_seeds[i],
                                        mirror[i]),
          tf.range(n), fn_output_signature=tf.TensorSpec([image_size] * 2 + [3], tf.uint8),
          parallel_iterations=1)
    if label_spec is None:
      labels = label_fn({name: records[name] for name in label_features})
    else:
      labels = tf.map_fn(lambda i: label_fn(_row(records, i)), tf.range(n),
                         fn_output_signature=label_spec, parallel_iterations=1)
    outputs = (images, labels)
    if with_path:
      outputs += (records[features_lib.PATH],)
    return outputs

  ds = ds.map(lambda *batch: make_batch(*batch), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=in_order)
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
