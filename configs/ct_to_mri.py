"""CT -> MR baseline: train on CT slices, evaluate on CT and MR test patients."""
from configs import default


def get_config():
  config = default.get_config()
  config.data.source = "ct"
  config.data.targets = ("ct", "mr")
  return config
