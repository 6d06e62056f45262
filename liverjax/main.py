"""Runs one experiment: `python -m liverjax.main --config=configs/mri_to_ct.py`.

Flags:
  --config       an ml_collections config file (configs/*.py); any field can be
                 overridden, e.g. --config.train.steps=1000 --config.data.root=/data/CHAOS_Train_Sets
  --workdir      where checkpoints, metrics and figures go (default: workdir/<config name>)
  --mode         train (train, then evaluate the best checkpoint) | evaluate
  --distributed  call jax.distributed.initialize() (multi-host); also done when
                 JAX_COORDINATOR_ADDRESS is set
"""
import pathlib

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from liverjax import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "Experiment configuration file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default workdir/<config name>).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Initialise jax.distributed (multi-host runs).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runtime.setup_process(_DISTRIBUTED.value)
  import jax  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  workdir = _WORKDIR.value or str(
      pathlib.Path("workdir") / pathlib.Path(flags.FLAGS["config"].config_filename).stem)
  logging.info("JAX %s: process %d of %d, %d devices (%s); workdir %s", jax.__version__,
               jax.process_index(), jax.process_count(), jax.device_count(),
               jax.devices()[0].platform, workdir)
  logging.info("config:\n%s", config)
  if config.experiment == "segmentation":
    from liverjax import train, evaluate  # pylint: disable=g-import-not-at-top,multiple-imports
    if _MODE.value == "train":
      train.train_and_evaluate(config, workdir)
    else:
      evaluate.evaluate_experiment(config, workdir)
  elif config.experiment == "cyclegan":
    from liverjax import train_cyclegan  # pylint: disable=g-import-not-at-top
    train_cyclegan.train_and_evaluate(config, workdir)
  else:
    raise app.UsageError(f"config.experiment={config.experiment!r}: expected "
                         "'segmentation' or 'cyclegan'")


if __name__ == "__main__":
  app.run(main)
