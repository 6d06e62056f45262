"""Process set-up shared by the command-line entry points (main, study)."""
import os

from absl import logging


class _QuietLibraries:
  """Drops INFO records of chatty libraries (orbax logs every file it writes)."""

  def filter(self, record) -> bool:
    return record.levelno > 20 or not any(
        part in record.pathname for part in ("/orbax/", "/jax/_src/"))


def setup_process(distributed: bool = False) -> None:
  """Hides accelerators from TensorFlow (input pipeline only), starts
  `jax.distributed` when asked or when JAX_COORDINATOR_ADDRESS is set, and
  quiets library INFO logs. Call once, first thing in `main`."""
  from liverjax import input_pipeline  # pylint: disable=g-import-not-at-top
  input_pipeline.tensorflow_or_none()
  import jax  # pylint: disable=g-import-not-at-top
  if distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  logging.get_absl_handler().addFilter(_QuietLibraries())
