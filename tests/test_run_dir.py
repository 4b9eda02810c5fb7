"""The run directory: calibration files under their names, and under the names older runs gave them."""
import json

import numpy as np
import pytest

from alti2v.training import run_dir


def test_tag_thresholds_round_trip_and_name_missing_tags(tmp_path):
  path = run_dir.write_tag_thresholds(str(tmp_path), ["a", "b"], np.array([0.3, 0.7]),
                                      calibrated_on="validation")
  assert path == str(tmp_path / run_dir.TAG_THRESHOLDS_FILE)
  assert json.loads(open(path).read()) == {"calibrated_on": "validation",
                                          "thresholds": {"a": 0.3, "b": 0.7}}
  np.testing.assert_allclose(run_dir.read_tag_thresholds(str(tmp_path), ["b", "c", "a"]),
                             [0.7, run_dir.DEFAULT_THRESHOLD, 0.3])


def test_keep_threshold_round_trip(tmp_path):
  assert run_dir.read_keep_threshold(str(tmp_path)) is None
  run_dir.write_keep_threshold(str(tmp_path), 0.25, goal="max F1")
  saved = json.loads((tmp_path / run_dir.KEEP_THRESHOLD_FILE).read_text())
  assert saved == {"threshold": 0.25, "goal": "max F1"}
  assert run_dir.read_keep_threshold(str(tmp_path)) == 0.25


def test_runs_written_before_keep_their_thresholds(tmp_path):
  """Evaluated under the old names: thresholds.json (a tagger's), threshold.json (a filter's)."""
  (tmp_path / "thresholds.json").write_text(json.dumps(
      {"calibrated_on": "validation", "thresholds": {"a": 0.4}}))
  (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.6, "goal": "max F1"}))
  np.testing.assert_allclose(run_dir.read_tag_thresholds(str(tmp_path), ["a"]), [0.4])
  assert run_dir.read_keep_threshold(str(tmp_path)) == 0.6
  # A new evaluation's file wins over the old one.
  run_dir.write_keep_threshold(str(tmp_path), 0.1)
  assert run_dir.read_keep_threshold(str(tmp_path)) == 0.1
  assert {"thresholds.json", "threshold.json"} <= set(run_dir.CALIBRATION_FILES)


def test_atomic_json_leaves_no_temporary_file(tmp_path):
  run_dir.write_json(str(tmp_path / "x.json"), {"a": 1})
  assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
  assert run_dir.read_json(str(tmp_path / "x.json")) == {"a": 1}
  assert run_dir.read_json(str(tmp_path / "missing.json")) is None


def test_a_folder_without_a_finished_run_is_refused(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no finished training run"):
    run_dir.load(str(tmp_path))
