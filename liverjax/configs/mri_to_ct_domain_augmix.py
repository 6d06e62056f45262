"""MR -> CT with the domain transformation and AugMix.

The same as `configs/unet.py:mr_to_ct,domain+augmix` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("mr_to_ct,domain+augmix")
