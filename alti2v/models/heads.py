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
