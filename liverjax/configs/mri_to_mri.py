"""MR -> MR baseline: train on MR slices, evaluate on CT and MR test patients.

The same as `configs/unet.py:mr_to_mr` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("mr_to_mr")
