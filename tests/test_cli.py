"""Tests for liverjax/cli.py: which errors become one line, their exit codes, the argv."""
import errno

import pytest

from liverjax import cli
from liverjax import configs
from liverjax import experiment
from liverjax import training
from liverjax.data import chaos
from liverjax.reporting import compare


def test_input_errors_become_one_line_with_their_exit_code(tmp_path):
  full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "w" / "metrics.jsonl"))
  read_only = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "w"))
  cases = [
      (full, f"{tmp_path / 'w' / 'metrics.jsonl'}: No space left on device", cli.FAILED),
      (read_only, f"{tmp_path / 'w'}: Read-only file system", cli.FAILED),
      (PermissionError(errno.EACCES, "Permission denied", "/x"), "/x: Permission denied",
       cli.FAILED),
      (chaos.ChaosError("/data/CT/1: no DICOM files"), "/data/CT/1: no DICOM files", cli.FAILED),
      (experiment.WorkdirLocked("workdir /w is in use"), "workdir /w is in use", cli.FAILED),
      (training.NonFiniteError("non-finite loss at step 3"), "non-finite loss at step 3",
       cli.FAILED),
      (configs.ConfigError("train.batch_size", "expected an integer >= 1", 0),
       "config.train.batch_size=0: expected an integer >= 1", cli.USAGE),
      (cli.UsageError("unexpected arguments: ['x']"), "unexpected arguments: ['x']", cli.USAGE),
      (compare.CompareError("w: no metrics.json"), "w: no metrics.json", cli.FAILED),
      (KeyboardInterrupt(), "interrupted; run the same command again to resume from the last "
       "checkpoint", cli.INTERRUPTED),
  ]
  for error, message, code in cases:
    assert cli.describe_error(error) == (message, code), error
  # Anything else is a bug: no one-line message, the traceback stays.
  assert cli.describe_error(ZeroDivisionError("x")) is None
  assert cli.describe_error(KeyError("x")) is None


def test_a_message_with_a_traceback_inside_keeps_its_first_and_last_line():
  error = chaos.ChaosError("/data/x: unreadable\nTraceback (most recent call last):\n"
                           "  File ...\nValueError: bad header")
  assert cli.describe_error(error)[0] == "/data/x: unreadable ValueError: bad header"


def test_prepare_argv_names_the_default_config_first_and_resolves_names():
  default = str(configs.DIRECTORY / "default.py")
  assert cli.prepare_argv(["prog", "--config.train.steps=3"], default) == [
      "prog", f"--config={default}", "--config.train.steps=3"]
  assert cli.prepare_argv(["prog", "--config=mri_to_ct"], default) == [
      "prog", f"--config={configs.DIRECTORY / 'mri_to_ct.py'}"]
  assert cli.prepare_argv(["prog", "--config", "unet.py:ct_to_mr"], default) == [
      "prog", "--config", f"{configs.DIRECTORY / 'unet.py'}:ct_to_mr"]


@pytest.mark.parametrize("message, argv, expected", [
    ("\"'nope'\"", ["p", "--config.train.nope=1"],
     "--config.train.nope=1: the config has no field 'train.nope'"),
    ("'\\'batch_sise\\'\\nDid you mean \"batch_size\" instead of \"batch_sise\"?'",
     ["p", "--config.train.steps=2", "--config.train.batch_sise=1"],
     "--config.train.batch_sise=1: the config has no field 'train.batch_sise'; "
     "did you mean 'batch_size'?"),
])
def test_an_unknown_config_field_is_named_with_its_flag(message, argv, expected):
  # ml_collections raises AttributeError(KeyError(...)): its text is the KeyError's repr.
  unknown = cli._unknown_field_message  # pylint: disable=protected-access
  assert unknown(AttributeError(message), argv) == expected
