"""MR -> CT with the CycleGAN-translated slices plus AugMix.

The same as `configs/unet.py:mr_to_ct,cyclegan+augmix` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("mr_to_ct,cyclegan+augmix")
