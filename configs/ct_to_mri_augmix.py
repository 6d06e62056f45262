"""CT -> MRI with AugMix on the CT training slices."""
from configs import ct_to_mri


def get_config():
  config = ct_to_mri.get_config()
  config.augment.domain = False
  config.augment.augmix = True
  return config
