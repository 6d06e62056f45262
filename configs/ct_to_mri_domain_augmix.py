"""CT -> MRI with the domain transformation followed by AugMix on the CT training slices."""
from configs import ct_to_mri


def get_config():
  config = ct_to_mri.get_config()
  config.augment.domain = True
  config.augment.augmix = True
  return config
