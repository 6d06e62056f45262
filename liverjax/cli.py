"""What the entry points (`liverjax.main`, `liverjax.study`, `liverjax.predict`,
`liverjax.compare`) share: the command line, one-line errors, exit codes.

An input error ends a run with one line on stderr, `<program>: <what>`, naming
the flag, config field or file, and an exit code:

  0    success
  1    the run could not go on: unreadable data (`ChaosError`), a file or folder
       that cannot be read or written (`OSError`: a missing checkpoint, a full
       disk, a read-only workdir), a damaged checkpoint (`CheckpointError`), the
       workdir held by another run (`WorkdirLocked`), training that stopped on
       non-finite values (`NonFiniteError`), bad input to prediction or scans
       that failed (`PredictError`), runs that cannot be compared (`CompareError`)
  2    usage: an unknown flag or config field, a value that does not parse or
       fails `liverjax.config_check` (`ConfigError`), a missing `--config` file,
       stray arguments
  130  interrupted (Ctrl-C); rerunning the same command resumes

Any other exception is a bug and keeps its traceback. With the environment
variable LIVERJAX_TRACEBACK=1 every error keeps its traceback (for developers).
"""
from __future__ import annotations

import os
import pathlib
import re
import sys
from collections.abc import Callable

from absl import app
from absl import flags

from liverjax import checkpointing
from liverjax import configs
from liverjax import experiment
from liverjax import training
from liverjax.data import chaos
from liverjax.predict import errors as predict_errors
from liverjax.reporting import compare as compare_report

TRACEBACK_ENV = "LIVERJAX_TRACEBACK"
FAILED, USAGE, INTERRUPTED = 1, 2, 130


class UsageError(Exception):
  """A command-line error (exit code 2); the message names the flag."""


def prepare_argv(argv: list[str], default_config: str) -> list[str]:
  """The command line as the config flag should see it.

  Config names are located (`configs.resolve_argv`), and `--config=<default>`
  is put first when no `--config` is given: ml_collections then parses the
  config (and its `--config.x=...` overrides) with the other flags, where
  `parse_flags` reports errors in one line, not when the flag is defined.
  Call before `config_flags.DEFINE_config_file`.
  """
  argv = configs.resolve_argv(argv)
  if not any(re.match(r"^--?config(=|$)", a) for a in argv[1:]):
    argv = argv[:1] + [f"--config={default_config}"] + argv[1:]
  return argv


def _config_values(argv: list[str]) -> list[str]:
  """The values given to --config (as `--config=X` or `--config X`)."""
  values = []
  for i, a in enumerate(argv[1:], 1):
    if re.match(r"^--?config=", a):
      values.append(a.split("=", 1)[1])
    elif re.match(r"^--?config$", a) and i + 1 < len(argv):
      values.append(argv[i + 1])
  return values


def _config_file_problem(argv: list[str]) -> str | None:
  """'--config=X: no such config file ...' when a --config file does not exist."""
  for value in _config_values(argv):
    path = pathlib.Path(value.partition(":")[0]).expanduser()
    if not path.is_file():
      return (f"--config={value}: no such config file (neither {path.absolute()} nor an "
              f"installed config of that name in {configs.DIRECTORY})")
  return None


def _unknown_field_message(error: Exception, argv: list[str]) -> str | None:
  """'--config.a.b=v: no config field ...' for ml_collections' KeyError / AttributeError."""
  text = str(error)
  names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text.split("Did you mean")[0])
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  for a in argv:
    m = re.match(r"^--?config\.([^=]+)", a)
    if m and any(n in m.group(1).split(".") for n in names):
      hint = f"; did you mean {suggestion.group(1)!r}?" if suggestion else ""
      return f"{a}: the config has no field {m.group(1)!r}{hint}"
  return None


def _one_line(text: str) -> str:
  """The first line of `text`, and its last (the exception of an embedded traceback)."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  if not lines:
    return str(text)
  return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def parse_flags(config_flag=None) -> Callable[[list[str]], list[str]]:
  """An absl `flags_parser` that parses the command line and loads the config now.

  Every parse error (unknown flag or config field, a value that does not
  parse, a missing or broken config file) becomes a `UsageError` naming the
  flag, which `run` prints in one line. `config_flag` None: a program without a
  config (`liverjax.predict`).
  """

  def parse(argv: list[str]) -> list[str]:
    problem = _config_file_problem(argv) if config_flag is not None else None
    if problem:
      raise UsageError(problem)
    try:
      rest = flags.FLAGS(argv)
      if config_flag is not None:
        config_flag.value  # pylint: disable=pointless-statement  (loads the file now)
    except (KeyError, AttributeError) as e:
      raise UsageError(_unknown_field_message(e, argv) or _one_line(e)) from e
    except (flags.Error, ValueError, TypeError, OSError, SyntaxError, NameError,
            ImportError) as e:
      raise UsageError(_one_line(e)) from e
    return rest

  return parse


def describe_error(error: BaseException) -> tuple[str, int] | None:
  """(one-line message, exit code) for an input error; None for anything else (a bug)."""
  if isinstance(error, (UsageError, configs.ConfigError, app.UsageError)):
    return str(error), USAGE
  if isinstance(error, (chaos.ChaosError, experiment.WorkdirLocked,
                        training.NonFiniteError, checkpointing.CheckpointError,
                        predict_errors.PredictError, compare_report.CompareError)):
    return _one_line(error), FAILED
  if isinstance(error, OSError):
    if error.filename is not None and error.strerror:
      where = f"{error.filename} -> {error.filename2}" if error.filename2 else error.filename
      return f"{where}: {error.strerror}", FAILED
    return _one_line(error), FAILED
  if isinstance(error, KeyboardInterrupt):
    return "interrupted; run the same command again to resume from the last checkpoint", \
        INTERRUPTED
  return None


def run(program: str, main: Callable[[list[str]], None], config_flag=None) -> None:
  """`app.run(main)` with `parse_flags`, input errors in one line and their exit codes.

  Args:
    program: the name the error lines start with ("liverjax.main").
    main: the absl main, (argv) -> None.
    config_flag: the `config_flags.DEFINE_config_file` holder, loaded while
      parsing; None for a program without a config (`liverjax.predict`).
  """
  verbose = os.environ.get(TRACEBACK_ENV, "") not in ("", "0")

  def fail(error: BaseException):
    described = None if verbose else describe_error(error)
    if described is None:
      raise error
    message, code = described
    sys.stderr.write(f"{program}: {message}\n")
    sys.stderr.flush()
    sys.exit(code)

  parser = parse_flags(config_flag)

  def guarded_parse(argv):
    try:
      return parser(argv)
    except UsageError as e:
      fail(e)

  def guarded_main(argv):
    try:
      main(argv)
    except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
      fail(e)

  app.run(guarded_main, flags_parser=guarded_parse)
