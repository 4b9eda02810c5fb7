"""beam_jobs.stages and the tag parsing, transform by transform, in real Beam pipelines."""
import ast
import hashlib
import importlib
import os
import pathlib
import subprocess
import sys

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
import pytest

from alti2v import tasks
from alti2v.data import features as features_lib
from beam_jobs import build_tagged_dataset as job
from beam_jobs.stages import elements
from beam_jobs.stages import flags
from beam_jobs.stages import job as job_lib
from beam_jobs.stages import read
from beam_jobs.stages import vocabulary
from beam_jobs.stages import write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def record(path, content_hash, label=vocabulary.NamedLabels(("a",))):
  return elements.ImageRecord(path=path, content_hash=content_hash, jpeg=b"j", height=1,
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
  assert vocabulary.top_labels(counts, 3, 2) == ["c", "a", "ab"]
  assert vocabulary.top_labels(counts, 10, 2) == ["c", "a", "ab", "b"]


def test_build_vocabulary_transform():
  with TestPipeline() as p:
    names = p | beam.Create(["x", "y", "y", "z", "z", "z", "w"])
    built = names | vocabulary.BuildVocabulary(max_size=2, min_count=2)
    assert_that(built, equal_to([["z", "y"]]))


def test_drop_duplicates_keeps_first_path_and_names_it():
  with TestPipeline() as p:
    records = p | beam.Create([record("b.jpg", "h1"), record("a.jpg", "h1"),
                               record("c.jpg", "h2"), record("d.png", "h1")])
    result = records | read.DropDuplicates()
    assert_that(result.unique | "Paths" >> beam.Map(lambda r: r.path),
                equal_to(["a.jpg", "c.jpg"]), label="unique")
    assert_that(result[elements.REJECTED], equal_to([
        elements.rejection("b.jpg", features_lib.DUPLICATE, "duplicate of a.jpg"),
        elements.rejection("d.png", features_lib.DUPLICATE, "duplicate of a.jpg"),
    ]), label="rejected")


def test_discover_pairs_images_with_tag_files(tmp_path):
  for name in ["a.jpg", "a.txt", "sub/b.PNG", "sub/b.txt", "c.jpeg", "d.txt",
               "e.json", ".hidden.jpg"]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
  root = str(tmp_path)
  with TestPipeline() as p:
    found = p | read.DiscoverImages(root, ".txt")
    assert_that(found.candidates, equal_to([
        elements.Candidate(os.path.join(root, "a.jpg"), os.path.join(root, "a.txt")),
        elements.Candidate(os.path.join(root, "sub/b.PNG"), os.path.join(root, "sub/b.txt")),
        elements.Candidate(os.path.join(root, "c.jpeg"), None),
    ]), label="candidates")
    assert_that(found[elements.REJECTED] | beam.Map(lambda r: (r["path"], r["reason"])),
                equal_to([(os.path.join(root, "d.txt"), features_lib.NO_IMAGE_FILE)]),
                label="rejected")


def test_apply_vocabulary_maps_ids_and_rejects_empty():
  with TestPipeline() as p:
    pairs = p | beam.Create([
        ("train", record("a", "1", vocabulary.NamedLabels(("z", "q", "x")))),
        ("test", record("b", "2", vocabulary.NamedLabels(("q",)))),
        ("train", record("c", "3", vocabulary.NamedLabels(("z", "x"), (0.25, 0.5))))])
    names = p | "Vocab" >> beam.Create([["x", "y", "z"]])
    result = pairs | beam.ParDo(vocabulary.ApplyVocabulary(), beam.pvalue.AsSingleton(
        names)).with_outputs(elements.REJECTED, main="examples")
    assert_that(result.examples | beam.Map(lambda sr: (sr[0], sr[1].label)), equal_to([
        ("train", vocabulary.LabelIds((0, 2))),
        ("train", vocabulary.LabelIds((0, 2), (0.5, 0.25)))]), label="examples")
    assert_that(result[elements.REJECTED] | beam.Map(lambda r: (r["path"], r["reason"])),
                equal_to([("b", features_lib.NO_TAGS_IN_VOCABULARY)]), label="rejected")


def test_split_of_is_deterministic_and_follows_the_fractions():
  hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20000)]
  splits = [read.split_of(h, 0.1, 0.2) for h in hashes]
  assert splits == [read.split_of(h, 0.1, 0.2) for h in hashes]
  assert abs(splits.count("test") / 20000 - 0.2) < 0.02
  assert abs(splits.count("validation") / 20000 - 0.1) < 0.02
  assert read.split_of("0" * 64, 0.1, 0.2) == "test"
  assert read.split_of("f" * 64, 0.1, 0.2) == "train"


def test_num_shards_for():
  assert write.num_shards_for(10, 5, 0) == 1
  assert write.num_shards_for(write.TARGET_SHARD_BYTES * 3 + 1, 10**6, 0) == 4
  assert write.num_shards_for(100, 3, 8) == 3  # never more shards than examples
  assert write.num_shards_for(100, 30, 8) == 8


def test_pipeline_options_default_to_in_memory_on_all_cores():
  options = job_lib.pipeline_options([]).get_all_options()
  assert options["runner"] == "FnApiRunner"
  assert options["direct_running_mode"] == "in_memory"
  assert options["direct_num_workers"] == 0
  options = job_lib.pipeline_options(["--runner=DirectRunner"]).get_all_options()
  assert options["runner"] == "DirectRunner"


def test_beam_options_pass_and_any_other_flag_is_refused(capsys):
  parser = job.BUILDER.parser()
  ours = ["--input_dir", "in", "--output_dir", "out"]
  beam_flags = ["--runner=FnApiRunner", "--direct_num_workers=2", "--project", "X",
                "--temp_location", "gs://bucket/tmp", "--region=europe-west1",
                "--save_main_session", "--experiments", "a"]
  args, rest = flags.parse_args(parser, ours + ["--image_size", "64", *beam_flags])
  assert args.image_size == 64 and rest == beam_flags
  for argv, flag in [(["--imagesize", "64"], "--imagesize"),
                     (["--imagesize=64"], "--imagesize"),
                     (["--image", "64"], "--image"),  # No abbreviations.
                     (["--runer=DataflowRunner"], "--runer"),
                     (["stray"], "stray")]:
    with pytest.raises(SystemExit) as e:
      flags.parse_args(parser, ours + argv)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"unrecognized argument {flag}:" in last, last
  with pytest.raises(SystemExit):
    flags.parse_args(parser, ours + ["--imagesize", "64"])
  assert "did you mean --image_size?" in capsys.readouterr().err


def test_booleans_take_the_absl_spelling():
  parser = job.BUILDER.parser()
  ours = ["--input_dir", "in", "--output_dir", "out"]
  assert flags.parse_args(parser, ours)[0].overwrite is False
  assert flags.parse_args(parser, ours + ["--overwrite"])[0].overwrite is True
  assert flags.parse_args(parser, ours + ["--nooverwrite"])[0].overwrite is False
  assert flags.parse_args(parser, ours + ["--overwrite", "--nooverwrite"])[0].overwrite is False
  assert "--overwrite, --nooverwrite" in parser.format_help()


def test_a_flagfile_is_read_in_place_and_later_flags_win(tmp_path):
  parser = job.BUILDER.parser()
  inner = tmp_path / "inner.flags"
  inner.write_text("--num_tags=7\n")
  outer = tmp_path / "build.flags"
  outer.write_text("# The demo's build.\n\n--input_dir=in\n  --output_dir=out  \n"
                   "// absl's other comment\n--image_size=64\n--overwrite\n"
                   f"--flagfile={inner}\n--direct_num_workers=1\n")
  args, rest = flags.parse_args(parser, ["--image_size", "32", "--flagfile", str(outer),
                                         "--num_tags", "9"])
  assert (args.input_dir, args.output_dir, args.overwrite) == ("in", "out", True)
  assert args.image_size == 64  # The flagfile comes after --image_size 32.
  assert args.num_tags == 9  # The command line after the flagfile wins.
  assert rest == ["--direct_num_workers=1"]  # Beam's options pass through.
  assert "flagfile" not in vars(args)  # Never in metadata.json's build_args.


@pytest.mark.parametrize("content, message", [
    (None, "cannot read --flagfile"),
    ("--input_dir=in\n--imagesize=64\n", "unrecognized argument --imagesize"),
    ("--flagfile={self}\n", "reads itself"),
])
def test_a_bad_flagfile_stops_with_one_line(tmp_path, capsys, content, message):
  path = tmp_path / "bad.flags"
  if content is not None:
    path.write_text(content.format(self=path))
  with pytest.raises(SystemExit) as e:
    flags.parse_args(job.BUILDER.parser(), ["--output_dir", "o", "--flagfile", str(path)])
  assert e.value.code == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]


JOBS = {
    "build_tagged_dataset": ["--num_tags", "--min_tag_count", "--max_tags_per_image"],
    "build_folder_dataset": ["--positive_folder", "--negative_folder"],
    "build_vision_dataset": ["--labels_dir", "--num_labels", "--min_label_count"],
    "build_caption_dataset": ["--captions_json", "--min_char_count"],
    "vision_labels": ["--endpoint", "--retry_errors, --noretry_errors", "--batch_size"],
    "tag_images": ["--model_dir", "--top_k", "--threshold", "--vector, --novector",
                   "--max_batch_size", "--overwrite, --nooverwrite"],
}


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_job_lists_its_own_flags_and_flagfile(name, capsys):
  module = importlib.import_module(f"beam_jobs.{name}")
  runner = getattr(module, "BUILDER", None) or module.JOB
  with pytest.raises(SystemExit) as e:
    runner.main(["--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  assert text.startswith(f"usage: python -m beam_jobs.{name}")
  for flag in ["--input_dir", "--output_dir", "--flagfile FILE", *JOBS[name]]:
    assert flag in text, (name, flag)
  builders = [n for n in JOBS if n.startswith("build_")]
  for other in builders:  # A builder's own flags are its own.
    if other != name:
      for flag in JOBS[other]:
        if flag not in JOBS[name]:
          assert f"{flag} " not in text, (name, flag)


def test_the_log_filter_is_installed_when_a_job_runs_not_on_import():
  code = ("import logging; import beam_jobs.build_tagged_dataset; "
          "from beam_jobs.stages import job; "
          f"logger = logging.getLogger({job_lib._FN_RUNNER_LOGGER!r}); "  # pylint: disable=protected-access
          "print(len(logger.filters)); job.install_log_filter(); job.install_log_filter(); "
          "print(len(logger.filters))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=ROOT).stdout.split()
  assert out == ["0", "1"]


def _our_imports(path):
  """The beam_jobs and alti2v names a file imports (from x import y → x.y)."""
  tree = ast.parse(path.read_text(encoding="utf-8"))
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      names.update(f"{node.module}.{a.name}" for a in node.names)
    elif isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
  return {n for n in names if n.startswith(("beam_jobs", "alti2v"))}


def test_no_job_imports_another_and_the_stages_import_no_job_nor_task():
  jobs = {f"beam_jobs.{name}" for name in JOBS}
  package = pathlib.Path(ROOT, "beam_jobs")
  for path in [*package.glob("*.py"), *package.glob("stages/*.py")]:
    imported = {n for n in _our_imports(path) if any(
        n == j or n.startswith(j + ".") for j in jobs)}
    assert not imported, (path, imported)
  for path in package.glob("stages/*.py"):  # Task-free: alti2v.data only.
    tasks = {n for n in _our_imports(path) if n.startswith("alti2v.")
             and not n.startswith("alti2v.data.")}
    assert not tasks, (path, tasks)


def test_stage_modules_stay_small():
  for path in pathlib.Path(ROOT, "beam_jobs", "stages").glob("*.py"):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 300, path
