"""Real protocol, CT -> MR with test-time histogram matching: every target-domain test volume is
matched to the source domain's training-slice body histogram before prediction (eval.intensity)."""
from liverjax.configs.real import ct_to_mr


def get_config():
  config = ct_to_mr.get_config()
  config.eval.intensity = "histogram_match"
  return config
