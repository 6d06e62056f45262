"""Writes constraints.txt: the installed version of every package liverjax[test,bench] needs.

  python scripts/freeze_constraints.py            # rewrites constraints.txt
  python scripts/freeze_constraints.py --out=-    # prints it

The packages are the dependency closure of `pyproject.toml`'s dependencies and the `test`
and `bench` extras, followed through the installed packages' own metadata (their markers
evaluated for this interpreter), each pinned to the version installed here. Run it where
the test suite has just passed, so that the file names versions it passes with;
`pip install -c constraints.txt -e ".[test]"` (`.ci/run`) then installs exactly those.
"""
import argparse
import datetime
import importlib.metadata
import pathlib
import platform
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = pathlib.Path(__file__).resolve().parents[1]
EXTRAS = ("test", "bench")


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
  """True when `requirement` applies here, with `extras` of its parent asked for."""
  if requirement.marker is None:
    return True
  return any(requirement.marker.evaluate({"extra": e}) for e in (extras or {""}))


def closure(requirements: list[str], extras: set[str]) -> dict[str, str]:
  """{canonical name: installed version} of `requirements` and everything they need.

  Raises:
    SystemExit: naming a required package that is not installed.
  """
  found, todo = {}, [(Requirement(r), extras) for r in requirements]
  while todo:
    requirement, parent_extras = todo.pop()
    if not _wanted(requirement, parent_extras):
      continue
    name = canonicalize_name(requirement.name)
    if name in found:
      continue
    try:
      dist = importlib.metadata.distribution(requirement.name)
    except importlib.metadata.PackageNotFoundError:
      sys.exit(f"{requirement.name}: required ({requirement}) but not installed")
    found[name] = dist.version
    todo += [(Requirement(r), set(requirement.extras)) for r in dist.requires or []]
  return found


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=str(REPO / "constraints.txt"),
                      help="The file to write, or - for stdout.")
  args = parser.parse_args()
  project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
  requirements = list(project["dependencies"])
  for extra in EXTRAS:
    requirements += project["optional-dependencies"][extra]
  pins = closure(requirements, set())
  header = (f"# The exact versions the test suite passes with, for `pip install -c "
            f"constraints.txt -e \".[test]\"`\n"
            f"# (.ci/run). Written by `python scripts/freeze_constraints.py` on "
            f"{datetime.date.today()}: Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}.\n"
            "# For this Python only: on Python >= 3.12 (the GPU hosts: jax 0.11.2, flax "
            "0.12.10) pyproject.toml's bounds apply.\n")
  text = header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
  if args.out == "-":
    sys.stdout.write(text)
  else:
    pathlib.Path(args.out).write_text(text)
    print(f"{args.out}: {len(pins)} packages")


if __name__ == "__main__":
  main()
