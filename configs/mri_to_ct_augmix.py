"""MRI -> CT with AugMix on the MRI training slices."""
from configs import mri_to_ct


def get_config():
  config = mri_to_ct.get_config()
  config.augment.domain = False
  config.augment.augmix = True
  return config
