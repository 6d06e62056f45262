"""Real protocol, CT -> MR with the domain transformation followed by AugMix."""
from liverjax.configs.real import ct_to_mr


def get_config():
  config = ct_to_mr.get_config()
  config.augment.domain = True
  config.augment.augmix = True
  return config
