"""Real protocol, MR -> CT with test-time histogram matching: every target-domain test volume is
matched to the source domain's training-slice body histogram before prediction (eval.intensity)."""
from liverjax.configs.real import mr_to_ct


def get_config():
  config = mr_to_ct.get_config()
  config.eval.intensity = "histogram_match"
  return config
