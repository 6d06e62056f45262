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
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any

import jax
from absl import flags
from absl import logging
from ml_collections import config_flags

from liverjax import cli
from liverjax import config_check
from liverjax import configs
from liverjax import experiment
from liverjax import progress
from liverjax import runtime
from liverjax.augment import preview
from liverjax.configs import real as real_configs
from liverjax.configs import unet as unet_configs
from liverjax.data import sources as sources_lib
from liverjax.reporting import real_study as real_report
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
_SIZE = flags.DEFINE_enum("size", None, ["smoke", "full", "cpu"],
                          "Shorthand for --config=configs/study.py:<size>.")
_SEEDS = flags.DEFINE_integer("seeds", None, "Seeds per experiment (overrides config.study.seeds).")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Write the report from the runs already finished (each missing run is "
    "listed at its top) and train nothing; safe while the study itself runs.")
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


@dataclasses.dataclass
class Run:
  """One run of the study: where it goes and its config.

  Attributes:
    kind: "cyclegan" or "unet".
    seed: the seed.
    direction: "ct_to_mr", "mr_to_ct" (cross-modality rows), "ct_to_ct", "mr_to_mr" (the
      in-domain rows, k-fold) or "" (the CycleGAN).
    experiment: the row's name ("baseline", ..., "in-domain", "cyclegan").
    fold: the in-domain fold, or None.
    workdir: relative to the study's folder.
    config: the run's full config.
  """
  kind: str
  seed: int
  direction: str
  experiment: str
  fold: int | None
  workdir: str
  config: Any


# `data` fields a study passes on to the configs of its real-protocol rows (where the scans
# are, where the cache is, which input pipeline).
_STUDY_DATA_FIELDS = ("root", "cache_dir", "use_tf", "shuffle_buffer")


def _real_row(config, source: str, experiment_name: str, seed: int, cyclegan_dir):
  """The config of a real-protocol row: `configs/real` `get_study_row_config`, with the
  study's data folders and seed, and the seed's CycleGAN where the row translates."""
  c = real_configs.get_study_row_config(source, experiment_name)
  for field in _STUDY_DATA_FIELDS:
    c.data[field] = config.data[field]
  for domain in ("ct", "mr"):
    c.data[domain].root = config.data[domain].root
    if c.data[domain].get("adapt_root"):  # the UDA row: the target folder, halved
      c.data[domain].adapt_root = config.data[domain].root
  if "cyclegan" in experiment_name or c.translate.cyclegan_workdir:
    c.translate.cyclegan_workdir = str(cyclegan_dir)
  c.seed = seed
  return c


def cyclegan_config(config, seed: int):
  """The study's CycleGAN of one seed. Real protocol: trained on the halves of both modalities
  that no cross-modality row is tested on (`data.<m>.adapt_root` = the folders themselves,
  `data.sources.halve_shared_folder`), so that a row tested on the other halves never saw its
  test scans, even unlabelled."""
  c = copy.deepcopy(config)
  c.experiment, c.seed = "cyclegan", seed
  if config.study.protocol == "real":
    c.data.field_of_view = real_configs.BEST_FIELD_OF_VIEW
    for domain in ("ct", "mr"):
      c.data[domain].adapt_root = c.data[domain].root
  return c


def plan_runs(config, workdir: pathlib.Path) -> list[Run]:
  """Every run of the study (into `workdir`), in the order they run.

  Per seed: the in-domain rows (real protocol, `study.in_domain_folds` > 0: k-fold over each
  modality's patients, `data.folds`), the CycleGAN (when a row needs it), then for each
  direction every experiment of `study.experiments` (real protocol: the rows of
  `configs.real.get_study_row_config`; otherwise `configs/unet.py` experiments). The
  CycleGAN's task score (`cyclegan.task_unet_*`) uses the seed's first in-domain folds.
  """
  runs = []
  real = config.study.protocol == "real"
  experiments = tuple(config.study.experiments)
  needs_cyclegan = any("cyclegan" in e for e in experiments) or (
      real and "uda" in experiments and any(
          real_configs.get_uda_config(unet_configs.DIRECTIONS[d][0]).translate.cyclegan_workdir
          for d in config.study.directions))
  for seed in range(config.study.seeds):
    cg_dir = f"seed{seed}/cyclegan"
    cg_config = cyclegan_config(config, seed)
    if real and int(config.study.get("in_domain_folds", 0)):
      k = int(config.study.in_domain_folds)
      for source in ("ct", "mr"):
        for fold in range(k):
          c = _real_row(config, source, "baseline", seed, None)
          c.data.targets = (source,)
          c.data.folds, c.data.fold = k, fold
          runs.append(Run("unet", seed, f"{source}_to_{source}", "in-domain", fold,
                          f"seed{seed}/{source}_to_{source}/fold{fold}", c))
        cg_config.cyclegan[f"task_unet_{source}"] = str(
            workdir / f"seed{seed}/{source}_to_{source}/fold0")
    if needs_cyclegan:
      runs.append(Run("cyclegan", seed, "", "cyclegan", None, cg_dir, cg_config))
    for direction in config.study.directions:
      for name in experiments:
        source = unet_configs.DIRECTIONS[direction][0]
        cg = workdir / cg_dir
        c = (_real_row(config, source, name, seed, cg) if real
             else experiment_config(config, direction, name, seed, cg))
        if real and name == "uda" and "best" in experiments and not c.translate.cyclegan_workdir:
          # The UDA row's teacher is the best config: the seed's "best" row, trained already.
          c.self_training.teacher = str(workdir / f"seed{seed}/{direction}/best")
        runs.append(Run("unet", seed, direction, name, None, f"seed{seed}/{direction}/{name}", c))
  return runs


def _run_once(workdir: pathlib.Path, fn, config, other_eval=None) -> dict:
  """Runs `fn(config, workdir)` unless `workdir/study_done.json` says it finished.

  `other_eval`: a config to evaluate the trained run with once more (the other AdaBN
  setting); its results are kept under "other_adapt_bn".
  """
  done = workdir / DONE
  if done.exists():
    logging.info("study: %s is finished, not re-run", workdir)
    return json.loads(done.read_text())
  start = time.time()
  results = fn(config, str(workdir))
  if other_eval is not None:
    results["other_adapt_bn"] = experiment.evaluate_results(other_eval, workdir)
  results = json.loads(json.dumps(results, default=float))
  results["seconds"] = time.time() - start
  # Written whole or not at all: a study killed meanwhile re-runs (resumes) this run.
  tmp = done.with_name(DONE + ".tmp")
  tmp.write_text(json.dumps(results))
  tmp.replace(done)
  return results


def _other_adapt_bn(c):
  """`c` evaluated with the other batch-norm setting (AdaBN on <-> off), or None where it
  does not apply (a run tested on its own modality only, or without batch norm)."""
  if c.model.norm != "batch" or all(t == c.data.source for t in c.data.targets):
    return None
  other = copy.deepcopy(c)
  key = ("self_training", "student_adapt_bn") if int(c.self_training.rounds) else (
      "eval", "adapt_bn")
  other[key[0]][key[1]] = "none" if c[key[0]][key[1]] == "volume" else "volume"
  return other


def run_study(config, workdir, report_only: bool = False) -> dict:
  """Runs (or resumes) every run of the study and writes the report.

  Args:
    config: a `liverjax/configs/study.py` config (sections of configs/default.py plus `study`).
    workdir: the study folder.
    report_only: train nothing; report the finished runs (marked by `study_done.json`) and
      list the others as missing at the top of the report. Takes no lock.

  Returns:
    The report dict (also written to `workdir/report.json`).

  Raises:
    experiment.WorkdirLocked: when another study holds `workdir` (each run
      also holds its own folder, `experiment.workdir_lock`).
  """
  if report_only:
    return _run_study(config, pathlib.Path(workdir), report_only=True)
  with experiment.workdir_lock(workdir):
    return _run_study(config, pathlib.Path(workdir))


def _run_study(config, workdir: pathlib.Path, report_only: bool = False) -> dict:
  workdir.mkdir(parents=True, exist_ok=True)
  config = apply_protocol(copy.deepcopy(config), config.study.protocol)
  plan = plan_runs(config, workdir)
  logging.info("study (%s, protocol %s): %d runs (%d CycleGAN) into %s", config.study.size,
               config.study.protocol, len(plan), sum(r.kind == "cyclegan" for r in plan),
               workdir)
  runs, cyclegan_runs, missing = [], {}, []
  spent, ran, ran_seconds = 0.0, 0, 0.0
  for i, run in enumerate(plan):
    started = time.time()
    run_dir = workdir / run.workdir
    if report_only and not (run_dir / DONE).exists():
      missing.append(run.workdir)
      continue
    if not report_only:
      logging.info("study: run %d/%d: %s %s%s seed %d -> %s", i + 1, len(plan),
                   run.direction or "CycleGAN", run.experiment,
                   "" if run.fold is None else f" fold {run.fold}", run.seed, run_dir)
    if run.kind == "cyclegan":
      cyclegan_runs[run.seed] = _run_once(run_dir, experiment.run_cyclegan, run.config)
      results = cyclegan_runs[run.seed]
    else:
      results = _run_once(run_dir, experiment.run_segmentation, run.config,
                          _other_adapt_bn(run.config))
      runs.append(dict(seed=run.seed, direction=run.direction, experiment=run.experiment,
                       fold=run.fold, workdir=run.workdir, results=results))
    if report_only:  # every run reaching here was read back by _run_once
      continue
    spent += results.get("seconds", 0.0)
    if time.time() - started > 1.0:  # ran here, not a finished run read back
      ran, ran_seconds = ran + 1, ran_seconds + time.time() - started
    left = len(plan) - i - 1
    rate = ran_seconds / ran if ran else spent / (i + 1)
    logging.info("study: %d/%d runs done (%.0f s recorded), %d left, ETA %s", i + 1,
                 len(plan), spent, left, progress.format_seconds(rate * left))
  previews = write_augmentation_previews(config, workdir)
  if config.study.protocol == "real":
    rep = real_report.build_report(config, runs, cyclegan_runs, test_halves(config),
                                   previews, workdir)
    markdown = real_report.render_markdown(rep)
  else:
    rep = study_report.build_report(config, runs, cyclegan_runs, workdir, previews)
    markdown = study_report.render_markdown(rep)
  if missing:
    rep["missing"] = missing
    markdown = _missing_note(missing, len(plan)) + markdown
  (workdir / "report.json").write_text(json.dumps(rep, indent=1, default=float))
  (workdir / "report.md").write_text(markdown)
  logging.info("study: wrote %s%s", workdir / "report.md",
               f" ({len(missing)} of {len(plan)} runs missing)" if missing else "")
  return rep


def _missing_note(missing: list[str], planned: int) -> str:
  """The partial report's first lines: which of the planned runs have not finished."""
  return (f"> **Partial report: {len(missing)} of {planned} runs have not finished** and are "
          f"left out: {', '.join(missing)}.\n\n")


def test_halves(config) -> dict:
  """modality ("CT" | "MR") -> the patient ids of its test half: each data folder halved by
  patient (`data.sources.halve_shared_folder`), the half that the CycleGAN and the self-training
  rows never see. Read from the folders' listings (no scan is opened)."""
  c = copy.deepcopy(config.data)
  for domain in ("ct", "mr"):
    c[domain].adapt_root = c[domain].root
  out = {}
  for source in sources_lib.resolve_sources(c):
    if source.adapt or source.modality is None:
      continue
    excluded = {pid for _, pid in source.exclude}
    out.setdefault(source.modality, set()).update(
        pid for pid in sources_lib.source_patients(source) if pid not in excluded)
  return out


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
  runtime.setup_process(cache_dir=config.data.cache_dir)
  config_check.check_devices(config, jax.device_count())
  run_study(config, _WORKDIR.value, report_only=_REPORT_ONLY.value)
  print((pathlib.Path(_WORKDIR.value) / "report.md").read_text())


if __name__ == "__main__":
  cli.run("liverjax.study", main, _CONFIG)
