"""alti2v: scraped images and their labels → sharded TFRecords → trained vision models.

Layout (README, "Layout"): data/ (datasets and the input pipeline), models/, training/ (config,
loop, run directory), metrics.py, tasks/ (one home per task, and the registry), and thin command
lines beside them. `from alti2v import input_fn` gives the tf.data input pipeline.
"""
__version__ = "0.1.0"


def __getattr__(name):
  # Lazy (PEP 562), not to dodge an import circle: `import alti2v.data.samples` and the other
  # modules without TensorFlow stay free of it unless input_fn is asked for.
  if name == "input_fn":
    from alti2v.data.input_pipeline import input_fn  # pylint: disable=import-outside-toplevel
    return input_fn
  raise AttributeError(f"module 'alti2v' has no attribute {name!r}")
