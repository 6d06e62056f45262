"""Real protocol, CT -> MR: train on the real CT scans, evaluate on every real MR patient.

See configs/real/__init__.py for the data (../shared/data/real_dev + chaos_ct_sample).
"""
from liverjax.configs import real


def get_config():
  return real.get_real_config("ct")
