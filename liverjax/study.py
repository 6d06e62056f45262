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

import jax
from absl import flags
from absl import logging
from ml_collections import config_flags

from liverjax import cli
from liverjax import config_check
from liverjax import configs
from liverjax import experiment
from liverjax import runtime
from liverjax.augment import preview
from liverjax.configs import real as real_configs
from liverjax.configs import unet as unet_configs
from liverjax.reporting import study as study_report

# `--size=X` selects the default config file `configs/study.py:X`; it has to be
# known when the config flag is defined, before absl parses the command line.
_SIZE_ARG = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--size=")), "smoke")
DEFAULT_CONFIG = f"{configs.DIRECTORY / 'study.py'}:{_SIZE_ARG}"
if __name__ == "__main__":  # before the config flag is defined: it reads sys.argv then
  sys.argv = cli.prepare_argv(sys.argv, DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG,
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

DONE = "study_done.json"


def experiment_config(config, direction: str, experiment_name: str, seed: int, cyclegan_dir):
  """The U-Net config of one run: `config` with the experiment (`configs/unet.py`) and seed set."""
  c = unet_configs.apply_experiment(copy.deepcopy(config), direction, experiment_name,
                                    cyclegan_workdir=cyclegan_dir)
  c.seed = seed
  return c


def apply_protocol(config, protocol: str):
  """MR sequences of the protocol: "all" keeps config.data.mr_sequences, "t2spir" uses T2 only;
  "real" uses T2 only and the real scans (`configs.real.set_real_sources`) where no root is set."""
  if protocol == "t2spir":
    config.data.mr_sequences = ("t2",)
  elif protocol == "real":
    real_configs.set_real_sources(config)
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
  # Written whole or not at all: a study killed meanwhile re-runs (resumes) this run.
  tmp = done.with_name(DONE + ".tmp")
  tmp.write_text(json.dumps(results))
  tmp.replace(done)
  return results


def run_study(config, workdir) -> dict:
  """Runs (or resumes) every run of the study and writes the report.

  Args:
    config: a `liverjax/configs/study.py` config (sections of configs/default.py plus `study`).
    workdir: the study folder.

  Returns:
    The report dict (also written to `workdir/report.json`).

  Raises:
    experiment.WorkdirLocked: when another study holds `workdir` (each run
      also holds its own folder, `experiment.workdir_lock`).
  """
  with experiment.workdir_lock(workdir):
    return _run_study(config, pathlib.Path(workdir))


def _run_study(config, workdir: pathlib.Path) -> dict:
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
  for i, (seed, direction, name) in enumerate(plan):
    seed_dir = workdir / f"seed{seed}"
    cg_dir = seed_dir / "cyclegan"
    if needs_cyclegan and seed not in cyclegan_runs:
      cg_config = copy.deepcopy(config)
      cg_config.experiment, cg_config.seed = "cyclegan", seed
      logging.info("study: CycleGAN, seed %d -> %s", seed, cg_dir)
      cyclegan_runs[seed] = _run_once(cg_dir, experiment.run_cyclegan, cg_config)
    run_dir = seed_dir / direction / name
    logging.info("study: run %d/%d: %s %s seed %d -> %s", i + 1, len(plan), direction,
                 name, seed, run_dir)
    c = experiment_config(config, direction, name, seed, cg_dir)
    results = _run_once(run_dir, experiment.run_segmentation, c)
    runs.append(dict(seed=seed, direction=direction, experiment=name,
                     workdir=str(run_dir.relative_to(workdir)), results=results))
  previews = write_augmentation_previews(config, workdir)
  rep = study_report.build_report(config, runs, cyclegan_runs, workdir, previews)
  (workdir / "report.json").write_text(json.dumps(rep, indent=1, default=float))
  (workdir / "report.md").write_text(study_report.render_markdown(rep))
  logging.info("study: wrote %s", workdir / "report.md")
  return rep


def write_augmentation_previews(config, workdir: pathlib.Path) -> dict:
  """Preview grids of the augmentations on each direction's source slices."""
  out = {}
  for direction in config.study.directions:
    source = unet_configs.DIRECTIONS[direction][0]
    path = workdir / "figures" / f"augment_{source}.png"
    if not path.exists():
      c = copy.deepcopy(config)
      c.data.source = source
      preview.write_preview(c, path, rows=2)
    out[direction] = str(path.relative_to(workdir))
  return out


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if _SEEDS.value is not None:
    config.study.seeds = _SEEDS.value
  if _PROTOCOL.value is not None:
    config.study.protocol = _PROTOCOL.value
  config_check.check(config)
  runtime.setup_process()
  config_check.check_devices(config, jax.device_count())
  rep = run_study(config, _WORKDIR.value)
  print(study_report.render_markdown(rep))


if __name__ == "__main__":
  cli.run("liverjax.study", main, _CONFIG)
