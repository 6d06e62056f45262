"""MR -> CT with the CycleGAN-translated slices plus AugMix."""
from configs import mri_to_ct_cyclegan


def get_config():
  config = mri_to_ct_cyclegan.get_config()
  config.augment.augmix = True
  return config
