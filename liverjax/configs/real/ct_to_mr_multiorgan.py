"""Real protocol, CT -> MR trained on the liver, spleen and both kidneys (one sigmoid channel each;
the liver channel is evaluated). CT organ labels: BTCV (the CHAOS CT patient has liver only, its
other channels are masked out); MR: the CHAOS T2-SPIR labels."""
from liverjax.configs.real import ct_to_mr


def get_config():
  config = ct_to_mr.get_config()
  config.model.organs = ("liver", "spleen", "kidney_r", "kidney_l")
  return config
