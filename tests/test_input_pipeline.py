"""alti2v.data.input_pipeline on a real dataset built by the real Beam job."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.data import input_pipeline
from beam_jobs import build_tagged_dataset as job


def tag_names(data):
  return dataset_lib.class_names(dataset_lib.load_builder(data), "tags")


def expected_multi_hot(path, vocabulary):
  with open(os.path.splitext(path)[0] + ".txt", encoding="utf-8") as f:
    tags = job.parse_tags(f.read())
  hot = np.zeros(len(vocabulary), np.float32)
  for t in tags:
    if t in vocabulary:
      hot[vocabulary.index(t)] = 1
  return hot


def test_training_batches_shapes_and_dtypes(tiny_dataset):
  _, data = tiny_dataset
  n = len(tag_names(data))
  images, labels = next(iter(input_pipeline.input_fn(
      data, "train", 8, training=True, image_size=48, seed=1)))
  assert images.dtype == tf.uint8 and images.shape == (8, 48, 48, 3)
  assert labels.dtype == tf.float32 and labels.shape == (8, n)
  assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
  assert labels.numpy().sum(1).min() >= 1  # every image keeps at least one tag


def test_every_image_comes_back_with_exactly_its_tags(tiny_dataset):
  _, data = tiny_dataset
  vocabulary = tag_names(data)
  seen = []
  for images, labels, paths in input_pipeline.input_fn(
      data, "test", 5, training=False, image_size=32, with_path=True):
    for label, path in zip(labels.numpy(), paths.numpy()):
      path = path.decode()
      np.testing.assert_array_equal(label, expected_multi_hot(path, vocabulary))
      seen.append(path)
  assert len(seen) == len(set(seen)) == input_pipeline.num_examples(data, "test")


def test_same_image_eagerly_and_inside_the_pipeline(tiny_dataset):
  _, data = tiny_dataset
  builder = dataset_lib.load_builder(data)
  raw = next(iter(builder.as_dataset(split="test", decoders={
      features_lib.IMAGE: tfds.decode.SkipDecoding()})))
  path = raw[features_lib.PATH].numpy()
  for size in (32, 40):  # 32 = stored size (pad only); 40 = resize and pad
    eager = input_pipeline.to_model_input(raw[features_lib.IMAGE], size).numpy()
    for images, _, paths in input_pipeline.input_fn(
        data, "test", 64, training=False, image_size=size, with_path=True):
      index = list(paths.numpy()).index(path)
      np.testing.assert_array_equal(images.numpy()[index], eager)


def test_pad_to_square_keeps_the_aspect():
  image = np.full((16, 32, 3), 200, np.uint8)  # wide: 16 high, 32 wide
  jpeg = tf.io.encode_jpeg(image, quality=100)
  padded = input_pipeline.to_model_input(jpeg, 32).numpy()
  assert padded.shape == (32, 32, 3)
  assert padded[:8].max() == 0 and padded[24:].max() == 0  # padding rows
  assert abs(padded[8:24].mean() - 200) < 2
  resized = input_pipeline.to_model_input(jpeg, 64).numpy()
  assert resized[:16].max() == 0 and resized[48:].max() == 0
  assert abs(resized[20:44].mean() - 200) < 2


def test_two_input_pipelines_read_every_record_exactly_once(tiny_dataset):
  _, data = tiny_dataset
  seen = []
  for pipeline_id in (0, 1):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
    paths = [p for _, _, batch in input_pipeline.input_fn(
        data, "train", 4, training=False, image_size=32, input_context=context,
        with_path=True) for p in batch.numpy()]
    assert paths  # each pipeline gets its own shard
    seen.append(set(paths))
    assert len(paths) == len(set(paths))
  assert not seen[0] & seen[1]
  assert len(seen[0] | seen[1]) == input_pipeline.num_examples(data, "train")


def test_per_replica_batches_under_two_logical_devices(tiny_dataset):
  _, data = tiny_dataset
  cpus = tf.config.list_logical_devices("CPU")
  assert len(cpus) == 2
  strategy = tf.distribute.MirroredStrategy([d.name for d in cpus])
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: input_pipeline.input_fn(data, "train", 8, training=True,
                                          image_size=32, input_context=ctx))
  images, labels = next(iter(dist))
  local = strategy.experimental_local_results(images)
  assert len(local) == 2
  assert [tuple(x.shape) for x in local] == [(4, 32, 32, 3)] * 2
  assert [tuple(y.shape)[0] for y in strategy.experimental_local_results(labels)] == [4, 4]


def test_unfinished_dataset_is_refused_with_a_clear_error(tmp_path):
  (tmp_path / "tagged_images-train.tfrecord-00000-of-00001").write_bytes(b"")
  with pytest.raises(dataset_lib.DatasetError, match="dataset_info.json is missing"):
    input_pipeline.input_fn(str(tmp_path), "train", 4, training=True)


def test_truncated_shard_is_named(tiny_dataset, tmp_path):
  import shutil
  _, data = tiny_dataset
  copy = tmp_path / "copy"
  shutil.copytree(data, copy)
  shard = copy / "tagged_images-train.tfrecord-00001-of-00002"
  shard.write_bytes(shard.read_bytes()[:-100])
  with pytest.raises(dataset_lib.DatasetError,
                     match="train.tfrecord-00001-of-00002 is .* bytes but the build wrote"):
    input_pipeline.input_fn(str(copy), "train", 4, training=True)


def test_crop_is_opt_in_and_unknown_augmentations_fail(tiny_dataset):
  _, data = tiny_dataset
  images, _ = next(iter(input_pipeline.input_fn(
      data, "train", 4, training=True, image_size=32, augmentations=("flip", "crop"))))
  assert images.shape == (4, 32, 32, 3) and images.dtype == tf.uint8
  with pytest.raises(ValueError, match="unknown augmentations"):
    input_pipeline.input_fn(data, "train", 4, training=True, augmentations=("rotate",))


def test_the_default_label_needs_one_class_list(screen_dataset):
  _, data = screen_dataset  # Its label is one class id, not a list: no default.
  with pytest.raises(ValueError, match="no default label.*pass label_fn"):
    input_pipeline.input_fn(data, "train", 4, training=False)


def test_input_fn_is_importable_from_the_package():
  from alti2v import input_fn
  assert input_fn is input_pipeline.input_fn


def _noise_jpeg(height, width, seed):
  pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
  return tf.io.encode_jpeg(pixels, quality=95)


def test_the_flip_done_during_the_pad_gives_the_pixels_of_flipping_the_padded_image():
  # Pad only (odd and even margins, wide, tall, square) and resize (up and down).
  shapes = [(32, 27), (27, 32), (32, 26), (32, 32), (20, 15), (70, 51)]
  jpegs = [_noise_jpeg(h, w, i) for i, (h, w) in enumerate(shapes)]
  seed = tf.constant([0, 0], tf.int64)

  def fused(jpeg, mirror):
    return input_pipeline.to_model_input(jpeg, 32, mirror=mirror)

  def general(jpeg, mirror):
    return input_pipeline.augment(input_pipeline.to_model_input(jpeg, 32), ("flip",), seed,
                                  mirror)

  pairs = [(jpeg, mirror) for jpeg in jpegs for mirror in (True, False)]
  for jpeg, mirror in pairs:  # Eagerly ...
    np.testing.assert_array_equal(fused(jpeg, mirror).numpy(), general(jpeg, mirror).numpy())
    unflipped = input_pipeline.to_model_input(jpeg, 32).numpy()
    expected = unflipped[:, ::-1] if mirror else unflipped
    np.testing.assert_array_equal(fused(jpeg, mirror).numpy(), expected)
  ds = tf.data.Dataset.from_tensor_slices(  # ... and inside Dataset.map.
      ([j for j, _ in pairs], [m for _, m in pairs]))
  for a, b in ds.map(lambda j, m: (fused(j, m), general(j, m))):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("shapes", [
    [(32, 27), (27, 32), (32, 26), (32, 32), (31, 32)],  # All stored at 32: pad only.
    [(32, 27), (20, 15), (70, 51), (32, 32)]])  # Some to resize: the general loop.
def test_a_batch_of_model_inputs_has_the_pixels_of_to_model_input(shapes):
  jpegs = tf.stack([_noise_jpeg(h, w, i) for i, (h, w) in enumerate(shapes)])
  heights = tf.constant([h for h, _ in shapes], tf.int64)
  widths = tf.constant([w for _, w in shapes], tf.int64)
  mirror = tf.constant([i % 2 == 1 for i in range(len(shapes))])
  for flip in (None, mirror):
    batch = input_pipeline.model_inputs(jpegs, heights, widths, 32, flip).numpy()
    for i, jpeg in enumerate(jpegs):
      one = input_pipeline.to_model_input(jpeg, 32, None if flip is None else mirror[i])
      np.testing.assert_array_equal(batch[i], one.numpy())


def test_augmentation_draws_repeat_with_the_seed_and_flip_about_half():
  seed = tf.constant([3, 4], tf.int64)
  crops, mirror = input_pipeline.augment_randomness(seed, 1000)
  again, mirror_again = input_pipeline.augment_randomness(seed, 1000)
  np.testing.assert_array_equal(crops.numpy(), again.numpy())
  np.testing.assert_array_equal(mirror.numpy(), mirror_again.numpy())
  assert crops.shape == (1000, 2) and len({tuple(c) for c in crops.numpy()}) == 1000
  assert 400 < mirror.numpy().sum() < 600
  _, other = input_pipeline.augment_randomness(tf.constant([3, 5], tf.int64), 1000)
  assert (other.numpy() != mirror.numpy()).any()


def test_training_batches_equal_those_of_flipping_after_the_pad(tiny_dataset, monkeypatch):
  _, data = tiny_dataset  # Stored at 32 px: the pad-only path.

  def batches():
    ds = input_pipeline.input_fn(data, "train", 8, training=True, image_size=32, seed=3,
                                 deterministic=True)
    return [(images.numpy(), labels.numpy()) for images, labels in ds.take(3)]

  fast = batches()

  def flip_after_the_pad(jpegs, heights, widths, image_size, mirror=None):
    def one(i):  # The plain way: decode, bring to size, then flip the result.
      image = input_pipeline.to_model_input(jpegs[i], image_size)
      return tf.cond(mirror[i], lambda: tf.reverse(image, [1]), lambda: image)
    return tf.map_fn(one, tf.range(tf.shape(jpegs)[0]),
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))

  monkeypatch.setattr(input_pipeline, "model_inputs", flip_after_the_pad)
  for (a_images, a_labels), (b_images, b_labels) in zip(fast, batches()):
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)


def test_a_stored_image_two_or_more_times_the_size_is_decoded_at_a_dct_scale():
  jpeg = _noise_jpeg(70, 100, 0)
  longer = tf.constant(100)
  for size, shape in [(100, (70, 100)), (50, (35, 50)), (26, (35, 50)), (25, (18, 25)),
                      (24, (18, 25)), (13, (9, 13)), (5, (9, 13))]:
    assert tuple(input_pipeline.decode_at_least(jpeg, longer, size).shape) == shape + (3,)
  # The model input from a scaled decode is close to a full decode's, resized.
  smooth = tf.io.encode_jpeg(tf.cast(tf.image.resize(
      tf.random.stateless_uniform([1, 7, 10, 3], [1, 2], 0, 255), [140, 200]),
      tf.uint8)[0], quality=95)
  full = tf.image.resize_with_pad(tf.io.decode_jpeg(smooth, channels=3), 50, 50,
                                  antialias=True).numpy()
  scaled = input_pipeline.to_model_input(smooth, 50).numpy().astype(np.float32)
  assert np.abs(scaled - full).mean() < 3


def test_an_image_stored_at_twice_the_size_is_only_scaled_in_the_decode_and_padded():
  jpeg = _noise_jpeg(48, 64, 1)  # Longer side 64 = 2 x 32.
  expected = input_pipeline.pad_to_square(tf.io.decode_jpeg(jpeg, channels=3, ratio=2), 32)
  np.testing.assert_array_equal(input_pipeline.to_model_input(jpeg, 32).numpy(),
                                expected.numpy())
  assert expected.shape == (32, 32, 3) and expected.numpy()[:4].max() == 0  # Padded rows.


def test_the_crop_decoded_from_the_jpeg_is_the_crop_of_the_model_input():
  # Stored at 32 (decode_and_crop_jpeg: a few levels apart at the crop's edges) and
  # stored larger or smaller (cropped from the model input: the same pixels).
  smooth = lambda h, w, i: tf.io.encode_jpeg(tf.cast(tf.image.resize(  # noqa: E731
      tf.random.stateless_uniform([1, 5, 6, 3], [i, 2], 0, 255), [h, w]), tf.uint8)[0],
      quality=95)
  cases = [((32, 27), True), ((27, 32), True), ((32, 32), True), ((32, 5), True),
           ((48, 64), False), ((20, 15), False)]
  for i, ((h, w), scaled_in_decode) in enumerate(cases):
    jpeg = smooth(h, w, i)
    for s in range(4):
      seed, mirror = tf.constant([s, i], tf.int64), tf.constant(s % 2 == 0)
      augmentations = ("flip", "crop")
      fast = input_pipeline.cropped_model_input(jpeg, 32, augmentations, seed, mirror)
      plain = input_pipeline.augment(input_pipeline.to_model_input(jpeg, 32), augmentations,
                                     seed, mirror)
      assert fast.shape == plain.shape == (32, 32, 3)
      diff = np.abs(fast.numpy().astype(int) - plain.numpy().astype(int))
      if scaled_in_decode:
        assert diff.mean() < 1.5, (h, w, s, diff.mean())
      else:
        assert diff.max() == 0, (h, w, s)
  top, left, crop = input_pipeline.crop_window(32, tf.constant([0, 0], tf.int64))
  assert crop == 28 and 0 <= int(top) <= 4 and 0 <= int(left) <= 4


def test_training_batches_have_a_static_batch_size(tiny_dataset):
  _, data = tiny_dataset
  for augmentations in [("flip",), (), ("flip", "crop")]:
    ds = input_pipeline.input_fn(data, "train", 8, training=True, image_size=32, seed=1,
                                 augmentations=augmentations)
    images, labels = ds.element_spec
    assert images.shape == (8, 32, 32, 3) and labels.shape[0] == 8, augmentations


def test_only_crop_turns_cropping_on(tiny_dataset):
  _, data = tiny_dataset

  def batches(augmentations):
    ds = input_pipeline.input_fn(data, "train", 8, training=True, image_size=32, seed=3,
                                 deterministic=True, augmentations=augmentations)
    return [images.numpy() for images, _ in ds.take(2)]

  for a, b in zip(batches(("flip",)), batches(("flip", "flip"))):
    np.testing.assert_array_equal(a, b)
  assert any((a != b).any() for a, b in zip(batches(("flip",)), batches(("flip", "crop"))))


def test_a_per_record_label_function_may_branch_in_python(tiny_dataset):
  _, data = tiny_dataset

  def label(example):  # Autograph turns the `if` on a tensor into a tf.cond.
    if tf.size(example["tags"]) > 1:
      return tf.constant([1.0])
    return tf.constant([0.0])

  _, labels, paths = next(iter(input_pipeline.input_fn(
      data, "test", 5, training=False, image_size=32, label_fn=label,
      label_features=("tags",), with_path=True)))
  vocabulary = tag_names(data)
  for value, path in zip(labels.numpy()[:, 0], paths.numpy()):
    assert value == float(expected_multi_hot(path.decode(), vocabulary).sum() > 1)


def test_a_split_that_selects_no_records_is_refused(tiny_dataset):
  _, data = tiny_dataset
  with pytest.raises(ValueError, match="selects no records"):
    input_pipeline.input_fn(data, "train[:0%]", 4, training=False, image_size=32)
