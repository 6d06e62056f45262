"""Every orbax call of the project, in one place.

Layout: `workdir/checkpoints/<step>/{state,config,source_stats}`. Retention: the latest
`keep` checkpoints plus the best one by validation Dice (`metrics["val_dice"]`).
The state is any pytree of arrays (the train state of
`liverjax.segmentation.state` or of `liverjax.cyclegan.state`); the config is stored as JSON beside it so that a
checkpoint says how it was made, and `source_stats` (JSON, optional) holds what prediction on new
scans needs from the training data, e.g. the source domain's intensity quantiles.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

BEST_METRIC = "val_dice"
ITEM_NAMES = ("state", "config", "source_stats")


class CheckpointError(ValueError):
  """A checkpoint that cannot be restored (damaged, files missing, another structure); the
  message names its folder and the cause in one line."""


def create_manager(workdir: str | pathlib.Path, *, keep: int = 2,
                   best_metric: str | None = BEST_METRIC,
                   read_only: bool = False) -> ocp.CheckpointManager:
  """Returns a CheckpointManager for `workdir/checkpoints`.

  Args:
    workdir: the experiment folder.
    keep: how many of the latest checkpoints to keep.
    best_metric: checkpoints also kept when they are the best (highest) by
      this entry of the saved metrics; None keeps only the latest.
    read_only: open existing checkpoints for restoring (evaluation): nothing
      is saved or deleted, `keep` does not apply.
  """
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  if read_only:
    return open_read_only(directory, best_metric=best_metric)
  policies = [pp.LatestN(n=keep)]
  if best_metric is not None:
    policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric], n=1,
                             keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=pp.AnyPreservationPolicy(policies),
      # Orbax writes the metrics of a save only when a best_fn is set.
      best_fn=(lambda m: m[best_metric]) if best_metric else None,
      best_mode="max",
      enable_async_checkpointing=False,
      create=True)
  return ocp.CheckpointManager(directory, options=options,
                               item_names=ITEM_NAMES)


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         config_dict: dict | None = None, metrics: dict | None = None,
         source_stats: dict | None = None) -> None:
  """Saves `state` (a pytree), `config_dict` and `source_stats` (JSON-able) at `step`."""
  items = {"state": ocp.args.StandardSave(_fields_to_save(state))}
  if config_dict is not None:
    items["config"] = ocp.args.JsonSave(config_dict)
  if source_stats is not None:
    items["source_stats"] = ocp.args.JsonSave(source_stats)
  manager.save(step, args=ocp.args.Composite(**items),
               metrics=None if metrics is None else
               {k: float(v) for k, v in metrics.items()}, force=True)
  manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, abstract_state: Any,
            step: int | None = None) -> tuple[Any, int]:
  """Restores the state at `step` (default: latest) with the shardings of
  `abstract_state` (a pytree of arrays or `jax.ShapeDtypeStruct`s).

  Returns:
    (state, step).

  Raises:
    FileNotFoundError: there is no checkpoint.
    CheckpointError: naming the step's folder, when orbax cannot restore it (a file of it
      missing or damaged, or a state of another structure: another model config).
  """
  if step is None:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}")
  abstract = jax.tree.map(_as_abstract, _fields_to_save(abstract_state))
  try:
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  except Exception as e:  # pylint: disable=broad-except  (orbax / tensorstore raise many kinds)
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    cause = f"{type(e).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
    raise CheckpointError(f"{pathlib.Path(manager.directory) / str(step)}: cannot restore the "
                          f"checkpoint (damaged, a file missing, or made by another model "
                          f"config): {cause}") from e
  if _is_dataclass_state(abstract_state):
    return abstract_state.replace(**restored["state"]), step
  return restored["state"], step


def read_saved_json(step_dir: str | pathlib.Path, item: str) -> dict | None:
  """The JSON item ("config", "source_stats", "metrics") saved in one checkpoint folder
  (`<workdir>/checkpoints/<step>`), read as a file without orbax; None when absent."""
  path = pathlib.Path(step_dir) / item / "metadata"
  return json.loads(path.read_text()) if path.exists() else None


def _restore_json(manager: ocp.CheckpointManager, step: int, item: str) -> dict | None:
  saved = read_saved_json(pathlib.Path(manager.directory) / str(step), item)
  if saved is not None:
    return saved
  try:
    restored = manager.restore(
        step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))
    return restored[item]
  except Exception:  # pylint: disable=broad-except
    return None


def restore_config(manager: ocp.CheckpointManager, step: int) -> dict | None:
  """Returns the config dict saved with the checkpoint at `step`, or None."""
  return _restore_json(manager, step, "config")


def restore_source_stats(manager: ocp.CheckpointManager, step: int) -> dict | None:
  """Returns the `source_stats` dict saved with the checkpoint at `step`, or None
  (checkpoints made before it was kept, CycleGAN checkpoints)."""
  return _restore_json(manager, step, "source_stats")


def best_step(manager: ocp.CheckpointManager,
              metric: str = BEST_METRIC) -> int | None:
  """Returns the kept step with the highest `metric`, else the latest step."""
  best, best_value = None, None
  for step in manager.all_steps():
    metrics = manager.metrics(step) or {}
    if metric in metrics and (best_value is None or metrics[metric] > best_value):
      best, best_value = step, metrics[metric]
  return best if best is not None else manager.latest_step()


def restore_path(path: str | pathlib.Path, abstract_state: Any) -> tuple[Any, int]:
  """Restores from an explicit `.../checkpoints/<step>` folder (eval.checkpoint)."""
  path = pathlib.Path(path).absolute()
  if not path.is_dir():
    raise FileNotFoundError(f"checkpoint folder not found: {path}")
  try:
    step = int(path.name)
  except ValueError as e:
    raise ValueError(f"{path}: expected a checkpoint step folder "
                     "(.../checkpoints/<step>)") from e
  return restore(open_read_only(path.parent), abstract_state, step)


def open_read_only(directory: str | pathlib.Path,
                   best_metric: str | None = BEST_METRIC) -> ocp.CheckpointManager:
  """A read-only CheckpointManager over a `checkpoints/` folder (restore, never save)."""
  options = ocp.CheckpointManagerOptions(
      read_only=True, best_fn=(lambda m: m[best_metric]) if best_metric else None,
      best_mode="max")
  return ocp.CheckpointManager(pathlib.Path(directory).absolute(),
                               item_names=ITEM_NAMES, options=options)


def checkpoint_location(path: str | pathlib.Path) -> tuple[pathlib.Path, int | None]:
  """(checkpoints folder, step or None for the latest) of `path`.

  `path` is an experiment workdir (holding `checkpoints/`), a `checkpoints/`
  folder, or one `checkpoints/<step>` folder. Raises FileNotFoundError otherwise.
  """
  path = pathlib.Path(os.path.expandvars(os.path.expanduser(str(path)))).absolute()
  if (path / "checkpoints").is_dir():
    return path / "checkpoints", None
  if path.name.isdigit() and path.is_dir():
    return path.parent, int(path.name)
  if path.is_dir():
    return path, None
  raise FileNotFoundError(f"checkpoint not found: {path} (expected a workdir, its "
                          "checkpoints/ folder, or a checkpoints/<step> folder)")


def resolve_checkpoint(path: str | pathlib.Path,
                       best_metric: str | None = BEST_METRIC) -> tuple[pathlib.Path, int]:
  """(checkpoints folder, step) of `path`: a `checkpoints/<step>` folder as it is; a workdir
  or `checkpoints/` folder: its best step by `best_metric` (else its latest; `best_step`).

  Raises:
    FileNotFoundError: naming the folder, when it holds no checkpoint.
  """
  directory, step = checkpoint_location(path)
  if step is None:
    step = best_step(open_read_only(directory, best_metric), best_metric or BEST_METRIC)
  if step is None or not (directory / str(step)).is_dir():
    raise FileNotFoundError(f"{directory}: no checkpoint here (expected a workdir, its "
                            "checkpoints/ folder, or a checkpoints/<step> folder)")
  return directory, int(step)


def _is_dataclass_state(state: Any) -> bool:
  return dataclasses.is_dataclass(state) and not isinstance(state, type)


def _fields_to_save(state: Any) -> Any:
  """A dataclass state (the train states) as the dict of its fields that are not None.

  Orbax stores a dataclass by field name, a None field as an entry of its own; leaving
  None fields out keeps an optional part (the U-Net's `ema_params`) from changing the
  stored tree, so checkpoints made before or without it restore alike. Other pytrees
  are returned as they are.
  """
  if not _is_dataclass_state(state):
    return state
  return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
          if getattr(state, f.name) is not None}


def _as_abstract(x):
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
