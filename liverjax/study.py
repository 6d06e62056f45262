"""The study in one command: baseline, augmentation and CycleGAN, both directions.

  python -m liverjax.study --workdir=study [--size=smoke|full] [--seeds=3] [--protocol=t2spir]
                           [--config.data.root=/data/CHAOS_Train_Sets] [--config.x.y=...]
  python -m liverjax.study --workdir=study_real --protocol=real
                           [--config.data.ct.root=...] [--config.data.mr.root=...]

For every seed: train the CycleGAN (when an experiment needs it), then for each
direction (CT -> MR, MR -> CT) and each experiment of `config.study.experiments`
(baseline, domain transformation, AugMix, both, CycleGAN-translated, CycleGAN +
AugMix) train a U-Net on the source domain and evaluate it on the test patients
of both domains. Each run has its own workdir `W/seed<k>/<direction>/<experiment>`
(`W/seed<k>/cyclegan` for the translator): a finished run (marked by
`study_done.json`) is not re-run, an interrupted one resumes from its
checkpoint. Then `W/report.md` and `W/report.json` gather the tables of the
study, mean ± std over test volumes (pooled over seeds), with the number of
patients and slices, and reference the figures.
"""
from __future__ import annotations

import copy
import json
import pathlib
import sys
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from liverjax import evaluate
from liverjax import report
from liverjax.data import dataset as dataset_lib

# `--size=X` selects the default config file `configs/study.py:X`; it has to be
# known when the config flag is defined, before absl parses the command line.
_SIZE_ARG = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--size=")), "smoke")
_CONFIG = config_flags.DEFINE_config_file(
    "config", f"configs/study.py:{_SIZE_ARG}",
    "Study configuration (default configs/study.py:<--size>).")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/study", "Where the runs and the report go.")
_SIZE = flags.DEFINE_enum("size", None, ["smoke", "full"],
                          "Shorthand for --config=configs/study.py:<size>.")
_SEEDS = flags.DEFINE_integer("seeds", None, "Seeds per experiment (overrides config.study.seeds).")
_PROTOCOL = flags.DEFINE_enum("protocol", None, ["all", "t2spir", "real"],
                              "MR sequences: all (T1 in/out + T2) or T2-SPIR only, as in "
                              "SIFA / GIN-IPA / SLAug; real: T2-SPIR only on the real scans "
                              "(configs/real: data.ct.root / data.mr.root default to "
                              "../shared/data) (overrides config.study.protocol).")

DIRECTION_DOMAINS = {"ct_to_mr": ("ct", "mr"), "mr_to_ct": ("mr", "ct")}
GROUPS = ("ct", "mr", "mr/t1_in", "mr/t1_out", "mr/t2")
LOSS_COLUMNS = (("dice", "Dice"), ("bce", "BCE"), ("dice_loss", "Dice loss"),
                ("jaccard_loss", "Jaccard loss"), ("total", "Total loss"))
CHAOS_COLUMNS = (("dice", "DICE", 3), ("ravd", "RAVD %", 1), ("assd", "ASSD mm", 2),
                 ("mssd", "MSSD mm", 1))
DONE = "study_done.json"


def experiment_config(config, direction: str, experiment: str, seed: int, cyclegan_dir):
  """The U-Net config of one run: `config` with source/targets, augmentation and seed set."""
  from configs import study as study_configs  # pylint: disable=g-import-not-at-top
  if experiment not in study_configs.EXPERIMENTS:
    raise ValueError(f"unknown experiment {experiment!r}; expected one of "
                     f"{list(study_configs.EXPERIMENTS)}")
  aug = study_configs.EXPERIMENTS[experiment]
  c = copy.deepcopy(config)
  c.experiment = "segmentation"
  c.seed = seed
  c.data.source = DIRECTION_DOMAINS[direction][0]
  c.data.targets = ("ct", "mr")
  c.augment.domain = bool(aug.get("domain", False))
  c.augment.augmix = bool(aug.get("augmix", False))
  c.augment.cyclegan_workdir = str(cyclegan_dir) if aug.get("cyclegan") else None
  return c


def apply_protocol(config, protocol: str):
  """MR sequences of the protocol: "all" keeps config.data.mr_sequences, "t2spir" uses T2 only;
  "real" uses T2 only and the real scans (`configs.real.set_real_sources`) where no root is set."""
  if protocol == "t2spir":
    config.data.mr_sequences = ("t2",)
  elif protocol == "real":
    from configs import real  # pylint: disable=g-import-not-at-top
    real.set_real_sources(config)
  elif protocol != "all":
    raise ValueError(f"protocol {protocol!r}: expected 'all', 't2spir' or 'real'")
  return config


def _run_once(workdir: pathlib.Path, fn, config) -> dict:
  """Runs `fn(config, workdir)` unless `workdir/study_done.json` says it finished."""
  done = workdir / DONE
  if done.exists():
    logging.info("study: %s is finished, not re-run", workdir)
    return json.loads(done.read_text())
  start = time.time()
  results = fn(config, str(workdir))
  results = json.loads(json.dumps(results, default=float))
  results["seconds"] = time.time() - start
  done.write_text(json.dumps(results))
  return results


def run_study(config, workdir) -> dict:
  """Runs (or resumes) every run of the study and writes the report.

  Args:
    config: a `configs/study.py` config (sections of configs/default.py plus `study`).
    workdir: the study folder.

  Returns:
    The report dict (also written to `workdir/report.json`).
  """
  from liverjax import train, train_cyclegan  # pylint: disable=g-import-not-at-top,multiple-imports
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  config = apply_protocol(copy.deepcopy(config), config.study.protocol)
  experiments = tuple(config.study.experiments)
  needs_cyclegan = any("cyclegan" in e for e in experiments)
  runs, cyclegan_runs = [], {}
  plan = [(s, d, e) for s in range(config.study.seeds) for d in config.study.directions
          for e in experiments]
  logging.info("study (%s, protocol %s): %d U-Net runs%s into %s", config.study.size,
               config.study.protocol, len(plan),
               f" + {config.study.seeds} CycleGAN runs" if needs_cyclegan else "", workdir)
  for i, (seed, direction, experiment) in enumerate(plan):
    seed_dir = workdir / f"seed{seed}"
    cg_dir = seed_dir / "cyclegan"
    if needs_cyclegan and seed not in cyclegan_runs:
      cg_config = copy.deepcopy(config)
      cg_config.experiment, cg_config.seed = "cyclegan", seed
      logging.info("study: CycleGAN, seed %d -> %s", seed, cg_dir)
      cyclegan_runs[seed] = _run_once(cg_dir, train_cyclegan.train_and_evaluate, cg_config)
    run_dir = seed_dir / direction / experiment
    logging.info("study: run %d/%d: %s %s seed %d -> %s", i + 1, len(plan), direction,
                 experiment, seed, run_dir)
    c = experiment_config(config, direction, experiment, seed, cg_dir)
    results = _run_once(run_dir, train.train_and_evaluate, c)
    runs.append(dict(seed=seed, direction=direction, experiment=experiment,
                     workdir=str(run_dir.relative_to(workdir)), results=results))
  previews = write_augmentation_previews(config, workdir)
  rep = build_report(config, runs, cyclegan_runs, workdir, previews)
  (workdir / "report.json").write_text(json.dumps(rep, indent=1, default=float))
  (workdir / "report.md").write_text(render_markdown(rep))
  logging.info("study: wrote %s", workdir / "report.md")
  return rep


def write_augmentation_previews(config, workdir: pathlib.Path) -> dict:
  """Preview grids of the augmentations on each direction's source slices."""
  from liverjax.augment import preview  # pylint: disable=g-import-not-at-top
  out = {}
  for direction in config.study.directions:
    source = DIRECTION_DOMAINS[direction][0]
    path = workdir / "figures" / f"augment_{source}.png"
    if not path.exists():
      c = copy.deepcopy(config)
      c.data.source = source
      preview.write_preview(c, path, rows=2)
    out[direction] = str(path.relative_to(workdir))
  return out


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
                       source=DIRECTION_DOMAINS[direction][0],
                       target=DIRECTION_DOMAINS[direction][1],
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
              data_root=dataset_lib.describe_sources(config.data),
              rows=rows, cyclegan=cyclegan, previews=previews)


def _stat(s, key, digits=3):
  return report.format_stat(s.get(key) if s else None, digits)


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
           "ASSD, MSSD: the CHAOS challenge metrics.", ""]
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
            "| direction | experiment | " + " | ".join(report.GROUP_NAMES[g] for g in GROUPS)
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
  if rep["cyclegan"]:
    lines += ["", "## CycleGAN translation quality", ""]
    from liverjax import cyclegan_report  # pylint: disable=g-import-not-at-top
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
    wd = r["workdirs"][0]
    lines.append(f"| {name[r['direction']]} | {r['experiment']} | "
                 f"[predictions]({wd}/predictions.png) | [curves]({wd}/curves.png) | "
                 f"{r['seconds']:.0f} s |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from liverjax import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup_process()
  config = _CONFIG.value
  if _SEEDS.value is not None:
    config.study.seeds = _SEEDS.value
  if _PROTOCOL.value is not None:
    config.study.protocol = _PROTOCOL.value
  rep = run_study(config, _WORKDIR.value)
  print(render_markdown(rep))


if __name__ == "__main__":
  app.run(main)
