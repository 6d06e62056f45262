"""Real protocol, CT -> MR with test-time histogram matching: every target-domain test volume is
matched to the source domain's training-slice body histogram before prediction (eval.intensity).
See configs/real/__init__.py RECIPES."""
from liverjax.configs import real


def get_config():
  return real.get_real_config("ct", "histmatch")
