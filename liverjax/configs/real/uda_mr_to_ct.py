"""Real protocol, MR -> CT with unlabelled CT scans (self-training; configs/real get_uda_config).

The development CT patients are halved by patient: half adapt (used without labels), half test.
With `--config.data.ct.root=<other CT patients>` all development CT scans adapt.
"""
from liverjax.configs import real


def get_config():
  return real.get_uda_config("mr")
