"""MRI -> CT with the domain transformation followed by AugMix on the MRI training slices."""
from configs import mri_to_ct


def get_config():
  config = mri_to_ct.get_config()
  config.augment.domain = True
  config.augment.augmix = True
  return config
