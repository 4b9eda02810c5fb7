"""The shape of alti2v, checked on its source: imports point down, a task is one home.

commands (alti2v/*.py) → tasks/ → training/, models/, data/, metrics.py → nothing of ours.
No module imports inside a function to dodge a circle; no task imports another; nothing
but the commands imports a command (their absl flags would clash in one process).
"""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "alti2v"
COMMANDS = {"train", "evaluate", "predict", "screen", "caption", "sample_data", "dataset",
            "export", "serve", "report", "embed", "similar", "data_service"}
SHARED = ("alti2v.data", "alti2v.models", "alti2v.training", "alti2v.metrics",
          "alti2v.similarity")
# Function-local imports allowed, with the reason: optional heavy dependencies, loaded
# only when a caption is read (the `caption` extra) or a similarity index is built (the
# `similar` extra), and alti2v.input_fn's lazy attribute.
LAZY = {("alti2v.tasks.caption.katakana", "fugashi"),
        ("alti2v.tasks.caption.katakana", "unidic_lite"),
        ("alti2v.tasks.caption.katakana", "jaconv"),
        ("alti2v", "alti2v.data.input_pipeline.input_fn"),
        ("alti2v.similarity", "faiss")}


def modules():
  for path in sorted(ROOT.rglob("*.py")):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    yield name, ast.parse(path.read_text(encoding="utf-8"))


def imports(tree):
  """(module imported, whether inside a function) for every import of alti2v or not."""
  def walk(node, in_function):
    for child in ast.iter_child_nodes(node):
      inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
      if isinstance(child, ast.Import):
        for alias in child.names:
          yield alias.name, inside
      elif isinstance(child, ast.ImportFrom) and child.module:
        for alias in child.names:
          # `from alti2v import tasks` imports alti2v.tasks; `from x import y` imports x.
          if child.module.startswith("alti2v"):
            yield f"{child.module}.{alias.name}", inside
          else:
            yield child.module, inside
      yield from walk(child, inside)
  yield from walk(tree, False)


def ours(name):
  """The alti2v module an import names (alti2v.tasks.tagger.TAGS → alti2v.tasks.tagger)."""
  parts = name.split(".")
  while parts:
    candidate = ROOT.parent.joinpath(*parts)
    if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
      return ".".join(parts)
    parts.pop()
  return None


def task_of(module):
  """The task home a module belongs to (alti2v.tasks.caption.decode → caption), or None."""
  parts = module.split(".")
  if len(parts) >= 3 and parts[1] == "tasks" and parts[2] != "base":
    return parts[2]
  return None


@pytest.fixture(scope="module")
def graph():
  return {name: list(imports(tree)) for name, tree in modules()}


def test_no_function_local_imports_but_the_lazy_optional_ones(graph):
  local = {(module, imported) for module, found in graph.items()
           for imported, inside in found if inside}
  assert local <= LAZY, sorted(local - LAZY)


def test_shared_modules_import_no_task_and_no_command(graph):
  for module, found in graph.items():
    if not module.startswith(SHARED):
      continue
    for imported, _ in found:
      target = ours(imported)
      assert target is None or target.startswith(SHARED), (module, imported)


def test_no_task_imports_another_and_none_imports_a_command(graph):
  for module, found in graph.items():
    for imported, _ in found:
      target = ours(imported)
      if target is None:
        continue
      short = target.split(".", 1)[-1]
      if short in COMMANDS and module != "alti2v":
        pytest.fail(f"{module} imports the command {target}")
      mine, theirs = task_of(module), task_of(target)
      if theirs is not None and mine is not None:
        assert mine == theirs, f"the task {mine} ({module}) imports the task {theirs}"


def test_no_import_circle(graph):
  edges = {module: {ours(i) for i, inside in found if not inside} - {None, module}
           for module, found in graph.items()}

  def visit(module, path):
    assert module not in path, " → ".join([*path[path.index(module):], module])
    for target in edges.get(module, ()):
      visit(target, [*path, module])

  for module in edges:
    visit(module, [])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_lists_its_own_flags(command):
  result = subprocess.run([sys.executable, "-m", f"alti2v.{command}", "--help"],
                          capture_output=True, text=True, check=False)
  assert "Traceback" not in result.stderr
  assert f"python -m alti2v.{command}" in result.stdout
  if command != "dataset":  # It has no flag of its own.
    assert f"alti2v/{command}.py:" in result.stdout
