"""Tests for liverjax/console.py and the packaging that declares its scripts: each console
script runs its program as `python -m` does, and prints the version.

The scripts as pip installs them (a wheel's bin/) are run in
`tests/test_main.py::test_an_installed_copy_runs_outside_the_repository`; here each
entry-point function runs in a fresh interpreter of this checkout, whatever is installed.
"""
import ast
import os
import re
import subprocess
import sys
import tomllib

import pytest

import liverjax
from liverjax import console
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _run_script(name: str, *args: str, cwd=REPO) -> subprocess.CompletedProcess:
  """Console script `name` as pip's wrapper calls it: its function, argv[0] the script name."""
  function = PYPROJECT["project"]["scripts"][name].split(":")[1]
  code = (f"import sys; from liverjax import console; sys.argv = {[name, *args]!r}; "
          f"sys.exit(console.{function}())")
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                        timeout=300, check=False,
                        env=dict(os.environ, PYTHONPATH=str(REPO)))  # this checkout's liverjax


def test_the_packaging_declares_the_five_scripts_and_reads_the_one_version():
  scripts = PYPROJECT["project"]["scripts"]
  assert set(scripts) == set(console.PROGRAMS) == {
      "liverjax-train", "liverjax-predict", "liverjax-study", "liverjax-verify",
      "liverjax-compare"}
  for name, target in scripts.items():
    module, _, function = target.partition(":")
    assert module == "liverjax.console" and callable(getattr(console, function)), name
  assert "version" in PYPROJECT["project"]["dynamic"]
  assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
      "attr": "liverjax.__version__"}
  assert re.fullmatch(r"\d+\.\d+\.\d+", liverjax.__version__)
  assert not (REPO / "setup.py").exists()  # one packaging file


def test_the_bounds_keep_flax_0_12_8_away_from_jax_0_11():
  """The known break: flax <= 0.12.8 with jax >= 0.11 (Python >= 3.12 there)."""
  deps = PYPROJECT["project"]["dependencies"]
  flax = {d.split(";")[1].strip(): d.split(";")[0] for d in deps if d.startswith("flax")}
  assert flax == {"python_version < '3.12'": "flax>=0.12.8,<0.13",
                  "python_version >= '3.12'": "flax>=0.12.10,<0.13"}
  assert "jax>=0.10,<0.12" in deps


@pytest.mark.parametrize("name", sorted(console.PROGRAMS))
def test_each_script_prints_the_version(name, tmp_path):
  run = _run_script(name, "--version", cwd=tmp_path)
  assert (run.returncode, run.stdout) == (0, f"liverjax {liverjax.__version__}\n"), run.stderr
  assert "absl" not in run.stderr  # answered before the program is imported


@pytest.mark.parametrize("name", sorted(console.PROGRAMS))
def test_each_script_runs_its_program(name, tmp_path):
  """--help: absl prints the docstring of the program run as __main__, then its flags."""
  run = _run_script(name, "--help", cwd=tmp_path)
  assert "Traceback" not in run.stderr, run.stderr[-3000:]
  assert run.returncode == 1  # absl exits 1 after --help, as with `python -m`
  module = console.PROGRAMS[name]
  path = REPO.joinpath(*module.split("."))
  path = path / "__main__.py" if path.is_dir() else path.with_suffix(".py")
  docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
  assert run.stdout.startswith(docstring.splitlines()[0]), (module, run.stdout[:300])
  flag = {"liverjax.main": "--config", "liverjax.predict": "--input",
          "liverjax.study": "--protocol", "liverjax.data.verify": "--root",
          "liverjax.compare": "--arm"}[module]
  assert flag in run.stdout.split("flags:")[-1], module  # defined: the program ran


def test_a_scripts_errors_and_exit_codes_are_its_programs(tmp_path):
  run = _run_script("liverjax-train", "--config=mri_to_ct", "--config.train.steps=0",
                    cwd=tmp_path)
  assert run.returncode == 2
  assert run.stderr == "liverjax.main: config.train.steps=0: expected an integer >= 1\n"
