"""python -m alti2v.report: a dataset's and a run's report.html, its PNGs, and its numbers.

The command runs as a subprocess on real datasets and runs (tests/conftest.py fixtures); the
numbers in the page are checked against dataset_info.json, tag_counts.tsv, rejected.jsonl and
the task's own evaluation.
"""
import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from alti2v import metrics
from alti2v import tasks
from alti2v.data import dataset as dataset_lib
from alti2v.data import samples
from alti2v.reporting import build
from alti2v.reporting import html
from alti2v.reporting import panels
from alti2v.training import run_dir
from beam_jobs import build_tagged_dataset
from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_report(*args):
  env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
  return subprocess.run([sys.executable, "-m", "alti2v.report", *args], capture_output=True,
                        text=True, env=env, cwd=ROOT, check=False)


def check_page(output_dir):
  """The page's text; every file it references exists and every PNG is a real picture."""
  page = open(os.path.join(output_dir, "report.html"), encoding="utf-8").read()
  sources = re.findall(r'src="([^"]+)"', page)
  for src in sources:
    if not src.startswith("data:image/"):
      assert "/" not in src and os.path.exists(os.path.join(output_dir, src)), src
  pngs = [f for f in os.listdir(output_dir) if f.endswith(".png")]
  assert sorted(pngs) == sorted(s for s in sources if not s.startswith("data:"))
  for name in pngs:
    path = os.path.join(output_dir, name)
    assert os.path.getsize(path) > 3000, name
    with Image.open(path) as image:
      assert image.format == "PNG" and image.width >= 300 and image.height >= 200, name
      assert np.asarray(image.convert("L")).std() > 5, f"{name} is blank"
  return page


def cell_numbers(page, label):
  """The numbers in the table row that starts with label."""
  row = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", page)
  assert row, label
  return [int(n.replace(",", "")) for n in re.findall(r'class="n">([\d,]+)<', row.group(1))]


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory):
  """A tiny tagged dataset with a tag that is HTML ("<b>"), one with "$", and rejections."""
  root = tmp_path_factory.mktemp("report_data")
  images, data = root / "images", root / "dataset"
  paths = fixtures.write_corpus(str(images), 24, seed=7)
  for index, path in enumerate(paths[:12]):  # Half the images: among the top train tags.
    with open(os.path.splitext(path)[0] + ".txt", "w", encoding="utf-8") as f:
      f.write("\n".join([*samples.draw_sample(index, 7).tags, "<b>", "$money$"]) + "\n")
  (images / "broken").mkdir()
  (images / "broken" / "a.jpg").write_bytes(b"not an image")
  (images / "broken" / "a.txt").write_text("circle", encoding="utf-8")
  (images / "broken" / "b.jpg").write_bytes(b"")
  (images / "broken" / "b.txt").write_text("circle", encoding="utf-8")
  (images / "broken" / "orphan.txt").write_text("circle", encoding="utf-8")
  build_tagged_dataset.run([
      "--input_dir", str(images), "--output_dir", str(data), "--image_size", "32",
      "--num_shards", "1", "--val_fraction", "0.2", "--test_fraction", "0.2",
      "--direct_running_mode=in_memory", "--direct_num_workers=1"])
  return str(data)


def test_dataset_report_holds_the_datasets_numbers(odd_dataset, tmp_path):
  out = tmp_path / "report"
  result = run_report(odd_dataset, "--output", str(out), "--num_samples", "6")
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == f"wrote {out}/report.html"
  page = check_page(str(out))
  assert len(os.listdir(out)) == 6  # report.html and 5 figures
  info = dataset_lib.load_builder(odd_dataset).info
  for split, split_info in info.splits.items():
    assert cell_numbers(page, split)[0] == split_info.num_examples
  # The top train tag of tag_counts.tsv, and the HTML tag shown as text, never as markup.
  rows = [line.rstrip("\n").split("\t")
          for line in open(os.path.join(odd_dataset, "tag_counts.tsv"), encoding="utf-8")][1:]
  top = max(rows, key=lambda r: (int(r[2]), -int(r[1])))
  assert f"<td>{top[0]}</td><td class=\"n\">{int(top[2])}</td>" in page
  assert any(r[0] == "<b>" for r in rows)
  assert "&lt;b&gt;" in page and "<b>" not in page and "$money$" in page
  # Rejections: every reason with its count from rejected.jsonl, and its paths.
  rejected = [json.loads(line) for line in open(os.path.join(odd_dataset, "rejected.jsonl"),
                                                  encoding="utf-8")]
  counts = collections.Counter(r["reason"] for r in rejected)
  assert len(counts) >= 3
  for reason, n in counts.items():
    assert cell_numbers(page, reason) == [n]
  for r in rejected:
    assert html.escape(r["path"]) in page
  assert page.count('<div class="cell"><img src="data:image/jpeg;base64,') == 6


def test_a_rerun_into_the_same_folder_leaves_no_old_figures(odd_dataset, tmp_path):
  out = tmp_path / "report"
  out.mkdir()
  (out / "07_from_an_older_report.png").write_bytes(b"old")
  (out / "notes.png").write_bytes(b"the user's own")
  build.write_report(odd_dataset, build.ReportOptions(output_dir=str(out), num_samples=0))
  assert not (out / "07_from_an_older_report.png").exists() and (out / "notes.png").exists()
  assert "random training images" not in (out / "report.html").read_text(encoding="utf-8")


def test_tagger_run_report(trained_tagger, tmp_path):
  data_dir, model_dir = trained_tagger
  tasks.run_evaluation(model_dir, data_dir, tasks.EvalOptions(split="test"))
  result = run_report(model_dir, "--output", str(tmp_path / "r"))
  assert result.returncode == 0, result.stderr[-2000:]
  page = check_page(str(tmp_path / "r"))
  pngs = sorted(os.listdir(tmp_path / "r"))
  for wanted in ("training_curve_loss", "training_curve_pr_auc", "ap_per_tag",
                 "pr_curves_of_the_6_commonest_tags", "per_tag_thresholds",
                 "top_tags_per_split"):
    assert any(wanted in name for name in pngs), (wanted, pngs)
  # The weakest tags named: the same AP the task computes on the test split.
  run = run_dir.load(model_dir)
  labels, scores = tasks.get_task("tagger").predict_split(run, data_dir, "test")
  _, aps = metrics.mean_average_precision(labels, scores)
  weakest = int(np.nanargmin(aps))
  assert f"lowest: {html.escape(run.vocabulary[weakest])} ({aps[weakest]:.3f})" in page
  assert f"Dataset {data_dir}" in page  # The run's dataset report follows.


def test_screen_run_report_shows_the_confusion_matrix_at_the_keep_threshold(
    screen_dataset, screen_model, tmp_path):
  _, data_dir = screen_dataset
  _, result = tasks.run_evaluation(screen_model, data_dir, tasks.EvalOptions(split="test"))
  out = run_report(screen_model, "--output", str(tmp_path / "r"), "--num_samples", "4")
  assert out.returncode == 0, out.stderr[-2000:]
  page = check_page(str(tmp_path / "r"))
  c = result["confusion"]
  assert cell_numbers(page, "positive (should keep)") == [c["true_positive"],
                                                          c["false_negative"]]
  assert cell_numbers(page, "negative (should drop)") == [c["false_positive"],
                                                          c["true_negative"]]
  assert f"keep threshold {result['threshold']:.3f}" not in page  # Drawn in the PNG only.
  assert any("keep_scores" in f for f in os.listdir(tmp_path / "r"))
  assert "no_class_folder" in page  # The image outside the class folders.


def test_refuses_a_folder_that_is_neither_a_run_nor_a_dataset(tmp_path):
  with pytest.raises(dataset_lib.DatasetError) as e:
    build.write_report(str(tmp_path))
  assert str(e.value) == (
      f"{tmp_path} is neither a finished training run (no model_info.json) nor a "
      "finished dataset (no dataset_info.json)")
  assert not (tmp_path / "report").exists()


def test_escape_shows_markup_and_non_utf8_names_as_text():
  assert html.escape('<b>"x" & y</b>') == "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;"
  assert html.escape(os.fsdecode(b"bad\xff.jpg")) == "bad\\udcff.jpg"


def test_every_panel_kind_draws_and_the_tasks_describe_their_records(tmp_path):
  """The figures of the tasks without a run here (distill's scatter, a captioner's table)."""
  rng = np.random.default_rng(0)
  report = html.Report("all panels", str(tmp_path))
  for panel in [
      panels.Ranked("ranked", [f"t{i}" for i in range(50)], rng.random(50), "AP"),
      panels.Curves("curves", "x", "y", [("$a$", np.arange(5), np.arange(5) ** 2)],
                    marks={"m": 2}, level_marks={"l": 3}, log_y=True),
      panels.Histogram("hist", "score", {"p": rng.random(30), "n": rng.random(30)},
                       weights={"p": np.full(30, 2)}, marks={"t": 0.5}),
      panels.Bars("bars", "images", {"train": [("a", 3), ("<b>", 1)], "test": [("a", 1)]}),
      panels.Scatter("scatter", "teacher", "student", rng.random(100), rng.random(100)),
      panels.Matrix("matrix", ["p", "n"], ["kept", "dropped"], np.array([[5, 1], [2, 7]])),
      panels.ImageTable("captions", ["model", "references"],
                        [(np.zeros((8, 8, 3), np.uint8), ["アカイ マル", "<i>x</i>"])])]:
    report.add(panel)
  page = open(report.write(), encoding="utf-8").read()
  assert len(report.pngs) == 6 and check_page(str(tmp_path)) == page
  assert "アカイ マル" in page and "&lt;i&gt;x&lt;/i&gt;" in page
  assert 'data:image/png;base64,' in page and "lowest: t" in page
  names = ["red", "circle", "art"]
  assert tasks.get_task("distill").describe_example(
      {"labels": np.array([0, 2]), "label_scores": np.array([0.5, 0.9])}, names) == (
          "art 0.90, red 0.50")
  assert tasks.get_task("tagger").describe_example({"tags": np.array([1, 0])}, names) == (
      "circle red")
  assert tasks.get_task("screen").describe_example({"label": np.int64(1)},
                                                   ["negative", "positive"]) == "positive"
  assert tasks.get_task("caption_ar").describe_example(
      {"captions": np.array(["アカイ マル".encode(), b""])}, []) == "アカイ マル"
