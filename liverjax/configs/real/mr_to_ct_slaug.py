"""Real protocol, MR -> CT with SLAug (global + per-organ location-scale, saliency fusion); see configs/real/__init__.py RECIPES."""
from liverjax.configs import real


def get_config():
  return real.get_real_config("mr", "slaug")
