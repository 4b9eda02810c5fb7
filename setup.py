"""Installs alti2v (training library) and beam_jobs (dataset builders)."""
import setuptools

# Ranges are the ones tested together (protobuf 6 era). tensorflow-datasets'
# own beam extra pins an old Beam, so Beam is listed here directly instead.
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tensorboard>=2.21,<2.22",  # TF 2.21 no longer pulls it in.
    "apache-beam[tfrecord]>=2.77,<2.78",  # Beam's tfrecordio (a user's own pipelines).
    # The shard writer frames TFRecords itself with it (beam_jobs/stages/write.py).
    "google-crc32c>=1.5,<2",
    "tensorflow-datasets>=4.9.10,<4.10",
    "numpy>=1.26,<2.5",
    "pillow>=10.3,<13",
    "absl-py>=2.1,<3",
]

SIMILAR = ["faiss-cpu>=1.9,<2"]  # alti2v.similar: exact and approximate nearest neighbours.
EXPORT = ["tf2onnx>=1.17,<2", "onnx>=1.17,<2", "onnxruntime>=1.20,<2"]  # alti2v.export.
REPORT = ["matplotlib>=3.8,<4"]  # alti2v.report: pictures of datasets and runs.
SERVE = ["fastapi>=0.115,<1", "uvicorn>=0.30,<1", "python-multipart>=0.0.9,<1"]  # alti2v.serve.

EXTRAS_REQUIRE = {
    "similar": SIMILAR,
    "export": EXPORT,
    "report": REPORT,
    "serve": SERVE,
    # The tests drive every command, and the web page in Debian's chromium (Selenium).
    "test": ["pytest>=8,<10", "httpx>=0.27,<1", "selenium>=4.20,<5"]
            + SIMILAR + EXPORT + REPORT + SERVE,
    "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    # Without it Beam has no gs:// filesystem ("Unable to get filesystem").
    "gcp": ["apache-beam[gcp]>=2.77,<2.78"],
    # Katakana readings of Japanese captions: MeCab with the unidic-lite dictionary
    # (~250 MB installed; the `unidic` package is only a downloader), jaconv for widths.
    # The caption builder's Dataflow workers get it from beam_jobs/requirements/caption.txt
    # (the same lines: tests/test_shipping.py).
    "caption": ["fugashi>=1.3,<2", "unidic-lite==1.0.8", "jaconv>=0.3,<1"],
}

setuptools.setup(
    name="alti2v",
    version="0.1.0",
    description=("Scraped images and their tags to sharded TFRecords and "
                 "trained vision models."),
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["alti2v", "alti2v.*",
                                               "beam_jobs", "beam_jobs.*"]),
    package_data={"alti2v.serving": ["static/*.html"],  # The web page of alti2v.serve.
                  # What each job's Dataflow workers need besides install_requires.
                  "beam_jobs": ["requirements/*.txt"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
