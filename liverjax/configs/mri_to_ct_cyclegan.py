"""MR -> CT with the CycleGAN: the U-Net trains on the slices restyled by a trained CycleGAN (configs/cyclegan.py first).

The same as `configs/unet.py:mr_to_ct,cyclegan` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("mr_to_ct,cyclegan")
