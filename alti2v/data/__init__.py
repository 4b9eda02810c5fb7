"""Datasets: the feature spec, opening and verifying a dataset, the tf.data input pipeline, Pillow."""
