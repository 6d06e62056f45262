"""The experiment configs (ml_collections files), installed with the package.

`--config=configs/<file>.py` works from the repository root (`configs` links
here); anywhere else give the installed path or just the name:
`python -m liverjax.main --config=mri_to_ct` or `--config=unet.py:ct_to_mr,augmix`
(`resolve` turns such a name into this folder's file).

`ConfigError` is the error of a bad config field, raised by
`liverjax.config_check` before a run and by any layer that finds a field
unusable on the data it has (e.g. a batch larger than the training set).
"""
from __future__ import annotations

import pathlib

import ml_collections

from liverjax.configs import default

DIRECTORY = pathlib.Path(__file__).resolve().parent
_NO_VALUE = object()


class ConfigError(ValueError):
  """A config field is bad; the message names the field (as its command-line flag
  `config.<section>.<name>`), its value and what is wrong."""

  def __init__(self, field: str, problem: str, value=_NO_VALUE):
    self.field = field
    shown = "" if value is _NO_VALUE else f"={value!r}"
    super().__init__(f"config.{field}{shown}: {problem}")


def resolve(value: str) -> str:
  """A `--config` value with its file located: the value itself when that file
  exists, else the file of the same name (`.py` optional) in this package.

  Args:
    value: `path/or/name[.py][:arg]`.

  Returns:
    The value with the path replaced by the installed file when only the
    latter exists (the `:arg` suffix kept).
  """
  path, sep, arg = value.partition(":")
  if not path or pathlib.Path(path).expanduser().exists():
    return value
  name = pathlib.Path(path).name
  candidate = DIRECTORY / (name if name.endswith(".py") else name + ".py")
  return f"{candidate}{sep}{arg}" if candidate.exists() else value


def resolve_argv(argv: list[str]) -> list[str]:
  """`argv` with every `--config=VALUE` / `--config VALUE` passed through `resolve`."""
  out = list(argv)
  for i, a in enumerate(out):
    if a.startswith("--config="):
      out[i] = "--config=" + resolve(a.split("=", 1)[1])
    elif a == "--config" and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
  return out


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """The config of a checkpoint: its saved dict, with fields it lacks from the defaults.

  Args:
    saved: the JSON dict saved beside a checkpoint (`config.to_dict()`).

  Returns:
    A ConfigDict; fields added since the checkpoint was made take their defaults
    (`configs/default.py`).
  """
  config = ml_collections.ConfigDict(saved)

  def fill(target, defaults):
    for key, value in defaults.items():
      if key not in target:
        target[key] = value
      elif isinstance(value, ml_collections.ConfigDict) and isinstance(
          target[key], ml_collections.ConfigDict):
        fill(target[key], value)

  fill(config, default.get_config())
  return config


def teacher_paths(teacher) -> tuple[str, ...]:
  """`self_training.teacher` as a tuple of paths: () for None or "", one path for a string.

  Raises:
    ConfigError: for anything but None, a string or a sequence of non-empty strings.
  """
  if teacher is None or teacher == "":
    return ()
  if isinstance(teacher, str):
    return (teacher,)
  if isinstance(teacher, (list, tuple)) and all(isinstance(t, str) and t for t in teacher):
    return tuple(teacher)
  raise ConfigError("self_training.teacher", "must be a path or a tuple of paths", teacher)
