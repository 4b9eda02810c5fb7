"""What a job's Dataflow workers need besides setup.py's install_requires, checked at launch.

--setup_file ships setup.py's install_requires, never its extras: a job that needs an extra
names it (Job.worker_extras); beam_jobs/requirements/<extra>.txt (the extra's lines,
tests/test_shipping.py) or a worker image built from beam_jobs/Dockerfile carries it there.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

REQUIREMENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "requirements")
DOCKERFILE = "beam_jobs/Dockerfile"


def requirements_file(extra: str) -> str:
  """The requirements file of one of setup.py's extras (beam_jobs/requirements/<extra>.txt)."""
  return os.path.join(REQUIREMENTS_DIR, f"{extra}.txt")


def read_requirements(path: str) -> list[str]:
  """The requirement lines of a requirements file (comments and blank lines dropped)."""
  with open(path, encoding="utf-8") as f:
    lines = (line.split("#", 1)[0].strip() for line in f)
    return [line for line in lines if line]


def requirement_name(requirement: str) -> str:
  """The normalised project name of a requirement ("unidic_lite==1.0.8" → "unidic-lite")."""
  name = re.split(r"[<>=!~;\[\s@]", requirement.strip(), maxsplit=1)[0]
  return re.sub(r"[-_.]+", "-", name).lower()


def image_versions(image: str) -> tuple[Optional[tuple[int, int]], Optional[str]]:
  """(Python, Beam) versions an SDK image's name states, None where it states none.

  apache/beam_python3.11_sdk:2.77.0 → ((3, 11), "2.77.0"); our images are tagged
  …/alti2v-worker:py3.11-beam2.77.0 (BUILD.md) so that this can be read.
  """
  python = re.search(r"(?:python|py)(\d)\.?(\d{1,2})(?!\d)", image)
  beam_version = re.search(r"(?:beam|_sdk:)-?(\d+\.\d+\.\d+)", image)
  return ((int(python.group(1)), int(python.group(2))) if python else None,
          beam_version.group(1) if beam_version else None)


def _is_dataflow(runner: Optional[str]) -> bool:
  return bool(runner) and runner.lower().removesuffix("runner").endswith("dataflow")


def check_options(beam_args: Sequence[str], extras: Sequence[str],
                  python: tuple[int, int] = sys.version_info[:2]) -> None:
  """Refuses Dataflow options whose workers could not run this job (before anything runs).

  Args:
    beam_args: the job's Beam options.
    extras: setup.py extras the job's workers need (Job.worker_extras).
    python: the launcher's Python (pickled functions load only in the same minor version).

  Raises:
    ValueError: one line that says what to pass instead.
  """
  options = PipelineOptions(list(beam_args)).get_all_options(drop_default=True)
  if not _is_dataflow(options.get("runner")):
    return
  image = options.get("sdk_container_image")
  if image:
    image_python, image_beam = image_versions(image)
    if image_python is not None and image_python != tuple(python):
      raise ValueError(
          f"--sdk_container_image {image} runs Python {image_python[0]}.{image_python[1]}, "
          f"this launcher Python {python[0]}.{python[1]}: the workers cannot load what it "
          "pickles; launch with the image's Python, or build the image FROM "
          f"apache/beam_python{python[0]}.{python[1]}_sdk ({DOCKERFILE})")
    if image_beam is not None and image_beam != beam.__version__:
      raise ValueError(f"--sdk_container_image {image} has Beam {image_beam}, this launcher "
                       f"Beam {beam.__version__}: use the same version on both")
    return
  if not options.get("setup_file") and not options.get("extra_packages"):
    raise ValueError(
        "the Dataflow workers would not have alti2v: pass --setup_file ./setup.py (from "
        f"the repository root) or --sdk_container_image (an image built from {DOCKERFILE})")
  needed = {requirement_name(r): extra for extra in extras
            for r in read_requirements(requirements_file(extra))}
  given_file = options.get("requirements_file")
  given = ({requirement_name(r) for r in read_requirements(given_file)}
           if given_file and os.path.isfile(given_file) else set())
  missing = sorted(set(needed) - given)
  if missing:
    files = " ".join(sorted({f"beam_jobs/requirements/{needed[m]}.txt" for m in missing}))
    raise ValueError(
        f"the Dataflow workers of this job need {', '.join(missing)} (setup.py's "
        f"{'/'.join(sorted(set(needed.values())))} extra, which --setup_file does not ship): "
        f"add --requirements_file {files}, or pass --sdk_container_image (an image built "
        f"from {DOCKERFILE})")


def dataflow_help(extras: Sequence[str]) -> str:
  """The --help line that says what a job's Dataflow workers need to be given."""
  if extras:
    given = " ".join(f"--requirements_file beam_jobs/requirements/{e}.txt" for e in extras)
    needs = f"--setup_file ./setup.py {given} (setup.py's {'/'.join(extras)} extra)"
  else:
    needs = "--setup_file ./setup.py (its install_requires are all its workers need)"
  return (f"On Dataflow, from the repository root: {needs}, or --sdk_container_image with "
          f"an image built from {DOCKERFILE} (BUILD.md, Google Cloud Dataflow).")
