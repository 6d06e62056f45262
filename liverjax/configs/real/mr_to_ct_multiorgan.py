"""Real protocol, MR -> CT trained on the liver, spleen and both kidneys (one sigmoid channel each;
the liver channel is evaluated). CT organ labels: BTCV (the CHAOS CT patient has liver only, its
other channels are masked out); MR: the CHAOS T2-SPIR labels. See configs/real/__init__.py RECIPES."""
from liverjax.configs import real


def get_config():
  return real.get_real_config("mr", "multiorgan")
