"""One experiment, arranged: data steps, the trainer, the evaluation, the report.

The entry points (`liverjax.main`, `liverjax.study`) call `run`. A U-Net run
loads the dataset, optionally restyles the training slices with a trained
CycleGAN (`config.translate`, a data step), trains, evaluates the best
checkpoint and writes the report; a CycleGAN run trains the translator and
writes its translation-quality report.

Each run holds its workdir for its whole length (`workdir_lock`): a second run
on the same workdir stops at once with `WorkdirLocked`, naming the holder.
"""
from __future__ import annotations

import contextlib
import functools
import pathlib
from typing import Iterator

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from liverjax.cyclegan import train as cyclegan_train
from liverjax.cyclegan import translate
from liverjax.data import dataset as dataset_lib
from liverjax.data import filelock
from liverjax.reporting import cyclegan as cyclegan_report
from liverjax.reporting import experiment as experiment_report
from liverjax.segmentation import evaluate
from liverjax.segmentation import train as segmentation_train

EXPERIMENTS = ("segmentation", "cyclegan")
LOCK_NAME = ".lock"


class WorkdirLocked(RuntimeError):
  """Another run holds the workdir; the message names the workdir and the holder."""


def lock_path(workdir: str | pathlib.Path, process_index: int = 0) -> pathlib.Path:
  """The lock file of `workdir` for one process of a job: `.lock` for process 0
  (and single-process runs), `.lock.<k>` for process k > 0."""
  name = LOCK_NAME if process_index == 0 else f"{LOCK_NAME}.{process_index}"
  return pathlib.Path(workdir) / name


@contextlib.contextmanager
def workdir_lock(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Holds `workdir` for the `with` body: one run per workdir at a time.

  Every process of a job locks its own file (`lock_path`: process 0 the same
  `.lock` a single-process run takes, so a job and a single run exclude each
  other); on a multi-process job the processes then agree (an all-gather) so
  that either all of them go on or all raise. The holder's pid, host, start
  time and command line are in the lock file. Nested calls on the same
  workdir in one process (the study's run inside its own) take it again.

  Yields:
    The lock file of this process.

  Raises:
    WorkdirLocked: naming the workdir and the holder, when another run holds it.
    OSError: when the lock file cannot be written (read-only folder, full disk).
  """
  workdir = pathlib.Path(workdir).absolute()
  path = lock_path(workdir, jax.process_index())
  with contextlib.ExitStack() as stack:
    error = None
    try:
      stack.enter_context(filelock.held(path))
    except filelock.HeldError as e:
      error = e
    if jax.process_count() > 1:
      refused = multihost_utils.process_allgather(np.int32(error is not None))
      if error is None and np.any(refused):
        bad = [int(i) for i in np.flatnonzero(refused)]
        raise WorkdirLocked(f"workdir {workdir} is in use: process(es) {bad} of this job "
                            "found their lock files held by another run")
    if error is not None:
      raise WorkdirLocked(f"workdir {workdir} is in use by another run ({error.holder}); "
                          f"wait for it to finish or choose another workdir "
                          f"(lock file {path})") from None
    yield path


MODES = ("train", "evaluate", "checkpoint_curve")


def run_segmentation(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                     train: bool = True) -> dict:
  """Trains (unless `train` is False) and evaluates a U-Net; writes the report into `workdir`.

  Returns:
    The results dict written to `workdir/metrics.json`.

  Raises:
    WorkdirLocked: when another run holds `workdir` (see `workdir_lock`).
  """
  with workdir_lock(workdir):
    return _run_segmentation(config, workdir, train)


def _run_segmentation(config, workdir, train):
  data = dataset_lib.load_dataset(config.data)
  logging.info("%s", dataset_lib.describe(data))
  if train:
    slice_transform = None
    if config.translate.cyclegan_workdir:
      slice_transform = functools.partial(translate.translate_slices, config=config)
    segmentation_train.train(config, workdir, data=data, slice_transform=slice_transform)
  results, examples = evaluate.evaluate_experiment(config, workdir, data=data)
  if jax.process_index() == 0:
    experiment_report.write_experiment_report(results, examples, workdir)
  logging.info("\n%s", experiment_report.summary_table(results))
  return results


def run_checkpoint_curve(config: ml_collections.ConfigDict,
                         workdir: str | pathlib.Path) -> list[dict]:
  """Scores every kept U-Net checkpoint of `workdir` on the test patients
  (`evaluate.checkpoint_curve`); writes checkpoint_curve.{json,md,png} into `workdir`.

  Returns:
    The rows of `evaluate.checkpoint_curve`.
  """
  with workdir_lock(workdir):
    data = dataset_lib.load_dataset(config.data)
    rows = evaluate.checkpoint_curve(config, workdir, data=data)
    if jax.process_index() == 0:
      experiment_report.write_checkpoint_curve(rows, config.data.source, workdir)
    logging.info("\n%s", experiment_report.checkpoint_curve_table(rows))
    return rows


def run_cyclegan(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains a CycleGAN and writes `cyclegan_metrics.json` and `cyclegan.md` into `workdir`.

  Returns:
    The results dict written to `workdir/cyclegan_metrics.json`.

  Raises:
    WorkdirLocked: when another run holds `workdir` (see `workdir_lock`).
  """
  with workdir_lock(workdir):
    return _run_cyclegan(config, workdir)


def _run_cyclegan(config, workdir):
  data = dataset_lib.load_dataset(config.data, trained_domains=("ct", "mr"))
  logging.info("%s", dataset_lib.describe(data))
  results = cyclegan_train.train_and_evaluate(config, workdir, data=data)
  if jax.process_index() == 0:
    cyclegan_report.write_report(results, workdir)
  logging.info("\n%s", cyclegan_report.quality_table(results))
  return results


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
        mode: str = "train") -> dict:
  """Runs `config.experiment` ("segmentation" | "cyclegan") in `workdir`.

  Args:
    config: the experiment config (`liverjax/configs/default.py` and variants).
    workdir: the output folder.
    mode: "train" (train, then evaluate), "evaluate" (the U-Net's best or
      `eval.checkpoint` checkpoint, no training) or "checkpoint_curve" (every kept
      U-Net checkpoint on the test patients, `run_checkpoint_curve`).

  Returns:
    The results dict of the run (the curve's rows for "checkpoint_curve").
  """
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: expected one of {MODES}")
  if config.experiment == "segmentation":
    if mode == "checkpoint_curve":
      return run_checkpoint_curve(config, workdir)
    return run_segmentation(config, workdir, train=mode == "train")
  if config.experiment == "cyclegan":
    if mode != "train":
      raise ValueError(f"mode={mode!r} is for U-Net experiments; a CycleGAN run "
                       "reports its translation quality when it trains")
    return run_cyclegan(config, workdir)
  raise ValueError(f"config.experiment={config.experiment!r}: expected one of {EXPERIMENTS}")
