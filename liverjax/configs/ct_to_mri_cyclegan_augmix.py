"""CT -> MR with the CycleGAN-translated slices plus AugMix.

The same as `configs/unet.py:ct_to_mr,cyclegan+augmix` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("ct_to_mr,cyclegan+augmix")
