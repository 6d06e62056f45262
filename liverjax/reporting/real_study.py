"""The real study's report (`liverjax.study --size=cpu`): tables per direction, in-domain rows,
per patient, the CycleGAN, the paper's figures beside ours; as data and as Markdown.

Every figure is per 3D volume (a patient's CT or T2-SPIR scan): mean ± std over (patient,
seed) pairs, with the patient count. Cross-modality rows are compared on the target's test
half, the patients that no row adapted to (`data.sources.halve_shared_folder`: the CycleGAN and
the self-training rows saw the other half without labels); rows that never saw a target scan
are also given over every target patient. In-domain rows are k-fold: each patient is scored by
the fold model that neither trained on it nor selected its checkpoint with it.
"""
from __future__ import annotations

import numpy as np

from liverjax.reporting import cyclegan as cyclegan_report
from liverjax.reporting import experiment as experiment_report
from liverjax.segmentation import evaluate
from liverjax.segmentation import metrics as metrics_lib

# The seed paper's target Dice per (direction, experiment): the four baselines, the domain
# transformation + AugMix and the CycleGAN-based U-Net (its CHAOS results, all MR sequences).
PAPER_DICE = {("ct_to_ct", "in-domain"): 0.924, ("mr_to_mr", "in-domain"): 0.893,
              ("ct_to_mr", "baseline"): 0.0097, ("mr_to_ct", "baseline"): 0.00015,
              ("ct_to_mr", "domain+augmix"): 0.342, ("mr_to_ct", "domain+augmix"): 0.750,
              ("ct_to_mr", "cyclegan"): 0.190, ("mr_to_ct", "cyclegan"): 0.138}
NAMES = {"ct_to_mr": "CT → MR (T2-SPIR)", "mr_to_ct": "MR (T2-SPIR) → CT",
         "ct_to_ct": "CT → CT", "mr_to_mr": "MR → MR (T2-SPIR)"}
# Rows that see target scans before they are tested (unlabelled): compared on the test half only.
SEES_TARGET = ("cyclegan", "cyclegan+augmix", "uda")
LOSS_KEYS = (("dice", "Dice"), ("bce", "BCE"), ("dice_loss", "Dice loss"),
             ("jaccard_loss", "Jaccard loss"), ("total", "Total loss"))
CHAOS_KEYS = (("dice", "DICE", 3), ("ravd", "RAVD %", 1), ("assd", "ASSD mm", 2),
              ("mssd", "MSSD mm", 1))


def _target(direction: str) -> str:
  return direction.split("_to_")[1].upper()


def _volumes(run_results: list[dict], modality: str, patients=None) -> list[dict]:
  """Per-volume records of `modality` over runs (seeds / folds), optionally of `patients`."""
  return [v for r in run_results for v in r.get("volumes", [])
          if v["modality"] == modality and (patients is None or v["patient_id"] in patients)]


def _summary(volumes: list[dict]) -> dict:
  if not volumes:
    return {}
  s = evaluate.summarize(volumes)
  s["pairs"] = len(volumes)
  return s


def build_row(direction: str, experiment: str, runs: list[dict], test_half: set) -> dict:
  """One row of the real study, as data.

  Args:
    direction: e.g. "ct_to_mr" or "ct_to_ct".
    experiment: the row's name.
    runs: the study's records of this row ({"seed", "fold", "workdir", "results"}).
    test_half: the target modality's test-half patient ids.

  Returns:
    dict: direction, experiment, paper (the paper's Dice or None), target (summary over every
    target patient: None for rows that saw target scans), target_half (over the test half),
    target_half_other (the other AdaBN setting, when evaluated), source_val (the source
    validation Dice of the selected checkpoints, for cross-modality rows), per_patient
    (patient -> mean Dice over seeds), adapt_bn (the row's own setting), workdirs, seconds.
  """
  modality = _target(direction)
  results = [r["results"] for r in runs]
  others = [r["results"]["other_adapt_bn"] for r in runs if r["results"].get("other_adapt_bn")]
  in_domain = direction.split("_to_")[0] == direction.split("_to_")[1]
  every = _volumes(results, modality)
  per_patient = {}
  for v in every:
    per_patient.setdefault(v["patient_id"], []).append(v["dice"])
  source_val = [r.get("source_val_dice") for r in results if r.get("source_val_dice") is not None]
  return dict(
      direction=direction, experiment=experiment, paper=PAPER_DICE.get((direction, experiment)),
      target=None if experiment in SEES_TARGET else _summary(every),
      target_half=_summary(_volumes(results, modality, test_half)),
      target_half_other=_summary(_volumes(others, modality, test_half)) if others else None,
      adapt_bn=results[0].get("adapt_bn", "none") if results else "none",
      source_val=metrics_lib.summarize(source_val) if source_val and not in_domain else None,
      per_patient={p: float(np.mean(d)) for p, d in sorted(per_patient.items())},
      seeds=len({r["seed"] for r in runs}), workdirs=[r["workdir"] for r in runs],
      seconds=float(sum(r["results"].get("seconds", 0.0) for r in runs)))


def build_report(config, runs: list[dict], cyclegan_runs: dict, test_halves: dict,
                 previews: dict, workdir) -> dict:
  """The real study's report as data (`report.json`).

  Args:
    config: the study config.
    runs: every U-Net run's record ({"seed", "direction", "experiment", "fold", "workdir",
      "results"}).
    cyclegan_runs: seed -> the CycleGAN's results.
    test_halves: modality ("CT" | "MR") -> the test-half patient ids.
    previews: direction -> the augmentation preview figure (relative path).
    workdir: the study folder (pathlib.Path).
  """
  keys = list(dict.fromkeys((r["direction"], r["experiment"]) for r in runs))
  rows = [build_row(d, e, [r for r in runs if (r["direction"], r["experiment"]) == (d, e)],
                    set(test_halves.get(_target(d), ()))) for d, e in keys]
  cyclegan = {}
  for seed, res in sorted(cyclegan_runs.items()):
    samples = sorted((workdir / f"seed{seed}" / "cyclegan" / "samples").glob("step_*.png"))
    cyclegan[f"seed{seed}"] = dict(quality=res.get("quality"), step=res.get("step"),
                                   task=res.get("task_score"),
                                   samples=str(samples[-1].relative_to(workdir))
                                   if samples else None)
  return dict(size=config.study.size, protocol="real", seeds=int(config.study.seeds),
              folds=int(config.study.get("in_domain_folds", 0)),
              test_halves={k: sorted(v) for k, v in test_halves.items()}, rows=rows,
              cyclegan=cyclegan, previews=previews,
              seconds=float(sum(r["seconds"] for r in rows)
                            + sum(c.get("seconds", 0.0) for c in cyclegan_runs.values())))


def _fmt(s: dict | None, key: str = "dice", digits: int = 3) -> str:
  if not s:
    return "—"
  return experiment_report.format_stat(s.get(key), digits)


def _count(s: dict | None) -> str:
  return f"{s['patients']} × {s['pairs'] // max(s['patients'], 1)}" if s else "—"


def _paper(x) -> str:
  return "—" if x is None else f"{x:.5f}".rstrip("0") if x < 0.01 else f"{x:.3f}"


def render_markdown(rep: dict) -> str:
  """The real study's report as Markdown."""
  halves = rep["test_halves"]
  lines = [
      "# liverjax: the study on real scans", "",
      f"Size `{rep['size']}`, {rep['seeds']} seeds; in-domain rows {rep['folds']}-fold; "
      f"{rep['seconds'] / 3600:.1f} h of training and evaluation in all (the runs' own "
      "clocks, 2-core CPU).", "",
      "Dice per 3D volume, mean ± std over (patient, seed) pairs; n = patients × seeds. "
      "Cross-modality rows are compared on the **test half** of the target's patients "
      f"(MR: {', '.join(halves.get('MR', []))}; CT: {', '.join(halves.get('CT', []))}); the "
      "CycleGAN and the self-training (UDA) rows saw the other half, without labels. Rows "
      "that never saw a target scan are also scored on every target patient. AdaBN: "
      "batch-norm statistics of each test scan (`eval.adapt_bn`); each row is evaluated "
      "both ways, its own setting first. Source val: the source validation Dice of the "
      "checkpoints chosen (it selects them, so it is optimistic). Post-processing: the "
      "largest 3D component (CHAOS table: raw rows before it).", ""]
  cross = [r for r in rep["rows"] if r["direction"] in ("ct_to_mr", "mr_to_ct")]
  inner = [r for r in rep["rows"] if r["direction"] in ("ct_to_ct", "mr_to_mr")]
  for direction in dict.fromkeys(r["direction"] for r in cross):
    rows = [r for r in cross if r["direction"] == direction]
    lines += [f"## {NAMES[direction]}", "",
              "| experiment | paper Dice | target Dice, test half (own AdaBN setting) | "
              "with the other AdaBN setting | n | target Dice, every patient | n | "
              "source val Dice |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
      own, other = ("off", "on") if r["adapt_bn"] == "none" else ("on", "off")
      lines.append(
          f"| {r['experiment']} (AdaBN {own}) | {_paper(r['paper'])} | "
          f"{_fmt(r['target_half'])} | {_fmt(r['target_half_other'])} (AdaBN {other}) | "
          f"{_count(r['target_half'])} | {_fmt(r['target'])} | {_count(r['target'])} | "
          f"{experiment_report.format_stat(r['source_val'], 3) if r['source_val'] else '—'} |")
    lines += ["", f"Losses on the target's test half ({_target(direction)}):", "",
              "| experiment | " + " | ".join(n for _, n in LOSS_KEYS) + " |",
              "|---|" + "---|" * len(LOSS_KEYS)]
    lines += [f"| {r['experiment']} | " + " | ".join(_fmt(r["target_half"], k)
                                                     for k, _ in LOSS_KEYS) + " |" for r in rows]
    lines += ["", f"CHAOS metrics on the target's test half ({_target(direction)}):", "",
              "| experiment | " + " | ".join(n for _, n, _ in CHAOS_KEYS) + " |",
              "|---|" + "---|" * len(CHAOS_KEYS)]
    for r in rows:
      lines.append(f"| {r['experiment']} | " + " | ".join(_fmt(r["target_half"], k, d)
                                                          for k, _, d in CHAOS_KEYS) + " |")
      lines.append(f"| {r['experiment']} (raw) | " + " | ".join(
          _fmt(r["target_half"], f"{k}_raw", d) for k, _, d in CHAOS_KEYS) + " |")
    lines.append("")
  if inner:
    lines += ["## In-domain (k-fold over the patients)", "",
              "| direction | paper Dice | Dice, every patient | n | Dice, the test half | n | "
              + " | ".join(n for _, n, _ in CHAOS_KEYS[1:]) + " |",
              "|---|---|---|---|---|---|" + "---|" * (len(CHAOS_KEYS) - 1)]
    for r in inner:
      lines.append(f"| {NAMES[r['direction']]} | {_paper(r['paper'])} | {_fmt(r['target'])} | "
                   f"{_count(r['target'])} | {_fmt(r['target_half'])} | "
                   f"{_count(r['target_half'])} | "
                   + " | ".join(_fmt(r["target"], k, d) for k, _, d in CHAOS_KEYS[1:]) + " |")
    lines += ["", "| direction | " + " | ".join(n for _, n in LOSS_KEYS) + " |",
              "|---|" + "---|" * len(LOSS_KEYS)]
    lines += [f"| {NAMES[r['direction']]} | " + " | ".join(_fmt(r["target"], k)
                                                          for k, _ in LOSS_KEYS) + " |"
              for r in inner]
    lines.append("")
  lines += _per_patient(rep["rows"], halves)
  lines += _cyclegan(rep)
  lines += ["## Figures", ""]
  for direction, path in rep["previews"].items():
    lines.append(f"Augmentations on the {direction.split('_to_')[0].upper()} training slices: "
                 f"![augment]({path})")
  lines += ["", "| direction | experiment | predictions | loss curves | time (all seeds) |",
            "|---|---|---|---|---|"]
  for r in rep["rows"]:
    wd = r["workdirs"][0]
    lines.append(f"| {NAMES[r['direction']]} | {r['experiment']} | "
                 f"[predictions]({wd}/predictions.png) | [curves]({wd}/curves.png) | "
                 f"{r['seconds']:.0f} s |")
  return "\n".join(lines) + "\n"


def _per_patient(rows: list[dict], halves: dict) -> list[str]:
  """Per target patient: the Dice of each row, mean over seeds (* = test half)."""
  lines = []
  for modality in ("MR", "CT"):
    mine = [r for r in rows if _target(r["direction"]) == modality]
    patients = sorted({p for r in mine for p in r["per_patient"]})
    if not patients:
      continue
    half = set(halves.get(modality, ()))
    lines += [f"## Per patient: {modality} targets (Dice, mean over seeds; * = test half)", "",
              "| direction | experiment | " + " | ".join(
                  f"{p.split('_')[-1]}{'*' if p in half else ''}" for p in patients) + " |",
              "|---|---|" + "---|" * len(patients)]
    for r in mine:
      lines.append(f"| {NAMES[r['direction']]} | {r['experiment']} | " + " | ".join(
          f"{r['per_patient'][p]:.2f}" if p in r["per_patient"] else "—" for p in patients)
                   + " |")
    lines.append("")
  return lines


def _cyclegan(rep: dict) -> list[str]:
  lines = []
  for seed, cg in rep["cyclegan"].items():
    if not cg.get("quality"):
      continue
    lines += [f"## CycleGAN, {seed} (step {cg['step']})", "",
              "W1: 1-D Wasserstein distance between the body-intensity histograms of translated "
              "and real target slices (lower is better; 'untranslated': the gap before "
              "translation); cycle L1: reconstruction error.", "",
              cyclegan_report.quality_table({"quality": cg["quality"]}), ""]
    if cg.get("task"):
      lines += [cyclegan_report.task_table(cg["task"]), ""]
    if cg.get("samples"):
      lines += [f"![CycleGAN samples, {seed}]({cg['samples']})", ""]
  return lines
