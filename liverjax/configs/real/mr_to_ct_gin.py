"""Real protocol, MR -> CT with GIN (random shallow conv nets); see configs/real/__init__.py RECIPES."""
from liverjax.configs import real


def get_config():
  return real.get_real_config("mr", "gin")
