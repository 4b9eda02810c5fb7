"""Builders that scale with the input: rejections written by the workers as shards, counted
by combiners; every reader reads the shards through features.read_rejections."""
import json
import os

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from alti2v.data import features as features_lib
from alti2v.reporting import build as build_report
from beam_jobs import build_tagged_dataset
from beam_jobs.stages import elements
from beam_jobs.stages import job as job_lib
from beam_jobs.stages import metadata
from beam_jobs.stages import rejections
from tests import fixtures

REJECTED = [elements.rejection(f"in/{name}.jpg", reason, f"d{name}")
            for name, reason in [("g", "corrupt"), ("a", "empty_file"), ("f", "corrupt"),
                                 ("c", "no_tag_file"), ("e", "corrupt"), ("b", "empty_file"),
                                 ("d", "truncated")]]


def write(out, records, **kwargs):
  out.mkdir(exist_ok=True)
  with TestPipeline() as p:
    written = (p | beam.Create(records)
               | rejections.WriteRejections(str(out), str(out / "_tmp"), **kwargs))
    assert_that(written.reason_counts, equal_to(
        [(r, sum(x["reason"] == r for x in records)) for r in {x["reason"] for x in records}]),
        label="reasons")
    return written


def test_many_rejections_are_shards_sorted_within_and_read_back_whole(tmp_path):
  write(tmp_path / "a", REJECTED, per_shard=3)
  names = sorted(n for n in os.listdir(tmp_path / "a") if n != "_tmp")
  assert names == [f"rejected-0000{i}-of-00003.jsonl" for i in range(3)]
  for name in names:  # Each shard sorted by path, one JSON object a line.
    paths = [json.loads(l)["path"] for l in (tmp_path / "a" / name).read_text().splitlines()]
    assert paths == sorted(paths)
  back = list(features_lib.read_rejections(str(tmp_path / "a")))
  assert sorted(back, key=lambda r: r["path"]) == sorted(REJECTED, key=lambda r: r["path"])
  assert metadata.reason_counts(str(tmp_path / "a")) == {
      "corrupt": 3, "empty_file": 2, "no_tag_file": 1, "truncated": 1}
  # The same rejections in another order give byte-identical shards.
  write(tmp_path / "b", REJECTED[::-1], per_shard=3)
  for name in names:
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_few_rejections_are_one_rejected_jsonl_and_none_is_no_file(tmp_path):
  write(tmp_path / "few", REJECTED)
  lines = (tmp_path / "few" / features_lib.REJECTED_FILE).read_text().splitlines()
  assert [json.loads(l)["path"] for l in lines] == [f"in/{c}.jpg" for c in "abcdefg"]
  assert features_lib.rejection_files(str(tmp_path / "few")) == [
      str(tmp_path / "few" / features_lib.REJECTED_FILE)]
  write(tmp_path / "none", [])
  assert features_lib.rejection_files(str(tmp_path / "none")) == []
  write(tmp_path / "empty", [], write_empty=True)
  assert (tmp_path / "empty" / features_lib.REJECTED_FILE).read_text() == ""


def test_a_build_with_many_rejections_writes_shards_every_reader_reads(tmp_path, monkeypatch):
  monkeypatch.setattr(rejections, "REJECTIONS_PER_SHARD", 3)
  scrape, out = tmp_path / "scrape", tmp_path / "dataset"
  expected = fixtures.write_scrape(str(scrape), num_images=12)
  build_tagged_dataset.run([
      "--input_dir", str(scrape), "--output_dir", str(out), "--image_size", "32",
      "--max_pixels", str(fixtures.MAX_PIXELS), "--num_shards", "1",
      "--direct_running_mode=in_memory", "--direct_num_workers=2"])
  want = sorted((p, e[1]) for p, e in expected.items() if e[0] == "rejected")
  shards = features_lib.rejection_files(str(out))
  assert len(shards) == -(-len(want) // 3) > 1
  assert not os.path.exists(out / features_lib.REJECTED_FILE)
  assert not os.path.exists(out / features_lib.TMP_DIR)
  got = sorted((r["path"], r["reason"]) for r in features_lib.read_rejections(str(out)))
  assert got == want
  counts = {}
  for _, reason in want:
    counts[reason] = counts.get(reason, 0) + 1
  meta = json.loads((out / features_lib.METADATA_FILE).read_text())
  assert meta["rejected"] == dict(sorted(counts.items()))  # The combiner's counts.
  assert dict(build_report.read_rejections(str(out))[0]) == counts  # alti2v.report's reader.
  # --overwrite removes the shards with the rest of the build.
  monkeypatch.setattr(rejections, "REJECTIONS_PER_SHARD", 1000)
  build_tagged_dataset.run([
      "--input_dir", str(scrape), "--output_dir", str(out), "--image_size", "32",
      "--max_pixels", str(fixtures.MAX_PIXELS), "--num_shards", "1", "--overwrite",
      "--direct_running_mode=in_memory", "--direct_num_workers=1"])
  assert features_lib.rejection_files(str(out)) == [str(out / features_lib.REJECTED_FILE)]


def test_nothing_usable_with_sharded_rejections_names_the_shards(tmp_path, monkeypatch):
  monkeypatch.setattr(rejections, "REJECTIONS_PER_SHARD", 1)
  scrape, out = tmp_path / "scrape", tmp_path / "out"
  scrape.mkdir()
  for name in "abc":
    (scrape / f"{name}.jpg").write_bytes(b"")
  try:
    build_tagged_dataset.run(["--input_dir", str(scrape), "--output_dir", str(out),
                              "--direct_num_workers=1"])
  except job_lib.NothingUsable as e:
    message = str(e)
  assert message == ("no image was usable: every input was rejected (no_tag_file: 3); "
                     f"see {out / 'rejected-*.jsonl'}")
  assert sorted(os.listdir(out)) == [f"rejected-0000{i}-of-00003.jsonl" for i in range(3)]
