"""What a job ships to its Dataflow workers is all they need: requirements files equal
setup.py's extras, the launch check refuses options whose workers would fail, and each job's
worker code runs in a fresh virtual environment holding only the package and its file.

The fresh environment (test_fresh_venv_*, marked `shipping`) costs ~60 s and ~3 GB of
temporary disk, and needs the package index (as `pip install -e .` does); it is removed
at the end. `pytest -m "not shipping"` leaves it out.
"""
import os
import re
import shutil
import subprocess
import sys
from unittest import mock

import apache_beam as beam
import pytest
import setuptools

from beam_jobs import build_caption_dataset
from beam_jobs import worker_check
from beam_jobs.stages import workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.version_info[:2]
CAPTION_REQUIREMENTS = "beam_jobs/requirements/caption.txt"


def setup_kwargs():
  """What setup.py hands to setuptools.setup (its extras, pins), without installing."""
  with mock.patch.object(setuptools, "setup") as setup:
    source = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    exec(compile(source, "setup.py", "exec"), {"__name__": "__main__"})  # pylint: disable=exec-used
  return setup.call_args.kwargs


def test_each_requirements_file_is_its_setup_py_extra():
  extras = setup_kwargs()["extras_require"]
  files = sorted(os.listdir(workers.REQUIREMENTS_DIR))
  assert files == ["caption.txt"]
  for name in files:
    assert workers.read_requirements(os.path.join(workers.REQUIREMENTS_DIR, name)) == (
        extras[name.removesuffix(".txt")])
  for module in worker_check.JOBS:  # Every extra a job names has its file.
    job = __import__(f"beam_jobs.{module}", fromlist=["_"])
    for extra in (getattr(job, "BUILDER", None) or job.JOB).worker_extras:
      assert os.path.isfile(workers.requirements_file(extra))
  assert build_caption_dataset.BUILDER.worker_extras == ("caption",)


def test_dockerfile_is_the_launchers_python_and_beam():
  text = open(os.path.join(ROOT, "beam_jobs", "Dockerfile"), encoding="utf-8").read()
  assert re.search(r"^ARG BEAM_VERSION=(\S+)$", text, re.M).group(1) == beam.__version__
  python = re.search(r"^ARG PYTHON_VERSION=(\d+)\.(\d+)$", text, re.M).groups()
  assert tuple(map(int, python)) == PYTHON
  assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in text
  assert 'pip install --no-cache-dir ".[${EXTRAS}]"' in text
  assert "caption" in re.search(r"^ARG EXTRAS=(\S+)$", text, re.M).group(1)


def dataflow(*extra):
  return ["--runner=DataflowRunner", "--project=p", "--region=us-central1", *extra]


def test_check_options_refuses_workers_that_would_fail():
  here = f"{PYTHON[0]}.{PYTHON[1]}"
  workers.check_options([], ["caption"])  # Not Dataflow: nothing to check.
  workers.check_options(dataflow("--setup_file=./setup.py"), [])
  workers.check_options(dataflow("--setup_file=./setup.py",
                                 f"--requirements_file={CAPTION_REQUIREMENTS}"), ["caption"])
  workers.check_options(dataflow(f"--sdk_container_image=r/alti2v-worker:py{here}-beam"
                                 f"{beam.__version__}"), ["caption"])
  with pytest.raises(ValueError, match=r"need fugashi, jaconv, unidic-lite \(setup.py's "
                     r"caption extra, which --setup_file does not ship\): add "
                     rf"--requirements_file {CAPTION_REQUIREMENTS}"):
    workers.check_options(dataflow("--setup_file=./setup.py"), ["caption"])
  with pytest.raises(ValueError, match="would not have alti2v: pass --setup_file"):
    workers.check_options(dataflow(), [])
  other = f"{PYTHON[0]}.{PYTHON[1] + 1}"
  with pytest.raises(ValueError, match=rf"runs Python {other}, this launcher Python {here}"):
    workers.check_options(dataflow(f"--sdk_container_image=apache/beam_python{other}_sdk:"
                                   f"{beam.__version__}"), [])
  with pytest.raises(ValueError, match=r"has Beam 2\.1\.0, this launcher Beam"):
    workers.check_options(dataflow("--sdk_container_image=r/w:py"
                                   f"{here}-beam2.1.0"), [])
  assert workers.image_versions("apache/beam_python3.11_sdk:2.77.0") == ((3, 11), "2.77.0")
  assert workers.image_versions("r/alti2v-worker:py311-beam2.77.0") == ((3, 11), "2.77.0")
  assert workers.image_versions("r/alti2v-worker:latest") == (None, None)


def test_the_caption_builder_refuses_dataflow_without_its_requirements(tmp_path):
  (tmp_path / "in").mkdir()
  proc = subprocess.run(
      [sys.executable, "-m", "beam_jobs.build_caption_dataset", "--input_dir",
       str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"), "--captions_json",
       "c.json", *dataflow("--setup_file=./setup.py", "--temp_location=gs://b/t")],
      cwd=ROOT, capture_output=True, text=True, check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "error: the Dataflow workers of this job need fugashi, jaconv, unidic-lite")
  assert not (tmp_path / "out").exists()
  help_text = subprocess.run(
      [sys.executable, "-m", "beam_jobs.build_caption_dataset", "--help"], cwd=ROOT,
      capture_output=True, text=True, check=True).stdout
  assert f"--requirements_file {CAPTION_REQUIREMENTS}" in " ".join(help_text.split())


def run_checks(python, *jobs):
  # cwd outside the repository: the venv's installed package, not the sources, is imported.
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  return subprocess.run(
      [python, "-m", "beam_jobs.worker_check", *(["--jobs", ",".join(jobs)] if jobs else [])],
      cwd="/", env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True,
      check=False)


@pytest.mark.shipping
def test_fresh_venv_with_what_each_job_ships_runs_its_worker_code(tmp_path):
  src, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv"
  src.mkdir()  # Built from a copy, so that no build/ or egg-info lands in the checkout.
  shutil.copy(os.path.join(ROOT, "setup.py"), src)
  for package in ("alti2v", "beam_jobs"):
    shutil.copytree(os.path.join(ROOT, package), src / package,
                    ignore=shutil.ignore_patterns("__pycache__"))
  pip = [sys.executable, "-m", "pip"]
  subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                  str(wheels), f"{src}/"], check=True, capture_output=True)
  (wheel,) = wheels.glob("alti2v-*.whl")
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = str(venv / "bin" / "python")
  try:
    # What --setup_file ships: the package and its install_requires, nothing else.
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-compile", str(wheel)],
                   check=True, capture_output=True)
    proc = run_checks(python)
    status = {line.split(" ")[1].rstrip(":"): line.split(" ")[0]
              for line in proc.stdout.splitlines() if line.startswith(("ok ", "error "))}
    assert status == {**{job: "ok" for job in worker_check.JOBS},
                      "build_caption_dataset": "error"}, proc.stdout + proc.stderr
    # Whichever of the caption extra's modules is imported first is the one missing.
    assert re.search(r"^error build_caption_dataset: (ModuleNotFoundError: No module named "
                     r"'(jaconv|fugashi|unidic_lite)'|ImportError: katakana conversion needs "
                     r"MeCab)", proc.stdout, re.M), proc.stdout
    # ... plus the caption builder's requirements file: now its workers have MeCab.
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-compile", "-r",
                    os.path.join(ROOT, CAPTION_REQUIREMENTS)], check=True, capture_output=True)
    proc = run_checks(python, "build_caption_dataset")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == (
        "ok build_caption_dataset: ('ネコ ガ ニヒキ スワッ テ イル',)")
  finally:
    shutil.rmtree(venv, ignore_errors=True)  # ~3 GB: not left for pytest's tmp retention.
