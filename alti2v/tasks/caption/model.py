"""The captioners' heads: the original (every character from the image at once) and Show and Tell.

Both start from the image as one normalised vector; WithPositions gives the original's decoder
each step's position.
"""
from __future__ import annotations

import keras
from keras import layers


def _image_embedding(features, units: int):
  """Flatten → Dense → LayerNormalization → ReLU: the image as one vector of `units`.

  The normalisation keeps the image's scale comparable to the character embeddings and
  the LSTM's state, whatever the backbone's activations; without it the image's signal
  was drowned and both captioners learned a language model that ignores the image.
  """
  x = layers.Flatten(name="flatten")(features)
  x = layers.Dense(units, name="image_embedding")(x)
  x = layers.LayerNormalization(name="image_norm")(x)
  return layers.Activation("relu", name="image_relu")(x)


@keras.saving.register_keras_serializable(package="alti2v")
class WithPositions(layers.Layer):
  """Concatenates a learned embedding of each position to every step of a sequence.

  The original captioner's decoder gets the same vector at every step; to say character t
  it had to count steps in its state, and learned slowly and poorly (validation loss 1.2
  per character after 9 epochs on the sample captions). With its position given, each
  step knows which character it says.
  """

  def __init__(self, length: int, units: int, **kwargs):
    super().__init__(**kwargs)
    self.length, self.units = length, units

  def build(self, input_shape):
    self.positions = self.add_weight(shape=(self.length, self.units),
                                     initializer="random_normal", name="positions")

  def call(self, x):
    positions = keras.ops.cast(self.positions, x.dtype)[None]
    positions = keras.ops.broadcast_to(positions, (keras.ops.shape(x)[0], self.length,
                                                   self.units))
    return keras.ops.concatenate([x, positions], axis=-1)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], input_shape[-1] + self.units)

  def get_config(self):
    return {**super().get_config(), "length": self.length, "units": self.units}


def caption_original_head(features, vocabulary_size: int, units: int, length: int):
  """The original katakana captioner: image embedding → RepeatVector → LSTM → RepeatVector →
  (+ position embedding) → Bidirectional LSTM (sequences) → TimeDistributed Dense(vocabulary,
  softmax).

  Every position is predicted from the image alone: the decoder sees no previous
  character, so it is trained on one canonical caption per image (a caption drawn among
  several phrasings would teach it their per-position blend). The position embedding is
  ours (see WithPositions); the rest is the original's shape.
  """
  image = _image_embedding(features, units)
  x = layers.RepeatVector(length, name="repeat_image")(image)
  x = layers.LSTM(units, name="encoder_lstm")(x)
  x = layers.Concatenate(name="state_and_image")([x, image])
  x = layers.RepeatVector(length, name="repeat_state")(x)
  x = WithPositions(length, units, name="positions")(x)
  x = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name="decoder_bilstm")(x)
  return layers.TimeDistributed(
      layers.Dense(vocabulary_size, activation="softmax", dtype="float32"),
      name="probabilities")(x)


# Layer names the step decoder (decode.py) looks up in a trained Show-and-Tell model.
IMAGE_STATE = "image_relu"
INITIAL_H, INITIAL_C = "initial_h", "initial_c"
CHAR_EMBEDDING, DECODER_LSTM, CAPTION_OUTPUT = "char_embedding", "decoder_lstm", "probabilities"


def show_and_tell_head(features, vocabulary_size: int, units: int, length: int):
  """Show and Tell, with the image in the state and at every step.

  The normalised image embedding sets the LSTM's initial state (h0, c0) and is
  concatenated to every character's embedding, so each step sees the image: given only
  once as the first input, it faded within a few characters and the model ignored it.

  Returns:
    (outputs [B, length, vocabulary], [the caption_in Input]): trained with teacher
    forcing (caption_in = START + the target shifted right), decoded step by step with
    the same layers (decode.py).
  """
  caption_in = keras.Input((length,), dtype="int32", name="caption_in")
  image = _image_embedding(features, units)
  h0 = layers.Dense(units, activation="tanh", name=INITIAL_H)(image)
  c0 = layers.Dense(units, name=INITIAL_C)(image)
  chars = layers.Embedding(vocabulary_size, units, name=CHAR_EMBEDDING)(caption_in)
  image_steps = layers.RepeatVector(length, name="image_at_every_step")(image)
  sequence = layers.Concatenate(name="chars_and_image")([chars, image_steps])
  hidden = layers.LSTM(units, return_sequences=True, name=DECODER_LSTM)(
      sequence, initial_state=[h0, c0])
  outputs = layers.Dense(vocabulary_size, activation="softmax", dtype="float32",
                         name=CAPTION_OUTPUT)(hidden)
  return outputs, [caption_in]
