"""Recipes compared over seeds, from finished runs' metrics.json (`python -m liverjax.compare`).

An *arm* is one recipe: a name and its runs, one per seed. A *run* is one workdir, or several
pooled (the folds of an in-domain cross-validation, each fold testing other patients). The
comparison is on one modality's test volumes that every run scored, by one per-volume metric
of metrics.json ("dice" by default): per run the mean over those volumes, per arm the mean
and standard deviation over its runs, per volume the mean over runs, and each arm against the
first arm paired by run position (run k of each arm; the seeds, read from the checkpoints'
configs, are shown so that a mismatch is seen). Nothing is dropped in silence: volumes that
some run lacks and runs that could not be read are listed under the table.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from liverjax import checkpointing
from liverjax import progress
from liverjax.reporting import experiment as experiment_report

# Per-volume figures of metrics.json that can be compared; higher is better for the Dice
# figures only (RAVD is signed in metrics.json's volumes: its absolute value is compared).
METRICS = {"dice": "Dice", "dice_raw": "Dice (raw)", "ravd": "|RAVD| %", "assd": "ASSD mm",
           "mssd": "MSSD mm"}
HIGHER_IS_BETTER = ("dice", "dice_raw")


class CompareError(ValueError):
  """A run that cannot be compared (no metrics.json, a volume scored twice in a pooled run,
  no volume of the modality); the message names the workdir."""


@dataclasses.dataclass
class Run:
  """One seed of an arm.

  Attributes:
    name: how the run was given (a workdir, or a pattern of pooled workdirs).
    workdirs: the workdirs pooled into the run (one unless folds).
    volumes: per test volume (modality, patient_id, sequence), its metrics.json record.
    source_val: the mean `source_val_dice` of the workdirs (None where none recorded it).
    seed: the config seed saved with the evaluated checkpoint (None if not readable, or
      "mixed" when pooled workdirs differ).
  """
  name: str
  workdirs: list[pathlib.Path]
  volumes: dict[tuple[str, str, str], dict]
  source_val: float | None
  seed: int | str | None


def _seed(metrics: dict) -> int | None:
  checkpoint = metrics.get("checkpoint")
  config = checkpointing.read_saved_json(checkpoint, "config") if checkpoint else None
  return config.get("seed") if config else None


def load_run(name: str, workdirs: list[pathlib.Path]) -> Run:
  """Reads the metrics.json of `workdirs` (pooled) into a `Run`.

  Raises:
    CompareError: a workdir without metrics.json (not yet evaluated) or with an unreadable
      one, or a test volume that two pooled workdirs both scored.
  """
  volumes, source_vals, seeds = {}, [], set()
  for workdir in workdirs:
    path = pathlib.Path(workdir) / experiment_report.METRICS_FILE
    if not path.is_file():
      raise CompareError(f"{workdir}: no {path.name} (the run has not been evaluated)")
    try:
      metrics = json.loads(path.read_text())
      records = [((v["modality"], str(v["patient_id"]), v.get("sequence") or ""), v)
                 for v in metrics["volumes"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise CompareError(f"{path}: not a liverjax metrics file ({type(e).__name__}: {e})") from e
    for key, v in records:
      if key in volumes:
        raise CompareError(f"{workdir}: {progress.scan_label(*key)} is also scored by "
                           f"another workdir of the run {name!r}; pooled workdirs must test "
                           "different patients (the folds of one cross-validation)")
      volumes[key] = v
    if metrics.get("source_val_dice") is not None:
      source_vals.append(float(metrics["source_val_dice"]))
    seeds.add(_seed(metrics))
  seed = seeds.pop() if len(seeds) == 1 else "mixed"
  return Run(name, [pathlib.Path(w) for w in workdirs], volumes,
             float(np.mean(source_vals)) if source_vals else None, seed)


def readable_runs(arms: list[tuple[str, list[Run | CompareError]]]) -> list[Run]:
  """The runs of `arms` that could be read, in order.

  Raises:
    CompareError: none could, naming why run by run.
  """
  readable = [r for _, runs in arms for r in runs if isinstance(r, Run)]
  if not readable:
    raise CompareError("no run could be read: " + "; ".join(
        str(r) for _, runs in arms for r in runs))
  return readable


def _volume_order(key: tuple[str, str, str]) -> tuple[str, str]:
  """(modality, patient_id, sequence) -> the order of the tables: patient, then sequence."""
  return key[1], key[2]


def _digits(metric: str) -> int:
  """Decimals the tables print: 3 for Dice, 1 for RAVD % and distances in mm."""
  return 3 if metric.startswith("dice") else 1


def _value(volume: dict, metric: str) -> float:
  x = float(volume[metric]) if volume.get(metric) is not None else math.nan
  return abs(x) if metric.startswith("ravd") else x


def compare(arms: list[tuple[str, list[Run | CompareError]]], modality: str,
            metric: str = "dice", exclude: tuple[str, ...] = ()) -> dict:
  """The comparison of `arms` on `modality`'s volumes that every readable run scored.

  Args:
    arms: (arm name, its runs in seed order); a run that could not be read is given as
      its `CompareError` and keeps its position (paired differences skip it).
    modality: "CT" or "MR".
    metric: a key of `METRICS`.
    exclude: patient ids also summarised without (e.g. a known outlier); they stay in the
      main figures.

  A volume without the metric (or an infinite distance: an empty prediction's ASSD) makes
  its runs' means NaN or inf, shown as such: it is not averaged away.

  Returns:
    A dict: `volumes` (labels, in order), `left_out` (label of each volume some run lacks ->
    the [arm name, run number from 1] of the runs that lack it),
    `arms` (per arm: `runs` per-run records with `mean` over volumes, `seed`, `source_val`
    or `error`; `mean`, `std` over runs; `without`; `per_volume` means over runs;
    `paired` differences against the first arm per position, `ahead` (pairs better at the
    printed precision: a +0.000 is not better) and `n_paired`),
    and the arguments.

  Raises:
    CompareError: no run could be read, or no volume of `modality` is scored by all.
  """
  if metric not in METRICS:
    raise CompareError(f"metric {metric!r}: one of {', '.join(METRICS)}")
  readable = readable_runs(arms)
  keys = [set(k for k in r.volumes if k[0] == modality) for r in readable]
  common = set.intersection(*keys)
  if not common:
    raise CompareError(f"no {modality} test volume is scored by every run (runs with none: "
                       + ", ".join(r.name for r, k in zip(readable, keys) if not k) + ")")
  volumes = sorted(common, key=_volume_order)
  left_out = {progress.scan_label(*k): [[name, i + 1] for name, runs in arms
                                        for i, r in enumerate(runs)
                                        if isinstance(r, Run) and k not in r.volumes]
              for k in sorted(set.union(*keys) - common, key=_volume_order)}
  kept = [k for k in volumes if k[1] not in exclude]
  out_arms = []
  for name, runs in arms:
    records = []
    for r in runs:
      if isinstance(r, CompareError):
        records.append({"error": str(r)})
        continue
      values = [_value(r.volumes[k], metric) for k in volumes]
      records.append({"name": r.name, "seed": r.seed, "source_val": r.source_val,
                      "values": values, "mean": float(np.mean(values)),
                      "without": float(np.mean([_value(r.volumes[k], metric)
                                                for k in kept])) if kept else math.nan})
    good = [x for x in records if "mean" in x]
    means = [x["mean"] for x in good]
    vals = [x["source_val"] for x in good if x["source_val"] is not None]
    out_arms.append({
        "name": name, "runs": records,
        "mean": float(np.mean(means)) if means else math.nan,
        "std": float(np.std(means)) if means and np.all(np.isfinite(means)) else math.nan,
        "without": float(np.mean([x["without"] for x in good])) if good else math.nan,
        "source_val": float(np.mean(vals)) if vals else None,
        "per_volume": (np.nanmean([x["values"] for x in good], axis=0).tolist()
                       if good else [math.nan] * len(volumes))})
  first = out_arms[0]["runs"]
  sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0
  for arm in out_arms:
    pairs = [(b["mean"] - a["mean"]) for a, b in zip(first, arm["runs"])
             if "mean" in a and "mean" in b]
    arm["paired"] = pairs
    arm["ahead"] = sum(round(sign * d, _digits(metric)) > 0 for d in pairs)  # as printed
    arm["n_paired"] = len(pairs)
  unmatched = [p for p in exclude if all(k[1] != p for k in volumes)]
  return {"modality": modality, "metric": metric, "exclude": list(exclude),
          "exclude_unmatched": unmatched,
          "volumes": [progress.scan_label(*k) for k in volumes], "left_out": left_out,
          "arms": out_arms}


def _f(x, digits=3, signed=False) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "—"
  return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def render_markdown(result: dict) -> str:
  """The comparison as Markdown: the arms' table, the per-volume table, and notes naming
  the runs that could not be read and the volumes left out."""
  metric, arms = result["metric"], result["arms"]
  digits = _digits(metric)
  excl = ", ".join(result["exclude"])
  lines = [f"{result['modality']} {METRICS[metric]}, mean over the "
           f"{len(result['volumes'])} test volumes every run scored; arms paired with "
           f"**{arms[0]['name']}** by run position.", ""]
  head = ["arm", "runs (seeds)", "per run", "mean ± std over runs (ddof 0)"]
  head += [f"without {excl}"] if excl else []
  head += ["source val Dice", f"paired vs {arms[0]['name']}: mean (per run)", "better in"]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for i, arm in enumerate(arms):
    ok = [r for r in arm["runs"] if "mean" in r]
    seeds = ", ".join("?" if r.get("seed") is None else str(r["seed"]) for r in ok)
    count = f"{len(ok)}" if len(ok) == len(arm["runs"]) else f"{len(ok)} of {len(arm['runs'])}"
    cells = [arm["name"], f"{count} ({seeds})",
             " / ".join(_f(r.get("mean"), digits) for r in arm["runs"]),
             f"{_f(arm['mean'], digits)} ± {_f(arm['std'], digits)}"]
    cells += [_f(arm["without"], digits)] if excl else []
    cells.append(_f(arm["source_val"]))
    if i == 0 or not arm["n_paired"]:
      cells += ["—", "—"]
    else:
      per = " / ".join(_f(d, digits, signed=True) for d in arm["paired"])
      cells += [f"{_f(float(np.mean(arm['paired'])), digits, signed=True)} ({per})",
                f"{arm['ahead']} of {arm['n_paired']}"]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "| volume | " + " | ".join(a["name"] for a in arms) + " |",
            "|" + "---|" * (len(arms) + 1)]
  for j, label in enumerate(result["volumes"]):
    lines.append(f"| {label} | " + " | ".join(_f(a["per_volume"][j], digits)
                                               for a in arms) + " |")
  notes = [f"- {a['name']}, run {k + 1}: not read ({r['error']})"
           for a in arms for k, r in enumerate(a["runs"]) if "error" in r]
  groups = {}  # the runs that lack a volume -> the volumes they lack
  for label, runs in result["left_out"].items():
    groups.setdefault(tuple(map(tuple, runs)), []).append(label)
  for runs, labels in groups.items():
    by_arm = {}
    for name, k in runs:
      by_arm.setdefault(name, []).append(str(k))
    where = "; ".join(f"{name} run {', '.join(ks)}" for name, ks in by_arm.items())
    notes.append(f"- left out, not scored by every run: {', '.join(labels)} (not in {where})")
  notes += [f"- --exclude {p}: no test volume of that patient" for p in
            result["exclude_unmatched"]]
  mismatched = sorted({k + 1 for a in arms for k, r in enumerate(a["runs"])
                       if k < len(arms[0]["runs"]) and r.get("seed") is not None
                       and arms[0]["runs"][k].get("seed") not in (None, r["seed"])})
  if mismatched:
    notes.append(f"- run positions {', '.join(map(str, mismatched))} pair different seeds")
  return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def plot_per_volume(result: dict, path) -> None:
  """A PNG: per test volume, each arm's runs as dots and their mean as a bar."""
  plt = experiment_report.pyplot()
  arms, labels = result["arms"], result["volumes"]
  width = 0.8 / len(arms)
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) * max(1, len(arms) / 2)), 4))
  x = np.arange(len(labels))
  for i, arm in enumerate(arms):
    pos = x - 0.4 + width * (i + 0.5)
    bars = ax.bar(pos, arm["per_volume"], width * 0.9, alpha=0.45,
                  label=f"{arm['name']} ({_f(arm['mean'])})")
    for r in arm["runs"]:
      if "values" in r:
        ax.plot(pos, r["values"], "o", ms=3, color=bars.patches[0].get_facecolor()[:3])
  ax.set_xticks(x)
  ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel(METRICS[result["metric"]])
  if result["metric"].startswith("dice"):
    ax.set_ylim(0, 1)
  ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=min(len(arms), 4),
            frameon=False)
  ax.grid(alpha=0.3, axis="y")
  ax.set_title(f"{result['modality']}: bars the mean over runs, dots the runs", fontsize=9)
  experiment_report.save_figure(plt, fig, path)
