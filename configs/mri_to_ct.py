"""MR -> CT baseline: train on MR slices, evaluate on CT and MR test patients."""
from configs import default


def get_config():
  config = default.get_config()
  config.data.source = "mr"
  config.data.targets = ("ct", "mr")
  return config
