"""CT -> MR with the domain transformation and AugMix.

The same as `configs/unet.py:ct_to_mr,domain+augmix` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("ct_to_mr,domain+augmix")
