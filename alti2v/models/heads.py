"""Head pieces on top of a backbone's feature map, shared by the tasks (a task's own head is in its module)."""
from __future__ import annotations

from typing import Optional

from keras import layers


def dense_head(features, num_outputs: int, hidden_units: int, dropout: Optional[float] = None):
  """Flatten → BatchNorm → Dense(hidden, relu) → [Dropout] → Dense(num_outputs, sigmoid).

  Independent sigmoid outputs: a tagger's tags, a screening filter's keep score, a student's
  label scores. The output layer computes in float32 whatever the mixed-precision policy,
  so the probabilities and the loss keep full precision.

  Args:
    dropout: rate of a Dropout before the output layer; None = no such layer.
  """
  x = layers.Flatten(name="flatten")(features)
  x = layers.BatchNormalization(name="head_bn")(x)
  x = layers.Dense(hidden_units, activation="relu", name="head_dense")(x)
  if dropout is not None:
    x = layers.Dropout(dropout, name="head_dropout")(x)
  return layers.Dense(num_outputs, activation="sigmoid", dtype="float32",
                      name="probabilities")(x)
