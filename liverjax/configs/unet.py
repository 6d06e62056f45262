"""The U-Net experiments, defined once: `--config=configs/unet.py:<direction>[,<experiment>]`.

  direction   ct_to_mr | mr_to_ct (cross-domain) | ct_to_ct | mr_to_mr; every run
              is evaluated on the CT and MR test patients
  experiment  a key of EXPERIMENTS (default "baseline")

E.g. `python -m liverjax.main --config=configs/unet.py:ct_to_mr,domain+augmix`.
The named files (`configs/ct_to_mri_augmix.py`, ...) are these variants, and
the study (`liverjax.study`) runs them with `apply_experiment`.
"""
from __future__ import annotations

import ml_collections

from liverjax.configs import default

# Every U-Net experiment, per direction: name -> what it switches on.
EXPERIMENTS = {
    "baseline": dict(),
    "domain": dict(domain=True),
    "augmix": dict(augmix=True),
    "domain+augmix": dict(domain=True, augmix=True),
    "cyclegan": dict(cyclegan=True),
    "cyclegan+augmix": dict(cyclegan=True, augmix=True),
}
# Direction -> (source domain, domain it is meant to transfer to).
DIRECTIONS = {"ct_to_mr": ("ct", "mr"), "mr_to_ct": ("mr", "ct"),
              "ct_to_ct": ("ct", "ct"), "mr_to_mr": ("mr", "mr")}
# Where `configs/cyclegan.py` writes the translator by default.
CYCLEGAN_WORKDIR = "workdir/cyclegan"


def apply_experiment(config: ml_collections.ConfigDict, direction: str, experiment: str,
                     cyclegan_workdir: str | None = CYCLEGAN_WORKDIR
                     ) -> ml_collections.ConfigDict:
  """Sets `config` (in place) up for one U-Net experiment; returns it.

  Args:
    config: a config with the sections of `default.get_config()`.
    direction: a key of DIRECTIONS.
    experiment: a key of EXPERIMENTS.
    cyclegan_workdir: the trained CycleGAN for the "cyclegan" experiments.

  Returns:
    `config`, with experiment "segmentation", `data.source`, `data.targets`
    (CT and MR), `augment.domain` / `augment.augmix` and
    `translate.cyclegan_workdir` (None unless the experiment uses the CycleGAN).
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"unknown direction {direction!r}; expected one of {list(DIRECTIONS)}")
  if experiment not in EXPERIMENTS:
    raise ValueError(f"unknown experiment {experiment!r}; expected one of "
                     f"{list(EXPERIMENTS)}")
  switches = EXPERIMENTS[experiment]
  config.experiment = "segmentation"
  config.data.source = DIRECTIONS[direction][0]
  config.data.targets = ("ct", "mr")
  config.augment.domain = bool(switches.get("domain", False))
  config.augment.augmix = bool(switches.get("augmix", False))
  config.translate.cyclegan_workdir = (str(cyclegan_workdir) if switches.get("cyclegan")
                                       else None)
  return config


def get_config(arg: str = "ct_to_mr") -> ml_collections.ConfigDict:
  """The config of `<direction>[,<experiment>]` (see the module docstring)."""
  direction, _, experiment = arg.partition(",")
  return apply_experiment(default.get_config(), direction.strip(),
                          experiment.strip() or "baseline")
