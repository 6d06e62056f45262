"""Real protocol, MR -> CT: train on the real MR scans, evaluate on every real CT patient.

See configs/real/__init__.py for the data (../shared/data/real_dev + chaos_ct_sample).
"""
from liverjax.configs import real


def get_config():
  return real.get_real_config("mr")
