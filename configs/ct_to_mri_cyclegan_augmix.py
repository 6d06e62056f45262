"""CT -> MR with the CycleGAN-translated slices plus AugMix."""
from configs import ct_to_mri_cyclegan


def get_config():
  config = ct_to_mri_cyclegan.get_config()
  config.augment.augmix = True
  return config
