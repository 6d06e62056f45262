"""Real protocol, CT -> MR with the best augmentation recipe (configs/real/__init__.py BEST)."""
from liverjax.configs import real


def get_config():
  return real.get_best_config("ct")
