"""beam_jobs.stages and the tag parsing, transform by transform, in real Beam pipelines."""
import hashlib
import os

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
import pytest

from beam_jobs import build_tagged_dataset as job
from alti2v import imaging
from beam_jobs import stages


def record(path, content_hash, label=("a",)):
  return stages.ImageRecord(path=path, content_hash=content_hash, jpeg=b"j", height=1,
                            width=1, label=label)


@pytest.mark.parametrize("text, tags", [
    ("long_hair blue_eyes  smile\n", ("long_hair", "blue_eyes", "smile")),
    ("Long Hair, blue eyes,smile", ("long_hair", "blue_eyes", "smile")),
    ("long hair\nBlue  Eyes\n\nlong hair\n", ("long_hair", "blue_eyes")),
    ("  \n , ", ()),
])
def test_parse_tags(text, tags):
  assert job.parse_tags(text) == tags


def test_top_labels_breaks_ties_by_name_and_drops_rare():
  counts = [("b", 3), ("a", 3), ("c", 5), ("d", 1), ("ab", 3)]
  assert stages.top_labels(counts, 3, 2) == ["c", "a", "ab"]
  assert stages.top_labels(counts, 10, 2) == ["c", "a", "ab", "b"]


def test_build_vocabulary_transform():
  with TestPipeline() as p:
    names = p | beam.Create(["x", "y", "y", "z", "z", "z", "w"])
    vocabulary = names | stages.BuildVocabulary(max_size=2, min_count=2)
    assert_that(vocabulary, equal_to([["z", "y"]]))


def test_drop_duplicates_keeps_first_path_and_names_it():
  with TestPipeline() as p:
    records = p | beam.Create([record("b.jpg", "h1"), record("a.jpg", "h1"),
                               record("c.jpg", "h2"), record("d.png", "h1")])
    result = records | stages.DropDuplicates()
    assert_that(result.unique | "Paths" >> beam.Map(lambda r: r.path),
                equal_to(["a.jpg", "c.jpg"]), label="unique")
    assert_that(result[stages.REJECTED], equal_to([
        stages.rejection("b.jpg", imaging.DUPLICATE, "duplicate of a.jpg"),
        stages.rejection("d.png", imaging.DUPLICATE, "duplicate of a.jpg"),
    ]), label="rejected")


def test_discover_pairs_images_with_tag_files(tmp_path):
  for name in ["a.jpg", "a.txt", "sub/b.PNG", "sub/b.txt", "c.jpeg", "d.txt",
               "e.json", ".hidden.jpg"]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
  root = str(tmp_path)
  with TestPipeline() as p:
    found = p | stages.DiscoverImages(root, ".txt")
    assert_that(found.candidates, equal_to([
        stages.Candidate(os.path.join(root, "a.jpg"), os.path.join(root, "a.txt")),
        stages.Candidate(os.path.join(root, "sub/b.PNG"), os.path.join(root, "sub/b.txt")),
        stages.Candidate(os.path.join(root, "c.jpeg"), None),
    ]), label="candidates")
    assert_that(found[stages.REJECTED] | beam.Map(lambda r: (r["path"], r["reason"])),
                equal_to([(os.path.join(root, "d.txt"), imaging.NO_IMAGE_FILE)]),
                label="rejected")


def test_apply_vocabulary_maps_ids_and_rejects_empty():
  with TestPipeline() as p:
    pairs = p | beam.Create([("train", record("a", "1", ("z", "q", "x"))),
                             ("test", record("b", "2", ("q",)))])
    vocabulary = p | "Vocab" >> beam.Create([["x", "y", "z"]])
    result = pairs | beam.ParDo(stages.ApplyVocabulary(), beam.pvalue.AsSingleton(
        vocabulary)).with_outputs(stages.REJECTED, main="examples")
    assert_that(result.examples | beam.Map(lambda sr: (sr[0], sr[1].label)),
                equal_to([("train", (0, 2))]), label="examples")
    assert_that(result[stages.REJECTED] | beam.Map(lambda r: (r["path"], r["reason"])),
                equal_to([("b", imaging.NO_TAGS_IN_VOCABULARY)]), label="rejected")


def test_split_of_is_deterministic_and_follows_the_fractions():
  hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20000)]
  splits = [stages.split_of(h, 0.1, 0.2) for h in hashes]
  assert splits == [stages.split_of(h, 0.1, 0.2) for h in hashes]
  assert abs(splits.count("test") / 20000 - 0.2) < 0.02
  assert abs(splits.count("validation") / 20000 - 0.1) < 0.02
  assert stages.split_of("0" * 64, 0.1, 0.2) == "test"
  assert stages.split_of("f" * 64, 0.1, 0.2) == "train"


def test_num_shards_for():
  assert stages.num_shards_for(10, 5, 0) == 1
  assert stages.num_shards_for(stages.TARGET_SHARD_BYTES * 3 + 1, 10**6, 0) == 4
  assert stages.num_shards_for(100, 3, 8) == 3  # never more shards than examples
  assert stages.num_shards_for(100, 30, 8) == 8


def test_pipeline_options_default_to_in_memory_on_all_cores():
  options = stages.pipeline_options([]).get_all_options()
  assert options["runner"] == "FnApiRunner"
  assert options["direct_running_mode"] == "in_memory"
  assert options["direct_num_workers"] == 0
  options = stages.pipeline_options(["--runner=DirectRunner"]).get_all_options()
  assert options["runner"] == "DirectRunner"


def test_beam_options_pass_and_any_other_flag_is_refused(capsys):
  parser = job.build_parser()
  ours = ["--input_dir", "in", "--output_dir", "out"]
  beam_flags = ["--runner=FnApiRunner", "--direct_num_workers=2", "--project", "X",
                "--temp_location", "gs://bucket/tmp", "--region=europe-west1",
                "--save_main_session", "--experiments", "a"]
  args, rest = stages.parse_args(parser, ours + ["--image_size", "64", *beam_flags])
  assert args.image_size == 64 and rest == beam_flags
  for argv, flag in [(["--imagesize", "64"], "--imagesize"),
                     (["--imagesize=64"], "--imagesize"),
                     (["--image", "64"], "--image"),  # No abbreviations.
                     (["--runer=DataflowRunner"], "--runer"),
                     (["stray"], "stray")]:
    with pytest.raises(SystemExit) as e:
      stages.parse_args(parser, ours + argv)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"unrecognized argument {flag}:" in last, last
  with pytest.raises(SystemExit):
    stages.parse_args(parser, ours + ["--imagesize", "64"])
  assert "did you mean --image_size?" in capsys.readouterr().err


def test_booleans_take_the_absl_spelling():
  parser = job.build_parser()
  ours = ["--input_dir", "in", "--output_dir", "out"]
  assert stages.parse_args(parser, ours)[0].overwrite is False
  assert stages.parse_args(parser, ours + ["--overwrite"])[0].overwrite is True
  assert stages.parse_args(parser, ours + ["--nooverwrite"])[0].overwrite is False
  assert stages.parse_args(parser, ours + ["--overwrite", "--nooverwrite"])[0].overwrite is False
  assert "--overwrite, --nooverwrite" in parser.format_help()
