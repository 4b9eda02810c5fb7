"""Apache Beam jobs that turn scraped images and their labels into alti2v datasets."""
