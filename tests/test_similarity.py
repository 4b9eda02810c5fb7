"""Feature vectors and similar images (alti2v.embed, alti2v.similar, alti2v/similarity.py).

Near-duplicates of an image (flipped, re-encoded at low JPEG quality, shrunk) come back
before every other image, on the float vectors and on the bits, exactly and approximately;
the vectors folder reads back what was written, non-UTF-8 names included; unreadable files
are reported; a killed run leaves nothing that looks finished.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from alti2v import similarity
from alti2v.training import run_dir
from tests.conftest import tiny_config

BAD_NAME = b"bad\xff.jpg"  # Not UTF-8.


@pytest.fixture(scope="module")
def wide_tagger(tiny_dataset, tmp_path_factory):
  """A tagger with 256 hidden units (the shared one's 16 bits are too few for Hamming)."""
  from alti2v import tasks
  _, data_dir = tiny_dataset
  model_dir = tmp_path_factory.mktemp("wide_tagger")
  tasks.train(tiny_config(data_dir, model_dir, epochs=1, steps_per_epoch=4,
                          hidden_units=256))
  return str(model_dir)


@pytest.fixture(scope="module")
def corpus(tiny_dataset, tmp_path_factory):
  """(original, its three near-duplicates, every path to embed, the unreadable file)."""
  images, _ = tiny_dataset
  found = sorted(os.path.join(root, n) for root, _, names in os.walk(images) for n in names
                 if n.endswith(".jpg"))[:30]
  original = found[0]
  root = tmp_path_factory.mktemp("near_duplicates")
  image = Image.open(original).convert("RGB")
  duplicates = [str(root / "flipped.png"), str(root / "low_quality.jpg"),
                str(root / "shrunk.png")]
  image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(duplicates[0])
  image.save(duplicates[1], quality=10)
  image.resize((round(image.width * 0.6), round(image.height * 0.6))).save(duplicates[2])
  bad_name = os.fsdecode(os.path.join(os.fsencode(root), BAD_NAME))
  shutil.copy(found[5], bad_name)
  unreadable = str(root / "unreadable.jpg")
  with open(unreadable, "w", encoding="utf-8") as f:
    f.write("not an image")
  return original, duplicates, found + duplicates + [unreadable, bad_name], unreadable


@pytest.fixture(scope="module")
def vectors_dir(wide_tagger, corpus, tmp_path_factory):
  _, _, paths, _ = corpus
  out = str(tmp_path_factory.mktemp("vectors") / "index")
  similarity.write_vectors(run_dir.load(wide_tagger), paths, out, shard_size=8)
  return out


@pytest.mark.parametrize("metric", similarity.METRICS)
@pytest.mark.parametrize("index_type", similarity.INDEX_TYPES)
def test_near_duplicates_come_back_first(wide_tagger, corpus, vectors_dir, metric,
                                         index_type):
  original, duplicates, paths, _ = corpus
  vectors = similarity.read_vectors(vectors_dir)
  run = similarity.open_query_run(vectors)
  everything = len(vectors.paths)
  (line,) = similarity.neighbours(vectors, run, [original], k=everything, metric=metric,
                                  index_type=index_type)
  found = [n["path"] for n in line["neighbours"]]
  assert line["query"] == original and len(found) == everything
  assert found[0] == original  # Indexed itself: first, at similarity 1 or distance 0.
  assert set(found[1:4]) == set(duplicates)  # Then its near-duplicates, before any other.
  key = "score" if metric == "cosine" else "distance"
  values = [n[key] for n in line["neighbours"]]
  assert values == sorted(values, reverse=metric == "cosine")
  if metric == "cosine":
    assert values[0] == pytest.approx(1.0, abs=1e-3)
    assert min(values[1:4]) > values[4]  # Strictly: no other image ties a duplicate.
  else:
    assert values[0] == 0 and max(values[1:4]) < values[4]
  (alone,) = similarity.neighbours(vectors, run, [original], k=3, metric=metric,
                                   index_type=index_type, exclude_self=True)
  assert set(n["path"] for n in alone["neighbours"]) == set(duplicates)


def test_approximate_indexes_are_saved_and_reused(vectors_dir):
  vectors = similarity.read_vectors(vectors_dir)
  saved = os.path.join(vectors_dir, similarity.INDEX_FILE.format(index_type="ivf",
                                                                 metric="hamming"))
  similarity.load_index(vectors, "hamming", "ivf")
  assert os.path.exists(saved)
  written = os.path.getmtime(saved)
  assert similarity.load_index(vectors, "hamming", "ivf").ntotal == len(vectors.paths)
  assert os.path.getmtime(saved) == written  # Read back, not built again.
  assert not [n for n in os.listdir(vectors_dir) if n.endswith(".tmp")]


def test_the_folder_reads_back_what_was_written(wide_tagger, corpus, vectors_dir):
  _, _, paths, unreadable = corpus
  run = run_dir.load(wide_tagger)
  expected = [(p, v) for p, v, error in run.embed_files(paths) if not error]
  vectors = similarity.read_vectors(vectors_dir)
  readable = [p for p in paths if p != unreadable]
  assert vectors.paths == [os.path.abspath(p) for p in readable] == [p for p, _ in expected]
  assert os.fsencode(vectors.paths[-1]).endswith(b"/" + BAD_NAME)  # The very bytes.
  raw = np.stack([v for _, v in expected])
  assert raw.shape == (len(readable), 256) and (raw >= 0).all()  # The ReLU hidden layer.
  assert vectors.vectors.dtype == np.float16
  np.testing.assert_allclose(vectors.vectors, raw / np.linalg.norm(raw, axis=1)[:, None],
                             atol=1e-3)
  assert vectors.bits.shape == (len(readable), 32)
  np.testing.assert_array_equal(np.unpackbits(vectors.bits, axis=1), raw > 0)
  meta = vectors.meta
  assert (meta["count"], meta["errors"], meta["dimension"], meta["task"]) == (
      len(readable), 1, 256, "tagger")
  count = len(meta["shards"])
  assert count == -(-len(readable) // 8) and [s["count"] for s in meta["shards"]] == (
      [8] * (count - 1) + [len(readable) - 8 * (count - 1)])
  assert sorted(os.listdir(vectors_dir)) == sorted(
      [similarity.META_FILE, similarity.PATHS_FILE, similarity.ERRORS_FILE]
      + [similarity.VECTORS_SHARD.format(i, count) for i in range(count)]
      + [similarity.BITS_SHARD.format(i, count) for i in range(count)]
      + [n for n in os.listdir(vectors_dir) if n.startswith("index-")])
  (error,) = similarity.read_errors(vectors_dir)
  assert error["path"] == unreadable and error["error"].startswith("not_an_image")


def test_a_killed_run_leaves_no_finished_looking_folder(wide_tagger, corpus, tmp_path):
  _, _, paths, _ = corpus
  run = run_dir.load(wide_tagger)
  out = tmp_path / "index"
  similarity.write_vectors(run, paths[:3], str(out))
  before = sorted(os.listdir(out))

  def killed(*args, **kwargs):
    yield from list(run_dir.TrainedRun.embed_files(run, paths[:4]))[:2]
    raise KeyboardInterrupt  # As a Ctrl-C between two batches.

  run.embed_files = killed
  with pytest.raises(KeyboardInterrupt):
    similarity.write_vectors(run, paths, str(out), shard_size=1)
  assert sorted(os.listdir(out)) == before  # The old folder, untouched.
  assert similarity.read_vectors(str(out)).meta["count"] == 3
  assert os.listdir(tmp_path) == ["index"]  # No temporary folder left either.


def test_refusals(screen_model, trained_tagger, wide_tagger, vectors_dir, tmp_path):
  image = tmp_path / "x.jpg"
  image.write_bytes(b"")
  with pytest.raises(ValueError, match=r"holds a screen model; feature vectors come from"):
    similarity.write_vectors(run_dir.load(screen_model), [str(image)], str(tmp_path / "o"))
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep me")
  with pytest.raises(ValueError, match=r"holds no vectors .*refusing to replace it"):
    similarity.write_vectors(run_dir.load(wide_tagger), [str(image)], str(tmp_path / "mine"))
  with pytest.raises(ValueError, match=r"none of the 1 files could be read"):
    similarity.write_vectors(run_dir.load(wide_tagger), [str(image)], str(tmp_path / "o"))
  assert sorted(os.listdir(tmp_path)) == ["mine", "x.jpg"]
  with pytest.raises(FileNotFoundError, match=r"holds no vectors \(meta.json is missing\)"):
    similarity.read_vectors(str(tmp_path / "mine"))
  _, other = trained_tagger
  with pytest.raises(ValueError, match=r"is not the model .* was made with"):
    similarity.open_query_run(similarity.read_vectors(vectors_dir), other)


def test_commands(wide_tagger, corpus, tmp_path):
  original, duplicates, paths, unreadable = corpus
  out = str(tmp_path / "index")
  env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
  done = subprocess.run(
      [sys.executable, "-m", "alti2v.embed", "--model_dir", wide_tagger, "--output", out,
       "--index_type", "hnsw", "--noprogress", *paths], capture_output=True, text=True,
      check=True, env=env)
  assert json.loads(done.stdout) == {"output": out, "vectors": len(paths) - 1,
                                     "dimension": 256, "errors": 1}
  assert f'unreadable: {{"path": "{unreadable}", "error": "not_an_image' in done.stderr
  assert {"index-hnsw-cosine.faiss", "index-hnsw-hamming.faiss"} <= set(os.listdir(out))
  done = subprocess.run(
      [sys.executable, "-m", "alti2v.similar", "--index", out, "-k", "3", "--metric",
       "hamming", "--index_type", "hnsw", "--exclude_self", original, unreadable],
      capture_output=True, text=True, check=True, env=env)
  first, second = [json.loads(line) for line in done.stdout.splitlines()]
  assert first["query"] == original
  assert {n["path"] for n in first["neighbours"]} == set(duplicates)
  assert all(isinstance(n["distance"], int) for n in first["neighbours"])
  assert second["query"] == unreadable and second["error"].startswith("not_an_image")
  done = subprocess.run([sys.executable, "-m", "alti2v.similar", "--index", str(tmp_path),
                         original], capture_output=True, text=True, check=False, env=env)
  assert done.returncode == 2 and "Traceback" not in done.stderr
  assert done.stderr.strip().endswith("holds no vectors (meta.json is missing): make it "
                                      "with python -m alti2v.embed")
