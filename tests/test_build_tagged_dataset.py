"""The whole tagged-dataset job: real files on disk → real shards, read back with the production reader."""
import collections
import hashlib
import io
import json
import os
import shutil

from apache_beam.metrics.metric import MetricsFilter
import pytest
from PIL import Image
import tensorflow_datasets as tfds

from alti2v import dataset as dataset_command
from alti2v.data import dataset as dataset_lib
from alti2v.data import features as features_lib
from alti2v.tasks import tagger
from beam_jobs import build_tagged_dataset as job
from beam_jobs.stages import read
from beam_jobs.stages import vocabulary as vocabulary_lib
from tests import fixtures

NUM_SHARDS = 3


def build(input_dir, output_dir, *extra):
  return job.run([
      "--input_dir", str(input_dir), "--output_dir", str(output_dir),
      "--num_shards", str(NUM_SHARDS), "--max_pixels", str(fixtures.MAX_PIXELS),
      "--val_fraction", "0.15", "--test_fraction", "0.15", "--image_size", "64",
      *extra])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("job")
  scrape, out = root / "scrape", root / "dataset"
  expected = fixtures.write_scrape(str(scrape))
  result = build(scrape, out, "--direct_running_mode=in_memory", "--direct_num_workers=1")
  return scrape, out, expected, result


def read_back(data_dir):
  """path → (split, tag names, stored JPEG bytes, height, width), via tfds as a user reads it."""
  builder = dataset_lib.load_builder(str(data_dir))
  names = builder.info.features[tagger.TAGS].feature.names
  records = {}
  for split in builder.info.splits:
    ds = builder.as_dataset(split=split, decoders={
        features_lib.IMAGE: tfds.decode.SkipDecoding()})
    for ex in tfds.as_numpy(ds):
      path = ex[features_lib.PATH].decode()
      assert path not in records, f"{path} stored twice"
      records[path] = (split, {names[i] for i in ex[tagger.TAGS]},
                       ex[features_lib.IMAGE], int(ex[features_lib.HEIGHT]),
                       int(ex[features_lib.WIDTH]), ex[features_lib.CONTENT_HASH].decode())
  return records


def vocabulary(data_dir):
  path = os.path.join(data_dir, features_lib.vocabulary_file(tagger.TAGS))
  with open(path, encoding="utf-8") as f:
    return f.read().split()


def test_every_valid_image_is_there_once_with_exactly_its_tags(built):
  _, out, expected, _ = built
  records = read_back(out)
  vocab = set(vocabulary(out))
  ok = {p: job.parse_tags(tags) for p, (kind, tags) in expected.items() if kind == "ok"}
  assert set(records) == set(ok)
  for path, tags in ok.items():
    split, stored_tags, jpeg, height, width, content_hash = records[path]
    assert stored_tags == set(tags) & vocab, path
    with open(path, "rb") as f:
      data = f.read()
    assert content_hash == hashlib.sha256(data).hexdigest()
    assert split == read.split_of(content_hash, 0.15, 0.15)
    image = Image.open(io.BytesIO(jpeg))
    assert (image.format, image.mode) == ("JPEG", "RGB"), path
    assert image.size == (width, height) and max(width, height) <= 64


def test_every_broken_input_is_rejected_with_its_reason(built):
  _, out, expected, _ = built
  with open(os.path.join(out, features_lib.REJECTED_FILE), encoding="utf-8") as f:
    rejected = [json.loads(line) for line in f]
  want = {p: reason for p, (kind, reason) in expected.items() if kind == "rejected"}
  assert {r["path"]: r["reason"] for r in rejected} == want
  assert len(rejected) == len(want)
  duplicate = next(r for r in rejected if r["reason"] == "duplicate")
  with open(duplicate["path"], "rb") as a, open(
      duplicate["detail"].removeprefix("duplicate of "), "rb") as b:
    assert a.read() == b.read()


def test_vocabulary_is_built_from_the_train_split_only(built):
  _, out, expected, _ = built
  counts = collections.Counter()
  for path, (kind, tags) in expected.items():
    if kind == "ok":
      with open(path, "rb") as f:
        h = hashlib.sha256(f.read()).hexdigest()
      if read.split_of(h, 0.15, 0.15) == "train":
        counts.update(job.parse_tags(tags))
  assert vocabulary(out) == vocabulary_lib.top_labels(counts.items(), 5000, 1)
  builder = dataset_lib.load_builder(str(out))
  assert builder.info.features[tagger.TAGS].feature.names == vocabulary(out)


def test_tag_counts_match_the_records(built):
  _, out, _, _ = built
  records = read_back(out)
  with open(os.path.join(out, features_lib.TAG_COUNTS_FILE), encoding="utf-8") as f:
    header, *rows = [line.split("\t") for line in f.read().splitlines()]
  assert header == ["tag", "id", "train", "validation", "test"]
  for tag, tag_id, *per_split in rows:
    want = [sum(1 for r in records.values() if r[0] == s and tag in r[1])
            for s in features_lib.SPLITS]
    assert [int(n) for n in per_split] == want, tag


def test_tfds_loads_it_with_the_right_splits_and_shards(built):
  _, out, _, _ = built
  records = read_back(out)
  builder = tfds.builder_from_directory(str(out))
  for split in features_lib.SPLITS:
    info = builder.info.splits[split]
    assert info.num_shards == NUM_SHARDS
    assert info.num_examples == sum(1 for r in records.values() if r[0] == split)
    names = sorted(f for f in os.listdir(out) if f"-{split}.tfrecord-" in f)
    assert names == [f"tagged_images-{split}.tfrecord-{i:05d}-of-{NUM_SHARDS:05d}"
                     for i in range(NUM_SHARDS)]
  assert dataset_lib.verify_dataset(str(out)) == {
      s: builder.info.splits[s].num_examples for s in features_lib.SPLITS}
  with open(os.path.join(out, features_lib.DATASET_INFO_FILE), encoding="utf-8") as f:
    info_json = json.load(f)
  assert "metadata" not in info_json and "build_args" not in info_json
  with open(os.path.join(out, features_lib.METADATA_FILE), encoding="utf-8") as f:
    metadata = json.load(f)
  assert metadata["build_args"]["num_shards"] == NUM_SHARDS
  assert metadata["library_versions"]["apache-beam"].startswith("2.")
  assert metadata["num_examples"] == {
      s: builder.info.splits[s].num_examples for s in features_lib.SPLITS}
  for split, sizes in metadata["shard_file_bytes"].items():
    assert sizes == [os.path.getsize(p) for p in dataset_lib.shard_paths(builder, split)]
  assert not os.path.exists(os.path.join(out, features_lib.TMP_DIR))


def test_beam_counters(built):
  _, _, expected, result = built
  counters = {c.key.metric.name: c.committed for c in
              result.metrics().query(MetricsFilter().with_namespace("alti2v"))["counters"]}
  ok = sum(1 for kind, _ in expected.values() if kind == "ok")
  images = sum(1 for p in expected if not p.endswith(".txt"))
  assert counters["images_read"] == images
  assert sum(counters[f"written_{s}"] for s in features_lib.SPLITS) == ok
  assert counters["duplicates"] == 1
  assert counters["rejected_truncated"] == 1 and counters["rejected_no_tag_file"] == 1
  assert counters["files_ignored"] == 1  # notes.json


def test_a_tampered_shard_count_is_caught(built, tmp_path):
  _, out, _, _ = built
  copy = tmp_path / "copy"
  shutil.copytree(out, copy)
  info_path = copy / features_lib.DATASET_INFO_FILE
  info = json.loads(info_path.read_text())
  train = next(s for s in info["splits"] if s["name"] == "train")
  train["shardLengths"][1] = str(int(train["shardLengths"][1]) + 1)
  info_path.write_text(json.dumps(info))
  with pytest.raises(dataset_lib.DatasetError,
                     match=r"tagged_images-train\.tfrecord-00001-of-00003 holds \d+ "
                     r"records but dataset_info.json says"):
    dataset_lib.verify_dataset(str(copy))
  assert dataset_command.main(["x", str(copy)]) == 1


def test_a_truncated_shard_is_caught(built, tmp_path):
  _, out, _, _ = built
  copy = tmp_path / "copy"
  shutil.copytree(out, copy)
  shard = copy / "tagged_images-test.tfrecord-00000-of-00003"
  shard.write_bytes(shard.read_bytes()[:-10])
  with pytest.raises(dataset_lib.DatasetError, match="test.tfrecord-00000-of-00003"):
    dataset_lib.verify_dataset(str(copy))


def test_all_cores_give_the_same_records(built, tmp_path):
  scrape, out, _, _ = built
  parallel = tmp_path / "parallel"
  build(scrape, parallel, "--direct_running_mode=in_memory", "--direct_num_workers=2")
  other_mode = tmp_path / "multi_threading"
  build(scrape, other_mode, "--direct_running_mode=multi_threading",
        "--direct_num_workers=2")
  shards = sorted(f for f in os.listdir(out) if ".tfrecord-" in f)
  assert shards == sorted(f for f in os.listdir(parallel) if ".tfrecord-" in f)
  for other in (parallel, other_mode):
    for name in shards + [features_lib.REJECTED_FILE, features_lib.vocabulary_file(tagger.TAGS),
                          features_lib.TAG_COUNTS_FILE]:
      assert (out / name).read_bytes() == (other / name).read_bytes(), (other, name)


def test_refuses_a_non_empty_output_dir(built):
  scrape, out, _, _ = built
  before = sorted(os.listdir(out))
  with pytest.raises(FileExistsError, match="--overwrite"):
    build(scrape, out)
  assert sorted(os.listdir(out)) == before


def test_failed_overwrite_leaves_no_metadata_describing_new_shards(built, tmp_path):
  _, out, _, _ = built
  target = tmp_path / "target"
  shutil.copytree(out, target)
  (target / "README.user").write_text("mine")
  only_broken = tmp_path / "only_broken"
  only_broken.mkdir()
  (only_broken / "a.jpg").write_bytes(b"")
  (only_broken / "a.txt").write_text("x")
  with pytest.raises(Exception, match="no image was usable"):
    build(only_broken, target, "--overwrite")
  left = sorted(os.listdir(target))
  assert features_lib.DATASET_INFO_FILE not in left
  assert not [f for f in left if ".tfrecord-" in f]
  assert "README.user" in left  # Files a build never writes are kept.
  with pytest.raises(dataset_lib.DatasetError, match="not a finished alti2v dataset"):
    dataset_lib.load_builder(str(target))


def test_overwrite_replaces_a_dataset(built, tmp_path):
  scrape, out, _, _ = built
  target = tmp_path / "target"
  shutil.copytree(out, target)
  small = tmp_path / "small"
  tagger.write_corpus(str(small), 12, seed=5)
  build(small, target, "--overwrite", "--num_shards", "1")
  assert sum(dataset_lib.verify_dataset(str(target)).values()) == 12
  assert not [f for f in os.listdir(target) if f.endswith(f"-of-{NUM_SHARDS:05d}")]


@pytest.mark.parametrize("flag, value", [
    ("--val_fraction", "0.6"), ("--num_tags", "0"), ("--image_size", "0"),
    ("--dataset_name", "Bad-Name"), ("--max_tags_per_image", "0")])
def test_bad_flags_are_refused(tmp_path, flag, value):
  with pytest.raises(ValueError, match=flag):
    build(tmp_path, tmp_path / "out", "--test_fraction", "0.5", flag, value)


def test_gs_path_without_the_gcp_extra_says_what_to_install(tmp_path):
  pytest.importorskip("apache_beam")
  try:
    import apache_beam.io.gcp.gcsfilesystem  # noqa: F401  pylint: disable=unused-import
    pytest.skip("apache-beam[gcp] is installed: gs:// has a filesystem")
  except ImportError:
    pass
  with pytest.raises(ValueError, match=r"pip install -e '\.\[gcp\]'"):
    job.run(["--input_dir", "gs://bucket/scraped", "--output_dir", str(tmp_path / "o")])


def test_glob_characters_are_refused_and_overwrite_keeps_other_files(tmp_path):
  scrape = tmp_path / "in"
  tagger.write_corpus(str(scrape), 8, seed=9)
  with pytest.raises(ValueError, match=r"contains \*, \? or \["):
    build(scrape, tmp_path / "out[1]", "--num_shards", "1")
  out = tmp_path / "out"
  build(scrape, out, "--num_shards", "1")
  (out / "_tmp_backup").mkdir()
  (out / "_tmp_backup" / "mine.txt").write_text("keep")
  build(scrape, out, "--num_shards", "1", "--overwrite")
  assert sum(dataset_lib.verify_dataset(str(out)).values()) == 8
  assert (out / "_tmp_backup" / "mine.txt").read_text() == "keep"


def test_a_misspelt_flag_stops_the_job_before_it_writes(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    job.run(["--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"),
             "--imagesize", "64"])
  assert e.value.code == 2
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert "unrecognized argument --imagesize" in last and "--image_size?" in last
  assert not (tmp_path / "out").exists()


def test_nooverwrite_is_accepted_and_the_last_boolean_wins(built):
  scrape, out, _, _ = built
  with pytest.raises(FileExistsError, match="--overwrite"):
    build(scrape, out, "--nooverwrite")
  with pytest.raises(FileExistsError, match="--overwrite"):
    build(scrape, out, "--overwrite", "--nooverwrite")


def test_a_flagfile_gives_the_flags_and_stays_out_of_the_metadata(tmp_path):
  scrape = tmp_path / "in"
  tagger.write_corpus(str(scrape), 8, seed=9)
  flagfile = tmp_path / "build.flags"
  flagfile.write_text(f"# A small build.\n--input_dir={scrape}\n--num_shards=1\n"
                      "--image_size=32\n--direct_num_workers=1\n")
  out = tmp_path / "out"
  job.run(["--flagfile", str(flagfile), "--output_dir", str(out), "--image_size", "48"])
  with open(out / features_lib.METADATA_FILE, encoding="utf-8") as f:
    build_args = json.load(f)["build_args"]
  assert build_args["image_size"] == 48 and build_args["num_shards"] == 1
  assert "flagfile" not in build_args
  assert sum(dataset_lib.verify_dataset(str(out)).values()) == 8
