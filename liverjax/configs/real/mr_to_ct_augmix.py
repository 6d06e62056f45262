"""Real protocol, MR -> CT with AugMix on the MR training slices."""
from liverjax.configs.real import mr_to_ct


def get_config():
  config = mr_to_ct.get_config()
  config.augment.augmix = True
  return config
