"""Decoding captions from a trained captioner, on whole batches: greedy or beam search.

The original captioner predicts every position at once (argmax; a beam has nothing to
search); Show and Tell (caption_ar) is decoded one character per step with its own layers.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from alti2v.tasks.caption import model as caption_model
from alti2v.tasks.caption import vocabulary as vocab


def is_autoregressive(model) -> bool:
  return isinstance(model.input, dict) and "caption_in" in model.input


class Decoder:
  """Decodes whole batches: the original captioner in one forward pass; Show and Tell one
  character per step for every image (and every beam) at once, reusing the model's layers.

  The image is encoded once per batch; each step runs only the character embedding, one
  LSTM cell step and the output layer on [rows, units] (not the whole sequence again).
  """

  def __init__(self, model):
    self.model = model
    self.autoregressive = is_autoregressive(model)
    if not self.autoregressive:
      return
    try:
      image = model.get_layer(caption_model.IMAGE_STATE).output
    except ValueError as e:
      raise ValueError("this Show-and-Tell run predates the decoder that reads the image "
                       f"at every step (no layer {caption_model.IMAGE_STATE!r}): retrain it") from e
    self._encoder = keras.Model(model.input["image"], [
        image, model.get_layer(caption_model.INITIAL_H).output,
        model.get_layer(caption_model.INITIAL_C).output])
    embedding = model.get_layer(caption_model.CHAR_EMBEDDING)
    cell = model.get_layer(caption_model.DECODER_LSTM).cell
    output = model.get_layer(caption_model.CAPTION_OUTPUT)
    units = int(image.shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)] +
                 [tf.TensorSpec([None, units], tf.float32)] * 3)
    def step(ids, image_rows, h, c):
      x = tf.concat([tf.cast(embedding(ids), tf.float32), image_rows], axis=-1)
      out, (h, c) = cell(x, [h, c], training=False)
      return (tf.cast(output(out), tf.float32), tf.cast(h, tf.float32),
              tf.cast(c, tf.float32))
    self._step = step

  def _start(self, images):
    image, h, c = self._encoder(np.asarray(images), training=False)
    return (tf.cast(image, tf.float32), tf.cast(h, tf.float32), tf.cast(c, tf.float32))

  def generate(self, images, beam_size: int = 1) -> np.ndarray:
    """int32 [B, CAPTION_LENGTH] ids: greedy (beam_size 1) or beam search per image."""
    images = np.asarray(images)
    if not self.autoregressive:
      return np.asarray(self.model.predict_on_batch(images)).argmax(-1).astype(np.int32)
    if beam_size <= 1:
      return self._greedy(images)
    return self._beam_search(images, beam_size)

  def _greedy(self, images) -> np.ndarray:
    batch, length = len(images), vocab.CAPTION_LENGTH
    image, h, c = self._start(images)
    ids = np.full(batch, vocab.START, np.int32)
    out = np.zeros((batch, length), np.int32)
    done = np.zeros(batch, bool)
    for t in range(length):
      probabilities, h, c = self._step(ids, image, h, c)
      chosen = probabilities.numpy().argmax(-1).astype(np.int32)
      chosen[done] = vocab.PAD
      out[:, t] = chosen
      done |= chosen == vocab.END
      if done.all():
        break
      ids = chosen
    return out

  def _beam_search(self, images, beam_size: int) -> np.ndarray:
    """Every image's beams advance together, one step call per character.

    Per image, the same search as beam_search_reference: each live beam offers its
    beam_size best next characters; the best candidates by total log-probability
    fill the beam; a caption ending in END (or at full length) is finished with its
    mean log-probability per character; the search stops when beam_size are finished.
    """
    length = vocab.CAPTION_LENGTH
    image, h, c = self._start(images)
    # Per image: live beams (ids, total log-probability, row in the step's state).
    beams = [[((), 0.0, i)] for i in range(len(images))]
    finished: list[list] = [[] for _ in images]
    image_rows = np.arange(len(images))
    last = np.full(len(images), vocab.START, np.int32)
    for t in range(length):
      rows = tf.constant(image_rows, tf.int32)
      probabilities, h, c = self._step(last, tf.gather(image, rows), h, c)
      logp = _log(probabilities.numpy())
      next_rows, next_last, next_image_rows = [], [], []
      for i, live in enumerate(beams):
        if not live:
          continue
        candidates = []
        for ids, score, row in live:
          for token in _top(logp[row], beam_size):
            candidates.append((ids + (int(token),), score + float(logp[row, token]), row))
        candidates.sort(key=lambda cand: -cand[1])
        beams[i] = []
        for ids, score, row in candidates:
          if ids[-1] == vocab.END or len(ids) == length:
            finished[i].append((ids, score / len(ids)))
          else:
            beams[i].append((ids, score, len(next_rows)))
            next_rows.append(row)
            next_last.append(ids[-1])
            next_image_rows.append(image_rows[row])
          if len(beams[i]) == beam_size:
            break
        if len(finished[i]) >= beam_size:
          # Done: drop its beams (their rows stay in next_rows, unused, this step only).
          beams[i] = []
      if not next_rows or not any(beams):
        break
      # Keep only the rows of beams still live, renumbered.
      keep = sorted({row for live in beams for _, _, row in live})
      renumber = {old: new for new, old in enumerate(keep)}
      beams = [[(ids, score, renumber[row]) for ids, score, row in live] for live in beams]
      gather = tf.constant([next_rows[k] for k in keep], tf.int32)
      h, c = tf.gather(h, gather), tf.gather(c, gather)
      last = np.array([next_last[k] for k in keep], np.int32)
      image_rows = np.array([next_image_rows[k] for k in keep])
    return np.stack([_best(done_i, live_i, length) for done_i, live_i in zip(finished, beams)])


def _log(probabilities: np.ndarray) -> np.ndarray:
  """Log-probabilities, the same function in both decoders (so ties break alike)."""
  return np.log(np.maximum(probabilities, 1e-12))


def _top(logp_row: np.ndarray, k: int) -> np.ndarray:
  """The k best tokens, best first; ties in token order (the same in both decoders)."""
  return np.argsort(-logp_row, kind="stable")[:k]


def _best(finished: list, live: list, length: int) -> np.ndarray:
  if not finished:
    finished = [(ids, score / len(ids)) for ids, score, *_ in live]
  best = max(finished, key=lambda f: f[1])[0]
  return np.array(list(best) + [vocab.PAD] * (length - len(best)), np.int32)


def generate(model, images, beam_size: int = 1) -> np.ndarray:
  """int32 [B, CAPTION_LENGTH] caption ids of a batch of uint8 images (see Decoder)."""
  return Decoder(model).generate(images, beam_size)


def beam_search_reference(model, image, beam_size: int) -> np.ndarray:
  """One image, the whole model re-run at every step: slow; the reference the batched
  decoder is tested against (beam_size 1 = greedy)."""
  length = vocab.CAPTION_LENGTH
  image = np.asarray(image)[None]
  beams = [((), 0.0)]  # (ids so far, log-probability)
  finished = []
  for t in range(length):
    caption_in = np.zeros((len(beams), length), np.int32)
    caption_in[:, 0] = vocab.START
    for b, (ids, _) in enumerate(beams):
      caption_in[b, 1:t + 1] = ids
    out = model.predict_on_batch({"image": np.repeat(image, len(beams), axis=0),
                                  "caption_in": caption_in})
    logp = _log(np.asarray(out, np.float32)[:, t])
    candidates = []
    for b, (ids, score) in enumerate(beams):
      for token in _top(logp[b], beam_size):
        candidates.append((ids + (int(token),), score + float(logp[b, token])))
    candidates.sort(key=lambda cand: -cand[1])
    beams = []
    for ids, score in candidates:
      if ids[-1] == vocab.END or len(ids) == length:
        finished.append((ids, score / len(ids)))
      else:
        beams.append((ids, score))
      if len(beams) == beam_size:
        break
    if not beams or len(finished) >= beam_size:
      break
  return _best(finished, beams, length)
