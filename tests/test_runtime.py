"""Tests for liverjax/runtime.py: the XLA compile options and the compilation cache."""
import logging

import jax
import jax.numpy as jnp
import numpy as np

from liverjax import runtime


def _fresh_options(monkeypatch, **env):
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  runtime.compiler_options.cache_clear()
  try:
    return runtime.compiler_options()
  finally:
    runtime.compiler_options.cache_clear()


def test_cpu_compiler_options_are_set_and_accepted(monkeypatch):
  monkeypatch.delenv("LIVERJAX_XLA_CPU_DEFAULTS", raising=False)
  monkeypatch.setenv("XLA_FLAGS", "")
  options = _fresh_options(monkeypatch)
  assert jax.default_backend() == "cpu"
  assert options == runtime.CPU_COMPILER_OPTIONS
  # A program compiled with them gives the same convolution as XLA's default kernels.
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 3, 4)), jnp.float32)
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(jax.jit(conv, compiler_options=options)(x, w),
                             jax.jit(conv)(x, w), rtol=1e-5, atol=1e-5)


def test_compiler_options_step_aside_for_the_user(monkeypatch):
  assert _fresh_options(monkeypatch, LIVERJAX_XLA_CPU_DEFAULTS="0") == {}
  monkeypatch.delenv("LIVERJAX_XLA_CPU_DEFAULTS")
  name = next(iter(runtime.CPU_COMPILER_OPTIONS))
  assert _fresh_options(monkeypatch, XLA_FLAGS=f"--{name}=LIBRARY_FUSION_TYPE_REDUCE") == {}


def test_compilation_cache_dir_follows_the_variable_then_jax_then_the_cache_dir(monkeypatch):
  monkeypatch.delenv(runtime.COMPILATION_CACHE_ENV, raising=False)
  monkeypatch.setenv("HOME_FOR_TEST", "/data/x")
  before = jax.config.jax_compilation_cache_dir
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    assert runtime.compilation_cache_dir("/data/cache") == "/data/cache/jax_compilation_cache"
    jax.config.update("jax_compilation_cache_dir", "/set/by/jax")
    assert runtime.compilation_cache_dir("/data/cache") == "/set/by/jax"
    monkeypatch.setenv(runtime.COMPILATION_CACHE_ENV, "$HOME_FOR_TEST/jc")
    assert runtime.compilation_cache_dir("/data/cache") == "/data/x/jc"
    for off in ("0", "off", "False"):
      monkeypatch.setenv(runtime.COMPILATION_CACHE_ENV, off)
      assert runtime.compilation_cache_dir("/data/cache") is None
  finally:
    jax.config.update("jax_compilation_cache_dir", before)


_CACHE_OPTIONS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
                  "jax_persistent_cache_min_compile_time_secs", "jax_compilation_cache_max_size")


def test_setup_compilation_cache_makes_the_folder_locks_it_and_logs_it(
    monkeypatch, tmp_path, caplog):
  folder = tmp_path / "user" / "cache"
  monkeypatch.setenv(runtime.COMPILATION_CACHE_ENV, str(folder))
  before = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
  caplog.set_level(logging.INFO, logger="absl")
  try:
    assert runtime.setup_compilation_cache("/unused") == str(folder)
    assert folder.is_dir()
    assert jax.config.jax_enable_compilation_cache
    assert jax.config.jax_compilation_cache_dir == str(folder)
    # A finite size is what makes JAX take its file lock (concurrent runs).
    assert jax.config.jax_compilation_cache_max_size == runtime.COMPILATION_CACHE_MAX_BYTES
    assert f"JAX compilation cache: {folder} " in caplog.text, caplog.text
  finally:
    for name, value in before.items():
      jax.config.update(name, value)


def test_setup_compilation_cache_off_disables_it_and_leaves_the_folder_alone(
    monkeypatch, tmp_path, caplog):
  monkeypatch.setenv(runtime.COMPILATION_CACHE_ENV, "off")
  before = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
  caplog.set_level(logging.INFO, logger="absl")
  try:
    assert runtime.setup_compilation_cache(str(tmp_path)) is None
    assert not jax.config.jax_enable_compilation_cache
    assert jax.config.jax_compilation_cache_dir == before["jax_compilation_cache_dir"]
    assert not (tmp_path / runtime.COMPILATION_CACHE_SUBDIR).exists()
    assert "JAX compilation cache: off" in caplog.text, caplog.text
  finally:
    for name, value in before.items():
      jax.config.update(name, value)
