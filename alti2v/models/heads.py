"""Task heads on top of a backbone's feature map."""
from __future__ import annotations

import keras
from keras import layers


def tagger_head(features, num_outputs: int, hidden_units: int, dropout: float):
  """Flatten → BatchNorm → Dense(hidden, relu) → Dropout → Dense(num_outputs, sigmoid).

  The output layer computes in float32 whatever the mixed-precision policy, so the
  probabilities and the loss keep full precision.
  """
  x = layers.Flatten(name="flatten")(features)
  x = layers.BatchNormalization(name="head_bn")(x)
  x = layers.Dense(hidden_units, activation="relu", name="head_dense")(x)
  x = layers.Dropout(dropout, name="head_dropout")(x)
  return layers.Dense(num_outputs, activation="sigmoid", dtype="float32",
                      name="probabilities")(x)


def screen_head(features, hidden_units: int):
  """The screening filter's head: Flatten → BatchNorm → Dense(hidden, relu) → Dense(1, sigmoid)."""
  x = layers.Flatten(name="flatten")(features)
  x = layers.BatchNormalization(name="head_bn")(x)
  x = layers.Dense(hidden_units, activation="relu", name="head_dense")(x)
  return layers.Dense(1, activation="sigmoid", dtype="float32", name="probabilities")(x)


def caption_original_head(features, vocabulary_size: int, units: int, length: int):
  """The original katakana captioner: Flatten → Dense → RepeatVector → LSTM → RepeatVector →
  Bidirectional LSTM (sequences) → TimeDistributed Dense(vocabulary, softmax).

  Every position is predicted from the image alone: the decoder sees no previous character.
  """
  x = layers.Flatten(name="flatten")(features)
  x = layers.Dense(units, activation="relu", name="image_embedding")(x)
  x = layers.RepeatVector(length, name="repeat_image")(x)
  x = layers.LSTM(units, name="encoder_lstm")(x)
  x = layers.RepeatVector(length, name="repeat_state")(x)
  x = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name="decoder_bilstm")(x)
  return layers.TimeDistributed(
      layers.Dense(vocabulary_size, activation="softmax", dtype="float32"),
      name="probabilities")(x)


def show_and_tell_head(features, vocabulary_size: int, units: int, length: int):
  """Show and Tell: the image embedding is the LSTM's first input, then the previous characters.

  Returns:
    (outputs [B, length, vocabulary], [the caption_in Input]): trained with teacher
    forcing (caption_in = START + the target shifted right), decoded step by step.
  """
  caption_in = keras.Input((length,), dtype="int32", name="caption_in")
  image = layers.Flatten(name="flatten")(features)
  image = layers.Dense(units, name="image_embedding")(image)
  image = layers.Reshape((1, units), name="image_step")(image)
  chars = layers.Embedding(vocabulary_size, units, name="char_embedding")(caption_in)
  sequence = layers.Concatenate(axis=1, name="image_then_chars")([image, chars])
  hidden = layers.LSTM(units, return_sequences=True, name="decoder_lstm")(sequence)
  hidden = layers.Cropping1D((1, 0), name="after_image")(hidden)  # Step t predicts char t.
  outputs = layers.Dense(vocabulary_size, activation="softmax", dtype="float32",
                         name="probabilities")(hidden)
  return outputs, [caption_in]
