"""One experiment, arranged: data steps, the trainer, the evaluation, the report.

The entry points (`liverjax.main`, `liverjax.study`) call `run`. A U-Net run
loads the dataset, optionally restyles the training slices with a trained
CycleGAN (`config.translate`, a data step), trains, evaluates the best
checkpoint and writes the report; a CycleGAN run trains the translator and
writes its translation-quality report.
"""
from __future__ import annotations

import functools
import pathlib

import jax
import ml_collections
from absl import logging

from liverjax.cyclegan import train as cyclegan_train
from liverjax.cyclegan import translate
from liverjax.data import dataset as dataset_lib
from liverjax.reporting import cyclegan as cyclegan_report
from liverjax.reporting import experiment as experiment_report
from liverjax.segmentation import evaluate
from liverjax.segmentation import train as segmentation_train

EXPERIMENTS = ("segmentation", "cyclegan")


def run_segmentation(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                     train: bool = True) -> dict:
  """Trains (unless `train` is False) and evaluates a U-Net; writes the report into `workdir`.

  Returns:
    The results dict written to `workdir/metrics.json`.
  """
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


def run_cyclegan(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains a CycleGAN and writes `cyclegan_metrics.json` and `cyclegan.md` into `workdir`.

  Returns:
    The results dict written to `workdir/cyclegan_metrics.json`.
  """
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
    mode: "train" (train, then evaluate) or "evaluate" (the U-Net's best or
      `eval.checkpoint` checkpoint, no training).

  Returns:
    The results dict of the run.
  """
  if mode not in ("train", "evaluate"):
    raise ValueError(f"mode={mode!r}: expected 'train' or 'evaluate'")
  if config.experiment == "segmentation":
    return run_segmentation(config, workdir, train=mode == "train")
  if config.experiment == "cyclegan":
    if mode != "train":
      raise ValueError("mode='evaluate' is for U-Net experiments; a CycleGAN run "
                       "reports its translation quality when it trains")
    return run_cyclegan(config, workdir)
  raise ValueError(f"config.experiment={config.experiment!r}: expected one of {EXPERIMENTS}")
