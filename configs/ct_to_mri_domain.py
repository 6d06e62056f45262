"""CT -> MRI with the CT<->MRI domain transformation on the CT training slices."""
from configs import ct_to_mri


def get_config():
  config = ct_to_mri.get_config()
  config.augment.domain = True
  config.augment.augmix = False
  return config
