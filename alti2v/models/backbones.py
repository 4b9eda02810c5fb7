"""Backbones: VGG16 (ImageNet weights, a local .h5, or none) and a small CNN for CPU runs.

Both take uint8 images; VGG's own preprocessing (RGB→BGR, ImageNet mean) runs inside the
model, so the input pipeline moves 4× fewer bytes and an exported model accepts plain images.
build_model puts a task's head on top.
"""
from __future__ import annotations

import logging
from typing import Callable

import keras
from keras import layers

BACKBONES = ("vgg16", "small")
VGG_MEAN_BGR = (103.939, 116.779, 123.68)
# What keras.applications.VGG16(include_top=False, weights="imagenet") downloads.
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                   + VGG16_NOTOP_FILE)


class WeightsDownloadError(RuntimeError):
  """The ImageNet weights could not be downloaded (no internet, a proxy, a broken file)."""


def _is_download_failure(error: Exception) -> bool:
  # keras.utils.get_file turns HTTP and URL errors into a bare
  # Exception("URL fetch failure on ..."); a timeout or reset comes as an OSError, and
  # a download cut short fails its hash check with "Incomplete or corrupted file".
  message = str(error)
  return (isinstance(error, OSError) or message.startswith("URL fetch failure")
          or message.startswith("Incomplete or corrupted file"))


@keras.saving.register_keras_serializable(package="alti2v")
class VGGPreprocess(layers.Layer):
  """uint8 RGB → float BGR minus the ImageNet mean (keras.applications.vgg16.preprocess_input)."""

  def __init__(self, **kwargs):
    kwargs.setdefault("dtype", "float32")  # Subtract the mean in float32, then autocast.
    super().__init__(**kwargs)

  def call(self, images):
    images = keras.ops.cast(images, "float32")
    bgr = images[..., ::-1]
    return bgr - keras.ops.convert_to_tensor(VGG_MEAN_BGR, "float32")


def _small_cnn(image_size: int) -> keras.Model:
  """Four conv blocks, 32-256 filters: trains in minutes on a CPU at 64-96 px."""
  inputs = keras.Input((image_size, image_size, 3), name="small_input")
  x = inputs
  for i, filters in enumerate((32, 64, 128, 256)):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i+1}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"block{i+1}_bn")(x)
    x = layers.ReLU(name=f"block{i+1}_relu")(x)
    x = layers.MaxPooling2D(name=f"block{i+1}_pool")(x)
  return keras.Model(inputs, x, name="small")


def build_backbone(name: str, image_size: int, weights: str | None) -> keras.Model:
  """The convolutional part, taking preprocessed float images.

  Args:
    name: "vgg16" or "small".
    image_size: input side, pixels.
    weights: for vgg16: "imagenet" (downloaded by Keras on first use), a local
      .h5 weights file (include_top=False), or None (random). Must be None for small.

  Raises:
    WeightsDownloadError: weights="imagenet" and the file could not be downloaded.
  """
  if name == "vgg16":
    try:
      return keras.applications.VGG16(include_top=False, weights=weights,
                                      input_shape=(image_size, image_size, 3))
    except Exception as e:  # pylint: disable=broad-except  (get_file raises Exception)
      if weights != "imagenet" or not _is_download_failure(e):
        raise
      raise WeightsDownloadError(
          f"the ImageNet weights of VGG16 could not be downloaded (no internet?): {e}. "
          f"Download {VGG16_NOTOP_URL} where you can and pass the file with "
          f"--weights=/path/{VGG16_NOTOP_FILE} (or put it in ~/.keras/models/, where "
          "Keras looks before downloading), or start from random weights with "
          "--weights=none") from e
  if name == "small":
    if weights is not None:
      raise ValueError("the small backbone has no pretrained weights: use --weights=none")
    return _small_cnn(image_size)
  raise ValueError(f"unknown backbone {name!r}; known: {BACKBONES}")


def freeze_layers(backbone: keras.Model, count: int, weights: str | None) -> int:
  """Freezes backbone.layers[:count] (the input layer counts, as in model.layers[:N]).

  Freezing random weights would freeze noise: with weights=None nothing is frozen.

  Returns:
    The number of layers frozen.
  """
  if count <= 0:
    return 0
  if weights is None:
    logging.warning("frozen_layers=%d ignored: weights=None, so every layer trains",
                    count)
    return 0
  for layer in backbone.layers[:count]:
    layer.trainable = False
  logging.info("froze %d backbone layers: %s ... %s", count, backbone.layers[0].name,
               backbone.layers[count - 1].name)
  return count


def build_model(head: Callable, *, image_size: int, backbone: str, weights: str | None,
                frozen_layers: int, name: str) -> keras.Model:
  """uint8 images → VGG preprocessing → backbone → head.

  Args:
    head: backbone features → outputs, or (outputs, [its own keras.Input layers]) for a
      model with more inputs than the image (they join it under their names).
    image_size, backbone, weights, frozen_layers: as in build_backbone, freeze_layers.
    name: the model's name.
  """
  inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
  x = VGGPreprocess(name="vgg_preprocess")(inputs)
  features = build_backbone(backbone, image_size, weights)
  freeze_layers(features, frozen_layers, weights)
  outputs = head(features(x))
  if isinstance(outputs, tuple):  # A head with inputs of its own (Show and Tell).
    outputs, extra_inputs = outputs
    return keras.Model({"image": inputs, **{i.name: i for i in extra_inputs}}, outputs,
                       name=name)
  return keras.Model(inputs, outputs, name=name)
