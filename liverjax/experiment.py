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
import copy
import functools
import json
import pathlib
from typing import Iterator

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from liverjax import checkpointing
from liverjax import configs
from liverjax import progress
from liverjax.cyclegan import train as cyclegan_train
from liverjax.cyclegan import translate
from liverjax.data import dataset as dataset_lib
from liverjax.data import filelock
from liverjax.reporting import cyclegan as cyclegan_report
from liverjax.reporting import experiment as experiment_report
from liverjax.segmentation import evaluate
from liverjax.segmentation import self_training
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
  workdir = pathlib.Path(workdir)
  config = _with_translator(config, workdir, train)
  if train and int(config.self_training.rounds) > 0:
    _self_train(config, workdir, data)
  elif train:
    segmentation_train.train(config, workdir, data=data,
                             slice_transform=_slice_transform(config))
  return _evaluate_and_report(final_model_config(config), workdir, data)


def evaluate_results(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """The results of evaluating a trained U-Net run again with `config`'s evaluation options
  (a self-training run: its students' options, `student_config`); no report is written.

  Returns:
    The results dict (as `metrics.json` holds it).
  """
  with workdir_lock(workdir):
    data = dataset_lib.load_dataset(config.data)
    config = _with_translator(final_model_config(config), pathlib.Path(workdir), train=False)
    return evaluate.evaluate_experiment(config, workdir, data=data)[0]


def _evaluate_and_report(config, workdir, data) -> dict:
  results, examples = evaluate.evaluate_experiment(config, workdir, data=data)
  if jax.process_index() == 0:
    experiment_report.write_experiment_report(results, examples, workdir)
  logging.info("\n%s", experiment_report.summary_table(results))
  return results


# `translate.cyclegan_workdir` value that makes a U-Net run train its own CycleGAN first.
TRAIN_CYCLEGAN = "train"


def _with_translator(config, workdir: pathlib.Path, train: bool):
  """`config` with `translate.cyclegan_workdir` = TRAIN_CYCLEGAN resolved: the CycleGAN of
  `config.cyclegan` is trained (resumed; a finished one is only re-measured) into
  `<workdir>/cyclegan` on this run's data (the source's training patients and the target's
  unlabelled scans, `data.<m>.adapt_root`), and the translation step uses it."""
  if config.translate.cyclegan_workdir != TRAIN_CYCLEGAN:
    return config
  cg_dir = workdir / "cyclegan"
  if train:
    cg_config = copy.deepcopy(config)
    cg_config.experiment = "cyclegan"
    run_cyclegan(cg_config, cg_dir)
  config = copy.deepcopy(config)
  config.translate.cyclegan_workdir = str(cg_dir)
  return config


def _slice_transform(config):
  """The data step on the source training slices: the CycleGAN translation, or None."""
  if not config.translate.cyclegan_workdir:
    return None
  return functools.partial(translate.translate_slices, config=config)


def final_model_config(config):
  """The config a run's final model (the U-Net in its workdir) is evaluated with: a
  self-training run's (`self_training.rounds` > 0) last student's, `student_config(config)`;
  else `config` itself."""
  if int(config.self_training.rounds) > 0:
    return student_config(config)
  return config


def student_config(config):
  """The config of a self-training student: `config` with the students' test-time options
  (`self_training.student_intensity`, `student_adapt_bn`) as its `eval` options,
  `self_training.student_steps` (when > 0) as its training length and the `augment` switches
  of `self_training.student_augment` on."""
  config = copy.deepcopy(config)
  st = config.self_training
  config.eval.intensity = st.student_intensity
  config.eval.adapt_bn = st.student_adapt_bn
  if st.student_intensity == "none":
    config.eval.intensity_gamma = 1.0
  steps = int(st.student_steps)
  if steps > 0:
    config.train.update(steps=steps, eval_every=max(steps // 4, 1))
  for name in st.student_augment:
    config.augment[name] = True
  return config


def _teachers(config, workdir: pathlib.Path, data) -> list[tuple]:
  """[(config, workdir)] of round 1's teachers (`self_training.teachers` of them): first the
  checkpoints `self_training.teacher` names, each with the config saved beside it; then the
  model of `config` without self-training, trained and evaluated here for each teacher still
  missing (teacher k with seed `config.seed` + k, into `<workdir>/teacher` for k = 0, else
  `<workdir>/teacher<k>`; resumed when interrupted)."""
  out = []
  for path in configs.teacher_paths(config.self_training.teacher):
    directory, step = checkpointing.resolve_checkpoint(path)
    saved = checkpointing.restore_config(checkpointing.open_read_only(directory), step)
    if not saved:
      raise configs.ConfigError("self_training.teacher", f"{directory / str(step)} keeps no "
                                "config: its preprocessing and test-time options are unknown",
                                path)
    teacher_config = configs.from_saved(saved)
    teacher_config.eval.checkpoint = str(directory / str(step))
    _check_teacher_data(teacher_config, config)
    out.append((teacher_config, directory / str(step)))
  for k in range(len(out), int(config.self_training.teachers)):
    teacher_config = copy.deepcopy(config)
    teacher_config.self_training.rounds = 0
    teacher_config.seed = int(config.seed) + k
    teacher_dir = workdir / ("teacher" if k == 0 else f"teacher{k}")
    segmentation_train.train(teacher_config, teacher_dir, data=data,
                             slice_transform=_slice_transform(teacher_config))
    _evaluate_and_report(teacher_config, teacher_dir, data)
    out.append((teacher_config, teacher_dir))
  return out


# The data settings a teacher must share with its students: it labels their prepared slices.
_PREPARATION = ("image_size", "field_of_view", "normalization", "ct_window", "mr_percentiles")


def _check_teacher_data(teacher_config, config) -> None:
  """Raises ConfigError naming the first `data` field that the teacher was trained with
  differently (its pseudo-labels are made on this run's prepared slices)."""
  for field in _PREPARATION:
    mine, theirs = config.data.get(field), teacher_config.data.get(field)
    if isinstance(mine, (list, tuple)):
      mine, theirs = list(mine), list(theirs or [])
    if mine != theirs:
      raise configs.ConfigError(f"data.{field}", f"the teacher (self_training.teacher) was "
                                f"trained with {theirs!r}; a teacher labels this run's "
                                "prepared slices, so both must be prepared alike", mine)


def _self_train(config, workdir: pathlib.Path, data) -> None:
  """Self-training rounds (`segmentation.self_training`): the teachers (`_teachers`) label the
  unlabelled target scans, a student trains on the source + kept pseudo-labels; each student
  alone teaches the next. Intermediate students live in `<workdir>/round<k>` (evaluated
  there); the last one is the run's model, in `workdir`. `<workdir>/pseudo_labels.json`
  records every round's per-scan decisions."""
  st = config.self_training
  target = self_training.adapt_domain(config, data)
  seqs = dataset_lib.domain_sequences(target, config.data)
  adapt = data.select(target, "adapt", seqs)
  teachers = _teachers(config, workdir, data)
  student = student_config(config)
  # The target slices as the students see them at test time: histogram-matched to the source
  # (then the gamma) when that is their test-time option, else as they are.
  seen = adapt
  if student.eval.intensity == "histogram_match":
    seen = evaluate.harmonize_volumes(adapt, evaluate.intensity_reference(data, student),
                                      float(student.eval.intensity_gamma))
  rounds, records = int(st.rounds), []
  for r in range(1, rounds + 1):
    # An ensemble's pseudo-labels: the mean of its teachers' probabilities, each teacher
    # with its own test-time options.
    per_teacher = [self_training.teacher_probabilities(c, d, adapt, data) for c, d in teachers]
    probs = [np.mean(p, axis=0) for p in zip(*per_teacher)]
    labels = [self_training.pseudo_label(
        p, v.image, v.spacing, patient_id=v.patient_id, confidence=float(st.confidence),
        min_liver_ml=float(st.min_liver_ml), max_liver_ml=float(st.max_liver_ml),
        min_confident_fraction=float(st.min_confident_fraction),
        ignore_margin_mm=float(st.ignore_margin_mm),
        ignore_below_mm=float(st.ignore_below_mm))
              for p, v in zip(probs, adapt)]
    for v, pl in zip(adapt, labels):
      if pl.kept:
        logging.info("round %d: %s pseudo-labelled: liver %.0f mL, %.0f %% of the body "
                     "labelled", r, progress.volume_label(v), pl.liver_ml,
                     100 * pl.confident_fraction)
      else:
        logging.warning("round %d: %s dropped: %s", r, progress.volume_label(v), pl.reason)
    records.append({"round": r, "teachers": [str(d) for _, d in teachers],
                    "scans": [pl.summary() for pl in labels]})
    if jax.process_index() == 0:
      experiment_report.plot_pseudo_labels(
          [experiment_report.pseudo_label_panel(v.image, pl.mask, p, _panel_title(v, pl),
                                                v.spacing)
           for v, pl, p in zip(seen, labels, probs)], workdir / f"pseudo_labels_round{r}.png")
    slices = self_training.pseudo_labelled_slices(seen, labels)
    student_dir = workdir if r == rounds else workdir / f"round{r}"
    segmentation_train.train(student, student_dir, data=data,
                             slice_transform=_slice_transform(student), pseudo_labelled=slices)
    if r < rounds:
      _evaluate_and_report(student, student_dir, data)
    teachers = [(student, student_dir)]
    if jax.process_index() == 0:
      _write_json(workdir / "pseudo_labels.json", records)


def _panel_title(volume, pl) -> str:
  """A pseudo-label's figure title: the scan ("CT 0", "MR chaos_t2_001 t2"), kept (its liver
  and labelled share) or why not."""
  if pl.kept:
    return (f"{progress.volume_label(volume)}: {pl.liver_ml:.0f} mL, "
            f"{100 * pl.confident_fraction:.0f} % of the body labelled")
  return f"{progress.volume_label(volume)}: dropped\n{pl.reason}"


def _write_json(path: pathlib.Path, value) -> None:
  """Writes `value` as JSON to `path` atomically (a temporary file renamed)."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(value, indent=1, default=float))
  tmp.replace(path)


def run_checkpoint_curve(config: ml_collections.ConfigDict,
                         workdir: str | pathlib.Path) -> list[dict]:
  """Scores every kept U-Net checkpoint of `workdir` on the test patients
  (`evaluate.checkpoint_curve`); writes checkpoint_curve.{json,md,png} into `workdir`. A
  self-training run's checkpoints are its last student's, scored with the students' test-time
  options (`student_config`), as its own evaluation scored them.

  Returns:
    The rows of `evaluate.checkpoint_curve`.
  """
  with workdir_lock(workdir):
    data = dataset_lib.load_dataset(config.data)
    config = final_model_config(config)
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
