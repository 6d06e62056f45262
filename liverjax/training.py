"""What both trainers (U-Net, CycleGAN) share: the loop, resume, finiteness, abstract state.

A trainer supplies its jit-compiled step as `step_fn(state, step) -> (state,
metrics)` and the periodic actions it needs (validation, samples,
checkpoints); `train_loop` runs it from `start_step` to `total_steps`, keeping
the metrics on device until a log step, then writing them (`metric_writer`),
checking that training stayed finite and logging one line.
"""
from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from absl import logging

from liverjax import checkpointing
from liverjax import configs
from liverjax import metric_writer
from liverjax import progress
from liverjax import runtime


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient."""


def itstime(step: int, every: int, total_steps: int) -> bool:
  """True every `every` steps and at the last step (`step` counts steps taken)."""
  return step % every == 0 or step == total_steps


def check_finite(state: Any, what: str = "loss or gradients", hint: str = "") -> None:
  """Raises NonFiniteError naming the first bad step, if there was one.

  Args:
    state: a train state with an int32 scalar `nonfinite_step` (-1: all finite).
    what: what was not finite, for the message.
    hint: what to try, appended to the message.
  """
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    raise NonFiniteError(
        f"non-finite {what} at step {bad}: training stopped (that update was skipped; "
        f"the last checkpoint holds finite weights). {hint}".rstrip())


def abstract_state(init_fn: Callable[..., Any], *args, mesh) -> Any:
  """The state `init_fn(*args)` would return, as `jax.ShapeDtypeStruct`s replicated on `mesh`.

  Nothing is computed (`jax.eval_shape`); this is what a checkpoint restores into.
  """
  replicated = runtime.replicated_sharding(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      jax.eval_shape(init_fn, *args))


# The config sections that shape what a run of each experiment trains: the model, the data it
# sees and how it learns. A resumed run must have the checkpoint's values there
# (`check_resume_config`), except for the fields of RESUMABLE_FIELDS. The other sections
# (`eval`, `study`, and the other experiment's) do not touch the training of this one.
_TRAINING_SECTIONS = {
    "segmentation": ("experiment", "seed", "rng_impl", "data", "model", "train", "augment",
                     "translate", "self_training"),
    "cyclegan": ("experiment", "seed", "rng_impl", "data", "cyclegan"),
}
# Fields that may change when a run resumes: they extend the run (`train.steps`,
# `cyclegan.steps`: a schedule over the steps is stretched to the new count), or change what
# is logged, kept, cached or measured, never the model, the data or the update.
RESUMABLE_FIELDS = (
    "train.steps", "train.log_every", "train.eval_every", "train.keep_checkpoints",
    "cyclegan.steps", "cyclegan.log_every", "cyclegan.sample_every", "cyclegan.sample_slices",
    "cyclegan.checkpoint_every", "cyclegan.keep_checkpoints", "cyclegan.histogram_bins",
    "cyclegan.body_threshold", "cyclegan.task_unet_ct", "cyclegan.task_unet_mr",
    "data.cache_dir", "data.use_tf", "data.shuffle_buffer", "data.targets",
    "data.target_test_only", "translate.batch_size",
)


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flat(value, f"{name}."))
    else:
      out[name] = value
  return out


def _comparable(config) -> dict[str, Any]:
  """A config (ConfigDict or dict) as flat dotted name -> JSON value (tuples become lists)."""
  tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return _flat(json.loads(json.dumps(tree, default=str)))


def check_resume_config(config, saved: dict | None, where: str,
                        experiment: str | None = None) -> None:
  """Refuses to resume a checkpoint made with a config that trains differently.

  Args:
    config: the config of the run that resumes.
    saved: the config dict saved with the checkpoint (`checkpointing.restore_config`); None
      (a checkpoint that keeps none) is not checked.
    where: the checkpoint, named in the message.
    experiment: "segmentation" | "cyclegan", the trainer resuming (its sections are
      compared); None: `config.experiment`.

  Raises:
    configs.ConfigError: naming the first field that differs, with the checkpoint's value,
      and every other one, when any field of the sections that shape training
      (`_TRAINING_SECTIONS`) differs, other than those of RESUMABLE_FIELDS. Fields the
      checkpoint's config lacks (added since) are compared with their defaults; the
      self-training fields other than `self_training.rounds` are compared only where the
      checkpoint's run self-trained.
  """
  if not saved:
    return
  new = _comparable(config)
  old = _comparable(configs.from_saved(saved))
  sections = _TRAINING_SECTIONS[experiment or str(new.get("experiment"))]
  # A checkpoint that did not self-train (a plain run, or a teacher in `<workdir>/teacher`)
  # is no student: only its `self_training.rounds` (0) is compared, so a rerun with other
  # students' settings resumes it, and one that turns self-training on in its workdir does not.
  skip = () if old.get("self_training.rounds") else ("self_training.",)
  differ = [name for name in sorted(new) if name in old and new[name] != old[name]
            and name.split(".")[0] in sections and name not in RESUMABLE_FIELDS
            and not (name.startswith(skip) and name != "self_training.rounds")]
  if not differ:
    return
  first, others = differ[0], differ[1:]
  also = "; also " + ", ".join(f"{n} ({old[n]!r} -> {new[n]!r})" for n in others) if (
      others) else ""
  raise configs.ConfigError(
      first, f"the checkpoint {where} was trained with {old[first]!r}{also}. These change "
      "the model, the data or the training, so this run cannot resume it: give the "
      "checkpoint's values, or another workdir (train.steps, cyclegan.steps and the logging, "
      "checkpoint and cache fields of liverjax.training.RESUMABLE_FIELDS may change)",
      new[first])


def resume(manager, workdir: str | pathlib.Path, abstract: Any, config=None,
           experiment: str | None = None) -> tuple[Any, int]:
  """Restores the latest checkpoint of `manager`, if there is one.

  Metric records written after that step (by an interrupted run) are dropped
  from `workdir/metrics.jsonl`; with no checkpoint, every record is (a run
  killed before its first checkpoint starts over, so would write them twice).

  Args:
    manager: the run's checkpoint manager.
    workdir: the run's folder.
    abstract: the state to restore into (`abstract_state`).
    config: the run's config, checked against the checkpoint's saved one before anything
      is restored (`check_resume_config`); None: not checked.
    experiment: the trainer ("segmentation" | "cyclegan"; None: `config.experiment`).

  Returns:
    (state, step): the restored state and its step, or (None, 0) on a fresh workdir.

  Raises:
    configs.ConfigError: the config trains differently from the checkpoint's.
    checkpointing.CheckpointError: the checkpoint cannot be restored (damaged, missing
      files, another structure), naming its folder.
  """
  latest = manager.latest_step()
  if latest is None:
    metric_writer.clear(workdir)
    return None, 0
  if config is not None:
    check_resume_config(config, checkpointing.restore_config(manager, latest),
                        f"{manager.directory}/{latest}", experiment)
  state, step = checkpointing.restore(manager, abstract)
  logging.info("resumed from the checkpoint at step %d in %s", step, manager.directory)
  metric_writer.truncate_after(workdir, step)
  return state, step


def train_loop(state: Any, step_fn: Callable[[Any, int], tuple[Any, dict]], *,
               start_step: int, total_steps: int, log_every: int,
               writer: metric_writer.MetricWriter,
               log_line: Callable[[int, dict, float, str], None],
               actions: Sequence[tuple[int, Callable[[int, Any], None]]] = (),
               name: str = "training", nonfinite_hint: str = "") -> tuple[Any, int]:
  """Runs `step_fn` from `start_step` to `total_steps`.

  Args:
    state: the initial (or restored) train state, with `nonfinite_step`.
    step_fn: (state, step) -> (state, metrics dict of device scalars); `step`
      is the number of steps taken before this one.
    start_step, total_steps: the range of steps to run.
    log_every: every this many steps (and at the last) the metrics are
      averaged, written under split "train" with `steps_per_sec`, the state is
      checked finite (`check_finite`), and `log_line(step, means, rate, eta)`
      is called.
    writer: where the scalars go.
    actions: (every, fn(step, state)) run after the log, in order, every
      `every` steps and at the last step (validation, samples, checkpoints).
    name: for the final log line.
    nonfinite_hint: appended to the NonFiniteError message.

  Returns:
    (state, step): the final state and the number of steps taken.
  """
  steps = metric_writer.Progress(start_step, total_steps)
  step = start_step
  while step < total_steps:
    state, metrics = step_fn(state, step)
    steps.append(metrics)
    step += 1
    if itstime(step, log_every, total_steps):
      check_finite(state, hint=nonfinite_hint)
      means, rate, eta = steps.summarize(step)
      writer.write_scalars(step, {**means, "steps_per_sec": rate}, split="train")
      log_line(step, means, rate, eta)
    for every, action in actions:
      if itstime(step, every, total_steps):
        action(step, state)
  writer.flush()
  if step > start_step:
    logging.info("%s done: %d steps in %s", name, step - start_step,
                 progress.format_seconds(time.time() - steps.start_time))
  return state, step
