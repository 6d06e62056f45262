"""Process set-up, the device mesh, shardings and PRNG keys: what every layer shares.

Leaf module: imports nothing from liverjax. The entry points (main, study, predict) call
`setup_process` first, which also turns on JAX's persistent compilation cache
(`setup_compilation_cache`); trainers and pipelines take the mesh of `create_mesh`
and lay arrays out with `batch_sharding` / `replicated_sharding`.
"""
from __future__ import annotations

import functools
import importlib.util
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


# JAX's persistent compilation cache, shared by every run of this user (`setup_compilation_cache`).
# LIVERJAX_COMPILATION_CACHE=/path puts it elsewhere, =0 turns it off.
COMPILATION_CACHE_ENV = "LIVERJAX_COMPILATION_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/liverjax"  # `config.data.cache_dir`'s default
COMPILATION_CACHE_SUBDIR = "jax_compilation_cache"
# Programs that compile faster than this are not written (JAX's default is 1 s): the U-Net's
# train steps take 3-14 s on 2 CPU cores, its evaluation programs ~1 s, the augmentation's and
# the metrics' small programs 0.1-1 s; below ~0.2 s loading an entry saves little.
COMPILATION_CACHE_MIN_COMPILE_SECS = 0.2
# A finite size makes JAX evict the least recently used entries, and take a file lock
# (the `filelock` package) around every read and write of the cache: two runs that compile
# the same program at once then never write one file together. Without a size JAX writes
# entries in place, unlocked.
COMPILATION_CACHE_MAX_BYTES = 4 * 1024**3
_OFF = ("0", "off", "false", "no", "none")


def compilation_cache_dir(cache_dir: str = DEFAULT_CACHE_DIR) -> str | None:
  """Where `setup_compilation_cache` puts JAX's compilation cache, or None (off).

  Args:
    cache_dir: the data cache folder (`config.data.cache_dir`).

  Returns:
    LIVERJAX_COMPILATION_CACHE when set (None when it is 0 / off / false / no / none);
    else a folder already given to JAX (`JAX_COMPILATION_CACHE_DIR`, or
    `jax_compilation_cache_dir` set by the caller, as the tests do); else
    `<cache_dir>/jax_compilation_cache`. Absolute, with ~ and $VARS expanded.
  """
  value = os.environ.get(COMPILATION_CACHE_ENV, "").strip()
  if value.lower() in _OFF:
    return None
  path = value or jax.config.jax_compilation_cache_dir or os.path.join(
      cache_dir, COMPILATION_CACHE_SUBDIR)
  return os.path.abspath(os.path.expandvars(os.path.expanduser(path)))


def setup_compilation_cache(cache_dir: str = DEFAULT_CACHE_DIR) -> str | None:
  """Turns on JAX's persistent compilation cache at `compilation_cache_dir(cache_dir)`
  (off: disables it), and logs where it is. Call before the first compilation: JAX opens
  the cache once per process.

  A second run of a config loads its compiled programs instead of compiling them again
  (docs/results.md, "Speed: inference on the CPU, and the compilation cache"). Safe with
  concurrent runs: entries are read and written under JAX's file lock (needs the `filelock`
  package; without it the cache stays on, unlocked, and the log says so), and a key names
  everything that changes a program (its HLO, the compile options, jax/jaxlib, the device).

  Returns:
    The cache folder (created), or None when it is off or cannot be created.
  """
  path = compilation_cache_dir(cache_dir)
  if path is None:
    jax.config.update("jax_enable_compilation_cache", False)
    logging.info("JAX compilation cache: off (%s=%s)", COMPILATION_CACHE_ENV,
                 os.environ.get(COMPILATION_CACHE_ENV))
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    logging.warning("JAX compilation cache: off, %s cannot be created (%s); set %s=<folder>",
                    path, e.strerror or e, COMPILATION_CACHE_ENV)
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    COMPILATION_CACHE_MIN_COMPILE_SECS)
  locked = importlib.util.find_spec("filelock") is not None
  if locked:
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)
  logging.info("JAX compilation cache: %s (programs compiling in %.1f s or more; %s; %s=0 "
               "turns it off)", path, COMPILATION_CACHE_MIN_COMPILE_SECS,
               f"up to {COMPILATION_CACHE_MAX_BYTES / 1024**3:.0f} GiB, file-locked" if locked
               else "unlocked and unbounded: pip install filelock for concurrent runs",
               COMPILATION_CACHE_ENV)
  return path


def setup_process(distributed: bool = False, cache_dir: str = DEFAULT_CACHE_DIR) -> None:
  """Hides accelerators from TensorFlow (input pipeline only), starts
  `jax.distributed` when asked or when JAX_COORDINATOR_ADDRESS is set, quiets library
  INFO logs, and turns on the persistent compilation cache under `cache_dir`
  (`setup_compilation_cache`). Call once, first thing in `main`."""
  tensorflow_or_none()
  if distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  logging.get_absl_handler().addFilter(_QuietLibraries())
  setup_compilation_cache(cache_dir)


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
