"""What both trainers (U-Net, CycleGAN) share: the loop, resume, finiteness, abstract state.

A trainer supplies its jit-compiled step as `step_fn(state, step) -> (state,
metrics)` and the periodic actions it needs (validation, samples,
checkpoints); `train_loop` runs it from `start_step` to `total_steps`, keeping
the metrics on device until a log step, then writing them (`metric_writer`),
checking that training stayed finite and logging one line.
"""
from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from absl import logging

from liverjax import checkpointing
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


def resume(manager, workdir: str | pathlib.Path, abstract: Any) -> tuple[Any, int]:
  """Restores the latest checkpoint of `manager`, if there is one.

  Metric records written after that step (by an interrupted run) are dropped
  from `workdir/metrics.jsonl`; with no checkpoint, every record is (a run
  killed before its first checkpoint starts over, so would write them twice).

  Returns:
    (state, step): the restored state and its step, or (None, 0) on a fresh workdir.
  """
  if manager.latest_step() is None:
    metric_writer.clear(workdir)
    return None, 0
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
