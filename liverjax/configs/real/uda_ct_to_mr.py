"""Real protocol, CT -> MR with unlabelled MR scans (self-training; configs/real get_uda_config).

The development T2 patients are halved by patient: half adapt (used without labels), half test.
With `--config.data.mr.root=<other T2 patients>` all development T2 scans adapt.
"""
from liverjax.configs import real


def get_config():
  return real.get_uda_config("ct")
