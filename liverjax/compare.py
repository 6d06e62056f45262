"""Recipes compared over seeds: `python -m liverjax.compare --arm=NAME=RUN,RUN,... --arm=...`.

Reads the metrics.json of finished runs (`liverjax.main`, any mode that evaluates) and prints
a Markdown comparison (`liverjax.reporting.compare`): per arm the mean over test volumes of
each run, the mean ± std over runs, the source validation Dice, and the paired difference to
the first arm run by run (run k of each arm: give the seeds in the same order); then each test
volume's mean over runs. For example, three seeds of a teacher and its student:

  python -m liverjax.compare \\
    --arm="teacher=workdir/t_s0/teacher,workdir/t_s1/teacher,workdir/t_s2/teacher" \\
    --arm="student=workdir/t_s0,workdir/t_s1,workdir/t_s2" --exclude=chaos_t2_015

Flags:
  --arm       NAME=RUN,RUN,...; a RUN is a workdir, or a glob pattern whose workdirs are pooled
              into one run (the folds of a cross-validation: `workdir/mm_s0_f*`), or several
              joined by "+" (`workdir/a_s0+workdir/b_s0`: runs tested on different patients);
              repeat the flag for each arm, the first is the reference of the paired differences
  --modality  CT | MR: whose test volumes (default: the one modality every run scored)
  --metric    dice (default) | dice_raw | ravd | assd | mssd (per-volume figures of metrics.json)
  --exclude   patient ids also summarised without (a column "without ..."); repeatable
  --out       a folder for compare.md, compare.json and compare.png (per-volume figure)

Volumes that some run did not score are left out of every arm and listed under the table. A
run that cannot be read (no metrics.json yet, a volume scored twice by pooled workdirs) is
named under the table and its arm counted short ("2 of 3"); the comparison is printed and
the program then ends with exit code 1 and one line naming those runs.
"""
from __future__ import annotations

import glob
import json
import pathlib
import sys

from absl import flags

from liverjax import cli
from liverjax.reporting import compare as compare_report
from liverjax.reporting.compare import CompareError


def _define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  flags.DEFINE_multi_string("arm", None, "NAME=RUN,RUN,...: a recipe and its runs in seed "
                            "order; a RUN is a workdir, a glob, or several joined by '+', "
                            "pooled as one run (folds). The first arm is the paired reference.")
  flags.DEFINE_enum("modality", None, ["CT", "MR"], "Whose test volumes (default: the one "
                    "modality every run scored).")
  flags.DEFINE_enum("metric", "dice", list(compare_report.METRICS), "Per-volume figure.")
  flags.DEFINE_multi_string("exclude", [], "Patient ids also summarised without.")
  flags.DEFINE_string("out", None, "Folder for compare.md, compare.json, compare.png.")


def parse_arm(text: str) -> tuple[str, list[str]]:
  """"NAME=RUN,RUN" -> (NAME, [RUN, RUN]).

  Raises:
    cli.UsageError: no "=", an empty name or no run.
  """
  name, sep, runs = text.partition("=")
  parts = [r.strip() for r in runs.split(",") if r.strip()]
  if not sep or not name.strip() or not parts:
    raise cli.UsageError(f"--arm={text!r}: expected NAME=RUN,RUN,... (a RUN is a workdir "
                         "or a glob pattern of workdirs pooled as one run)")
  return name.strip(), parts


def load_arm_runs(runs: list[str]) -> list:
  """Each RUN as a `compare_report.Run`, or its `CompareError` (kept in position). A RUN is
  a workdir, a glob pattern, or several of them joined by "+", all pooled into one run."""
  loaded = []
  for pattern in runs:
    workdirs, unmatched = [], []
    for part in pattern.split("+"):
      found = sorted(pathlib.Path(p) for p in glob.glob(part) if pathlib.Path(p).is_dir()
                     ) if glob.has_magic(part) else [pathlib.Path(part)]
      workdirs += found
      unmatched += [] if found else [part]
    if unmatched:
      loaded.append(CompareError(f"{', '.join(unmatched)}: no workdir matches"))
      continue
    try:
      loaded.append(compare_report.load_run(pattern, workdirs))
    except CompareError as e:
      loaded.append(e)
  return loaded


def pick_modality(arms: list) -> str:
  """The one modality every readable run scored.

  Raises:
    CompareError: no run could be read (naming why, run by run).
    cli.UsageError: no modality shared, or more than one (then --modality must name it).
  """
  sets = [{k[0] for k in r.volumes} for r in compare_report.readable_runs(arms)]
  shared = set.intersection(*sets)
  if len(shared) != 1:
    raise cli.UsageError("name the test volumes' modality with --modality=CT or MR (the runs "
                         f"share {', '.join(sorted(shared)) or 'none'})")
  return shared.pop()


def main(argv) -> None:
  """The program: flags -> runs -> the comparison on stdout (and in --out)."""
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.arm:
    raise cli.UsageError("give at least one --arm=NAME=RUN,RUN,...")
  specs = [parse_arm(a) for a in f.arm]
  arms = [(name, load_arm_runs(runs)) for name, runs in specs]
  result = compare_report.compare(arms, f.modality or pick_modality(arms), f.metric,
                                  tuple(f.exclude))
  text = compare_report.render_markdown(result)
  sys.stdout.write(text)
  sys.stdout.flush()
  if f.out:
    out = pathlib.Path(f.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text)
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    compare_report.plot_per_volume(result, out / "compare.png")
  unread = [f"{name} run {k + 1}: {r}" for name, runs in arms for k, r in enumerate(runs)
            if isinstance(r, CompareError)]
  if unread:
    raise CompareError(f"{len(unread)} run(s) not read, their arms counted short: "
                       + " | ".join(unread))


if __name__ == "__main__":
  _define_flags()
  cli.run("liverjax.compare", main)
