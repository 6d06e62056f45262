"""MRI -> CT with the CT<->MRI domain transformation on the MRI training slices."""
from configs import mri_to_ct


def get_config():
  config = mri_to_ct.get_config()
  config.augment.domain = True
  config.augment.augmix = False
  return config
