"""Real protocol, CT -> MR with GIN-IPA (two GIN views + consistency loss); see configs/real/__init__.py RECIPES."""
from liverjax.configs import real


def get_config():
  return real.get_real_config("ct", "gin_ipa")
