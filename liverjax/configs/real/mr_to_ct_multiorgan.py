"""Real protocol, MR -> CT trained on the liver, spleen and both kidneys (one sigmoid channel each;
the liver channel is evaluated). CT organ labels: BTCV (the CHAOS CT patient has liver only, its
other channels are masked out); MR: the CHAOS T2-SPIR labels."""
from liverjax.configs.real import mr_to_ct


def get_config():
  config = mr_to_ct.get_config()
  config.model.organs = ("liver", "spleen", "kidney_r", "kidney_l")
  return config
