"""alti2v: scraped images and their tags → sharded TFRecords → trained vision models.

`from alti2v import input_fn` gives the tf.data input pipeline (imported lazily, so that
the command lines that need no TensorFlow start fast).
"""
__version__ = "0.1.0"


def __getattr__(name):
  if name == "input_fn":
    from alti2v.input_pipeline import input_fn  # pylint: disable=import-outside-toplevel
    return input_fn
  raise AttributeError(f"module 'alti2v' has no attribute {name!r}")
