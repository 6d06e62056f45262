"""Real protocol, MR -> CT with the domain transformation followed by AugMix."""
from liverjax.configs.real import mr_to_ct


def get_config():
  config = mr_to_ct.get_config()
  config.augment.domain = True
  config.augment.augmix = True
  return config
