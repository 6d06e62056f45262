"""Runs one experiment: `python -m liverjax.main --config=configs/mri_to_ct.py`.

Flags:
  --config       an ml_collections config file (`configs/*.py`, or from any
                 folder the installed file's name: `--config=mri_to_ct`,
                 `--config=unet.py:ct_to_mr,augmix`); any field can be overridden,
                 e.g. --config.train.steps=1000 --config.data.root=/data/CHAOS_Train_Sets
  --workdir      where checkpoints, metrics and figures go (default: workdir/<config name>)
  --mode         train (train, then evaluate the best checkpoint) | evaluate
  --distributed  call jax.distributed.initialize() (multi-host); also done when
                 JAX_COORDINATOR_ADDRESS is set
"""
import pathlib
import re
import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from liverjax import configs
from liverjax import experiment
from liverjax import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(configs.DIRECTORY / "default.py"), "Experiment configuration file.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default workdir/<config name>).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "What to run.")
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
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runtime.setup_process(_DISTRIBUTED.value)
  config = _CONFIG.value
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
  logging.info("JAX %s: process %d of %d, %d devices (%s); workdir %s", jax.__version__,
               jax.process_index(), jax.process_count(), jax.device_count(),
               jax.devices()[0].platform, workdir)
  logging.info("config:\n%s", config)
  if config.experiment not in experiment.EXPERIMENTS:
    raise app.UsageError(f"config.experiment={config.experiment!r}: expected one of "
                         f"{experiment.EXPERIMENTS}")
  if config.experiment == "cyclegan" and _MODE.value != "train":
    raise app.UsageError("--mode=evaluate is for U-Net experiments; a CycleGAN run reports "
                         "its translation quality when it trains")
  experiment.run(config, workdir, _MODE.value)


if __name__ == "__main__":
  sys.argv = configs.resolve_argv(sys.argv)
  app.run(main)
