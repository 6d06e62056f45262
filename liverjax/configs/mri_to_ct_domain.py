"""MR -> CT with the CT<->MRI domain transformation.

The same as `configs/unet.py:mr_to_ct,domain` (the experiments are defined there).
"""
from liverjax.configs import unet


def get_config():
  return unet.get_config("mr_to_ct,domain")
