"""The console scripts that `pip install` puts on the PATH (`pyproject.toml` [project.scripts]).

  liverjax-train    python -m liverjax.main         one experiment from a config
  liverjax-predict  python -m liverjax.predict      a trained U-Net on new scans
  liverjax-study    python -m liverjax.study        every experiment, seed and direction
  liverjax-verify   python -m liverjax.data.verify  check a CHAOS folder
  liverjax-compare  python -m liverjax.compare      finished runs compared over seeds

Each runs its program exactly as `python -m <module>` does: the module is run as `__main__`
(`runpy`, with `sys.argv[0]` its file and the rest of the command line unchanged), so the same
flags, errors and exit codes. The programs are absl programs that define their flags when
imported, so two of them cannot share a process: none is imported here, only the one named
is run. `--version` prints `liverjax <version>` and exits 0 before the program is imported.
"""
from __future__ import annotations

import runpy
import sys

import liverjax

# Console script -> the module it runs.
PROGRAMS = {
    "liverjax-train": "liverjax.main",
    "liverjax-predict": "liverjax.predict",
    "liverjax-study": "liverjax.study",
    "liverjax-verify": "liverjax.data.verify",
    "liverjax-compare": "liverjax.compare",
}


def version_line() -> str:
  """"liverjax <version>", what `--version` prints."""
  return f"liverjax {liverjax.__version__}"


def run_program(module: str, argv: list[str] | None = None) -> None:
  """Runs `module` as `python -m module` would, with the command line `argv` (default
  `sys.argv`; `argv[0]` is replaced by the module's file, as `python -m` does).

  With `--version` anywhere in `argv[1:]`, prints `version_line()` instead and returns.
  The program's own `sys.exit` (absl's exit codes, `liverjax.cli`) ends the process.
  """
  argv = list(sys.argv if argv is None else argv)
  if "--version" in argv[1:]:
    print(version_line())
    return
  sys.argv = argv
  runpy.run_module(module, run_name="__main__", alter_sys=True)


def train() -> None:
  """`liverjax-train`: `python -m liverjax.main`."""
  run_program(PROGRAMS["liverjax-train"])


def predict() -> None:
  """`liverjax-predict`: `python -m liverjax.predict`."""
  run_program(PROGRAMS["liverjax-predict"])


def study() -> None:
  """`liverjax-study`: `python -m liverjax.study`."""
  run_program(PROGRAMS["liverjax-study"])


def verify() -> None:
  """`liverjax-verify`: `python -m liverjax.data.verify`."""
  run_program(PROGRAMS["liverjax-verify"])


def compare() -> None:
  """`liverjax-compare`: `python -m liverjax.compare`."""
  run_program(PROGRAMS["liverjax-compare"])
