"""Process set-up, the device mesh, shardings and PRNG keys: what every layer shares.

Leaf module: imports nothing from liverjax. The entry points (main, study) call
`setup_process` first; trainers and pipelines take the mesh of `create_mesh`
and lay arrays out with `batch_sharding` / `replicated_sharding`.
"""
from __future__ import annotations

import functools
import os

import jax
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


class _QuietLibraries:
  """Drops INFO records of chatty libraries (orbax logs every file it writes)."""

  def filter(self, record) -> bool:
    return record.levelno > 20 or not any(
        part in record.pathname for part in ("/orbax/", "/jax/_src/"))


@functools.cache
def tensorflow_or_none():
  """Returns the `tensorflow` module with GPUs hidden from it, or None (TF is optional)."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # devices already initialised
    pass
  return tf


def setup_process(distributed: bool = False) -> None:
  """Hides accelerators from TensorFlow (input pipeline only), starts
  `jax.distributed` when asked or when JAX_COORDINATOR_ADDRESS is set, and
  quiets library INFO logs. Call once, first thing in `main`."""
  tensorflow_or_none()
  if distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  logging.get_absl_handler().addFilter(_QuietLibraries())


# XLA CPU options set on every liverjax program (`compiler_options`). The YNNPACK library
# fusions that jaxlib 0.10 uses by default for convolutions and matmuls run the U-Net train
# step ~1.2x slower on a 2-core AVX-512 CPU than XLA's own (Eigen) kernels: 240 -> 197 ms per
# 64 px batch of 16 (scripts/benchmark_vs_monai.py, docs/results.md). Same results up to
# float rounding. Set LIVERJAX_XLA_CPU_DEFAULTS=0 (or name the option in XLA_FLAGS) to keep
# XLA's own default.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def compiler_options() -> dict[str, str]:
  """The XLA compile options for `jax.jit(..., compiler_options=...)` on this backend.

  CPU_COMPILER_OPTIONS on the CPU backend when this jaxlib knows them (checked once with a
  tiny compile, so a jaxlib that dropped an option falls back to its default instead of
  failing); {} on accelerators, when LIVERJAX_XLA_CPU_DEFAULTS=0, or when XLA_FLAGS already
  names one of the options (the user's choice wins).
  """
  if jax.default_backend() != "cpu" or os.environ.get("LIVERJAX_XLA_CPU_DEFAULTS") == "0":
    return {}
  flags = os.environ.get("XLA_FLAGS", "")
  if any(name in flags for name in CPU_COMPILER_OPTIONS):
    return {}
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(1.0).compile()
  except Exception:  # pylint: disable=broad-except  (an option this jaxlib does not know)
    logging.warning("XLA CPU options %s not accepted by this jaxlib; using its defaults",
                    CPU_COMPILER_OPTIONS)
    return {}
  return dict(CPU_COMPILER_OPTIONS)


def create_mesh() -> Mesh:
  """A 1-D mesh of all devices (all processes) along the axis `data`.

  The axis is `Auto`: shardings are given at the jit boundary (batch over
  `data`, state replicated) and XLA propagates them through the model.
  """
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batch dimension split over `data`, the rest replicated."""
  return NamedSharding(mesh, P("data"))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (train states, scalars)."""
  return NamedSharding(mesh, P())


def prng_key(config, seed: int | None = None) -> jax.Array:
  """A typed PRNG key of `config.rng_impl` from `seed` (default `config.seed`).

  The default implementation is "rbg" (XLA's RngBitGenerator): threefry, JAX's
  default, compiles its unrolled hash into every program that draws random
  numbers, which costs ~1 s of XLA compile per parameter initialiser and per
  augmentation op on a small CPU. Both are deterministic for a given seed.
  """
  return jax.random.key(config.seed if seed is None else seed, impl=config.rng_impl)


def gather(x):
  """The values of a global (sharded) array, or pytree of them, on this host."""
  if jax.process_count() == 1:
    return jax.device_get(x)
  return multihost_utils.process_allgather(x, tiled=True)
