"""Real protocol, CT -> MR with AugMix on the CT training slices."""
from liverjax.configs.real import ct_to_mr


def get_config():
  config = ct_to_mr.get_config()
  config.augment.augmix = True
  return config
