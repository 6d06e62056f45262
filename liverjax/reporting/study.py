"""The study's report: tables pooled over seeds (`report.md`, `report.json`) as data and Markdown."""
from __future__ import annotations

import pathlib

import numpy as np

from liverjax.configs import unet as unet_configs
from liverjax.data import sources as sources_lib
from liverjax.reporting import cyclegan as cyclegan_report
from liverjax.reporting import experiment as experiment_report
from liverjax.segmentation import evaluate

GROUPS = ("ct", "mr", "mr/t1_in", "mr/t1_out", "mr/t2")
LOSS_COLUMNS = (("dice", "Dice"), ("bce", "BCE"), ("dice_loss", "Dice loss"),
                ("jaccard_loss", "Jaccard loss"), ("total", "Total loss"))
CHAOS_COLUMNS = (("dice", "DICE", 3), ("ravd", "RAVD %", 1), ("assd", "ASSD mm", 2),
                 ("mssd", "MSSD mm", 1))


def _group_volumes(volumes: list[dict], group: str) -> list[dict]:
  if group == "ct":
    return [v for v in volumes if v["modality"] == "CT"]
  if group == "mr":
    return [v for v in volumes if v["modality"] == "MR"]
  seq = group.split("/")[1]
  return [v for v in volumes if v["modality"] == "MR" and v["sequence"] == seq]


def pooled_summary(run_results: list[dict]) -> dict:
  """Per test group: mean ± std over all test volumes of all seeds, counts, and the
  std over seeds of the per-seed mean Dice."""
  out = {}
  for group in GROUPS:
    per_seed = [_group_volumes(r["volumes"], group) for r in run_results]
    volumes = [v for vs in per_seed for v in vs]
    if not volumes:
      continue
    s = evaluate.summarize(volumes)  # pooled over (seed, volume) pairs
    # Counts of the test data itself (the same for every seed).
    s.update(volumes=len(per_seed[0]), slices=sum(v["slices"] for v in per_seed[0]),
             seeds=len(run_results))
    seed_means = [np.mean([v["dice"] for v in vs]) for vs in per_seed if vs]
    s["dice_seed_std"] = float(np.std(seed_means)) if len(seed_means) > 1 else None
    out[group] = s
  return out


def build_report(config, runs, cyclegan_runs, workdir: pathlib.Path, previews) -> dict:
  """Gathers the runs into the study's tables (as data)."""
  rows = []
  for direction in config.study.directions:
    for experiment in config.study.experiments:
      mine = [r for r in runs if r["direction"] == direction and r["experiment"] == experiment]
      rows.append(dict(direction=direction, experiment=experiment,
                       source=unet_configs.DIRECTIONS[direction][0],
                       target=unet_configs.DIRECTIONS[direction][1],
                       summary=pooled_summary([r["results"] for r in mine]),
                       workdirs=[r["workdir"] for r in mine],
                       seconds=float(sum(r["results"].get("seconds", 0.0) for r in mine))))
  cyclegan = {}
  for seed, res in cyclegan_runs.items():
    cg_dir = workdir / f"seed{seed}" / "cyclegan"
    samples = sorted((cg_dir / "samples").glob("step_*.png"))
    cyclegan[f"seed{seed}"] = dict(quality=res.get("quality"), step=res.get("step"),
                                   samples=str(samples[-1].relative_to(workdir))
                                   if samples else None)
  return dict(size=config.study.size, protocol=config.study.protocol,
              mr_sequences=list(config.data.mr_sequences), seeds=config.study.seeds,
              image_size=config.data.image_size, steps=config.train.steps,
              data_root=sources_lib.describe_sources(config.data),
              rows=rows, cyclegan=cyclegan, previews=previews)


def _stat(s, key, digits=3):
  return experiment_report.format_stat(s.get(key) if s else None, digits)


def render_markdown(rep: dict) -> str:
  """The study's report as Markdown."""
  name = {"ct_to_mr": "CT → MR", "mr_to_ct": "MR → CT"}
  lines = ["# liverjax study report", "",
           f"Size `{rep['size']}` ({rep['image_size']} px, {rep['steps']} U-Net steps), "
           f"protocol `{rep['protocol']}` (MR sequences: {', '.join(rep['mr_sequences'])}), "
           f"{rep['seeds']} seed(s); data: {rep['data_root']}.", "",
           "Every figure is per 3D volume (a patient's CT, or one MR sequence of a patient), "
           "mean ± std over the test volumes, pooled over seeds. Dice: hard Dice score; BCE, "
           "Dice loss, Jaccard loss, total: from the volume's summed soft statistics; RAVD, "
           "ASSD, MSSD: the CHAOS challenge metrics, on the post-processed prediction "
           "(`eval.postprocess`, the largest 3D component by default; the soft losses are "
           "the raw prediction's); rows marked (raw) score the prediction before it.", ""]
  for direction in dict.fromkeys(r["direction"] for r in rep["rows"]):
    rows = [r for r in rep["rows"] if r["direction"] == direction]
    src, tgt = rows[0]["source"], rows[0]["target"]
    lines += [f"## {name[direction]}: trained on {src.upper()}", ""]
    for domain, label in ((src, "source (same domain)"), (tgt, "target (cross domain)")):
      lines += [f"### Tested on {domain.upper()}, the {label}", "",
                "| experiment | volumes | slices | " + " | ".join(c[1] for c in LOSS_COLUMNS) + " |",
                "|---|---|---|" + "---|" * len(LOSS_COLUMNS)]
      for r in rows:
        s = r["summary"].get(domain, {})
        lines.append(f"| {r['experiment']} | {s.get('volumes', 0)} | {s.get('slices', 0)} | "
                     + " | ".join(_stat(s, k) for k, _ in LOSS_COLUMNS) + " |")
      lines.append("")
  lines += ["## Cross-domain Dice per test group", "",
            "Dice (mean ± std over volumes) on each test group; MR sequences separately, as "
            "published cross-modality results use T2-SPIR.", "",
            "| direction | experiment | " + " | ".join(experiment_report.GROUP_NAMES[g] for g in GROUPS)
            + " | Dice std over seeds (target) |", "|---|---|" + "---|" * (len(GROUPS) + 1)]
  for r in rep["rows"]:
    seed_std = r["summary"].get(r["target"], {}).get("dice_seed_std")
    lines.append(f"| {name[r['direction']]} | {r['experiment']} | "
                 + " | ".join(_stat(r["summary"].get(g), "dice") for g in GROUPS)
                 + f" | {'n/a' if seed_std is None else f'{seed_std:.3f}'} |")
  lines += ["", "## CHAOS metrics on the target domain", "",
            "| direction | experiment | patients | " + " | ".join(c[1] for c in CHAOS_COLUMNS)
            + " |", "|---|---|---|" + "---|" * len(CHAOS_COLUMNS)]
  for r in rep["rows"]:
    s = r["summary"].get(r["target"], {})
    lines.append(f"| {name[r['direction']]} | {r['experiment']} | {s.get('patients', 0)} | "
                 + " | ".join(_stat(s, k, d) for k, _, d in CHAOS_COLUMNS) + " |")
    if s.get("dice_raw"):
      lines.append(f"| {name[r['direction']]} | {r['experiment']} (raw) | "
                   f"{s.get('patients', 0)} | "
                   + " | ".join(_stat(s, f"{k}_raw", d) for k, _, d in CHAOS_COLUMNS) + " |")
  if rep["cyclegan"]:
    lines += ["", "## CycleGAN translation quality", ""]
    for seed, cg in rep["cyclegan"].items():
      if cg.get("quality"):
        lines += [f"{seed} (step {cg['step']}): W1 = 1-D Wasserstein distance between "
                  "intensity histograms of translated and real target slices (lower is "
                  "better; 'untranslated' is the gap before translation); cycle L1 = "
                  "reconstruction error.", "",
                  cyclegan_report.quality_table({"quality": cg["quality"]}), ""]
  lines += ["", "## Figures", ""]
  for direction, path in rep["previews"].items():
    lines.append(f"Augmentations on the {name[direction].split(' ')[0]} training slices: "
                 f"![augment]({path})")
  for seed, cg in rep["cyclegan"].items():
    if cg.get("samples"):
      lines.append(f"CycleGAN samples ({seed}): ![cyclegan]({cg['samples']})")
  lines.append("")
  lines += ["| direction | experiment | predictions (true vs predicted masks) | loss curves | "
            "time |", "|---|---|---|---|---|"]
  for r in rep["rows"]:
    if not r["workdirs"]:  # a partial report: no run of this row has finished
      continue
    wd = r["workdirs"][0]
    lines.append(f"| {name[r['direction']]} | {r['experiment']} | "
                 f"[predictions]({wd}/predictions.png) | [curves]({wd}/curves.png) | "
                 f"{r['seconds']:.0f} s |")
  return "\n".join(lines) + "\n"
