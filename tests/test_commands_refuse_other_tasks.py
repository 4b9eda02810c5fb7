"""Each command accepts the tasks it serves and names the command that serves the others."""
import pytest

from alti2v import tasks
from alti2v.training import run_dir


def test_predict_refuses_a_screening_filter_and_names_screen(screen_model, tmp_path):
  image = tmp_path / "x.jpg"
  image.write_bytes(b"")
  with pytest.raises(ValueError, match=r"holds a screen model; .*python -m alti2v.screen"):
    tasks.tagger.tag_lines(run_dir.load(screen_model), [str(image)])


def test_predict_takes_a_tagger(trained_tagger, tmp_path):
  _, model_dir = trained_tagger
  image = tmp_path / "x.jpg"
  image.write_bytes(b"not an image")
  lines = list(tasks.tagger.tag_lines(run_dir.load(model_dir), [str(image)]))
  assert lines[0]["path"] == str(image) and "error" in lines[0]


@pytest.mark.parametrize("field, value, message", [
    ("learning_rate", -1.0, "learning_rate must be > 0"),
    ("image_size", 13, "image_size must be >= 32"),
    ("batch_size", 0, "batch_size must be >= 1"),
    ("steps_per_epoch", -2, "steps_per_epoch must be >= 0"),
])
def test_out_of_range_training_settings_are_refused(tmp_path, field, value, message):
  from tests.conftest import tiny_config
  with pytest.raises(ValueError, match=message):
    tiny_config("data", tmp_path, **{field: value})


def test_a_task_that_does_not_fit_the_dataset_is_refused_up_front(tiny_dataset, tmp_path):
  import os
  from tests.conftest import tiny_config
  _, data = tiny_dataset  # a tagged dataset: no `label` field
  model_dir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"--task=screen reads label, which .* does not hold"):
    tasks.train(tiny_config(data, model_dir, task="screen"))
  with pytest.raises(ValueError, match=r"--batch_size=4096 is larger than the train split"):
    tasks.train(tiny_config(data, model_dir, batch_size=4096))
  assert not os.path.exists(model_dir)  # refused before anything was written


@pytest.mark.parametrize("command, flag, message", [
    ("alti2v.evaluate --data_dir=none", "--batch_size=0", "--batch_size must be >= 1"),
    ("alti2v.evaluate --data_dir=none", "--target_precision=2",
     "--target_precision must be in (0, 1]"),
    ("alti2v.caption", "--beam_size=0", "--beam_size must be >= 1"),
    ("alti2v.screen --input_dir=a --output_dir=b", "--threshold=2",
     "--threshold must be in [0, 1]"),
    ("alti2v.screen --input_dir=a --output_dir=b", "--batch_size=0",
     "--batch_size must be >= 1"),
    ("alti2v.predict", "--batch_size=0", "--batch_size must be >= 1"),
    ("alti2v.predict", "--threshold=2", "--threshold must be in [0, 1]"),
])
def test_out_of_range_command_values_are_refused_in_one_line(command, flag, message):
  import subprocess
  import sys
  done = subprocess.run(
      [sys.executable, "-m", *command.split(), "--model_dir=none", flag],
      capture_output=True, text=True, check=False)
  assert done.returncode != 0
  assert message in done.stderr and "Traceback" not in done.stderr
