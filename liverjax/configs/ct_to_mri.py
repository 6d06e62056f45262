"""CT -> MR baseline: train on CT slices, evaluate on CT and MR test patients.

The same as `configs/unet.py:ct_to_mr` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("ct_to_mr")
