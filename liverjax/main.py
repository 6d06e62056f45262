"""Runs one experiment: `python -m liverjax.main --config=configs/mri_to_ct.py`.

Flags:
  --config       an ml_collections config file (`configs/*.py`, or from any
                 folder the installed file's name: `--config=mri_to_ct`,
                 `--config=unet.py:ct_to_mr,augmix`); any field can be overridden,
                 e.g. --config.train.steps=1000 --config.data.root=/data/CHAOS_Train_Sets
  --workdir      where checkpoints, metrics and figures go (default: workdir/<config name>)
  --mode         train (train, then evaluate the best checkpoint) | evaluate |
                 checkpoint_curve (every kept checkpoint on the test patients)
  --distributed  call jax.distributed.initialize() (multi-host); also done when
                 JAX_COORDINATOR_ADDRESS is set

The config is checked (`liverjax.config_check`) before anything is read or
compiled; input errors end the run with one line naming the field or file, and
exit code 2 (usage) or 1 (the run could not go on): see `liverjax.cli`
(LIVERJAX_TRACEBACK=1 keeps the traceback). The run holds its workdir
(`<workdir>/.lock`): a second run on it stops at once, naming the holder.
"""
import pathlib
import re
import sys

import jax
from absl import flags
from absl import logging
from ml_collections import config_flags

from liverjax import cli
from liverjax import config_check
from liverjax import configs
from liverjax import experiment
from liverjax import runtime

DEFAULT_CONFIG = str(configs.DIRECTORY / "default.py")
if __name__ == "__main__":  # before the config flag is defined: it reads sys.argv then
  sys.argv = cli.prepare_argv(sys.argv, DEFAULT_CONFIG)

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "Experiment configuration file.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default workdir/<config name>).")
_MODE = flags.DEFINE_enum(
    "mode", "train", list(experiment.MODES),
    "What to run: train (then evaluate), evaluate, or checkpoint_curve (every kept U-Net "
    "checkpoint on the test patients).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Initialise jax.distributed (multi-host runs).")


def default_workdir(config_value: str) -> str:
  """workdir/<config file stem>[_<arg>]: `configs/mri_to_ct.py` -> workdir/mri_to_ct,
  `unet.py:ct_to_mr,augmix` -> workdir/unet_ct_to_mr_augmix."""
  path, _, arg = config_value.partition(":")
  name = pathlib.Path(path).stem + (f"_{arg}" if arg else "")
  return str(pathlib.Path("workdir") / re.sub(r"[^A-Za-z0-9_.-]+", "_", name))


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  config_check.check(config)
  if config.experiment == "cyclegan" and _MODE.value != "train":
    raise cli.UsageError(f"--mode={_MODE.value} is for U-Net experiments; a CycleGAN run reports "
                         "its translation quality when it trains")
  runtime.setup_process(_DISTRIBUTED.value, cache_dir=config.data.cache_dir)
  config_check.check_devices(config, jax.device_count())
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
  logging.info("JAX %s: process %d of %d, %d devices (%s); workdir %s", jax.__version__,
               jax.process_index(), jax.process_count(), jax.device_count(),
               jax.devices()[0].platform, workdir)
  logging.info("config:\n%s", config)
  experiment.run(config, workdir, _MODE.value)


if __name__ == "__main__":
  cli.run("liverjax.main", main, _CONFIG)
