"""alti2v: scraped images and their tags → sharded TFRecords → trained vision models."""
__version__ = "0.1.0"
