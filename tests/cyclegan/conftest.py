"""Shared by the CycleGAN tests: one tiny CycleGAN (4 channels, 1 residual block, 2-layer
PatchGAN, 32 px, pool of 4) compiled once for this test package (the compiled step and init are
cached per setting, so the end-to-end test reuses them), and a checkpoint of it."""
import jax
import numpy as np
import pytest

from liverjax import checkpointing
from liverjax import runtime
from liverjax.cyclegan import state as cg_state
from tests.conftest import make_tiny_config

POOL = 4


def tiny_cyclegan_config(tmp_path):
  config = make_tiny_config(tmp_path)
  cg = config.cyclegan
  cg.generator_features = 4
  cg.generator_blocks = 1
  cg.discriminator_features = 4
  cg.discriminator_layers = 2
  cg.pool_size = POOL
  cg.batch_size = 8
  cg.learning_rate = 2e-3
  cg.steps = 3
  cg.log_every = 2
  cg.sample_every = 2
  cg.checkpoint_every = 2
  cg.sample_slices = 2
  config.data.use_tf = False
  return config


def toy_batches(n=8, size=32, seed=0):
  """Unpaired toy 'CT' and 'MR' batches: a body ellipse with a liver disk, with
  different contrasts (CT: liver brighter than the body; MR: darker)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]

  def make(body_value, liver_value):
    out = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
      cy, cx = rng.integers(12, size - 12, 2)
      body = ((yy - size / 2) / 13) ** 2 + ((xx - size / 2) / 11) ** 2 <= 1
      liver = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(3, 6) ** 2
      out[i, body, 0] = body_value
      out[i, liver & body, 0] = liver_value
    return np.clip(out + rng.normal(0, 0.02, out.shape), 0, 1).astype(np.float32)

  return make(0.4, 0.7), make(0.8, 0.3)


@pytest.fixture(scope="package")
def setup(tmp_path_factory):
  """(config, mesh, graphs, txs, host copy of the initial state, compiled step)."""
  config = tiny_cyclegan_config(tmp_path_factory.mktemp("cyclegan"))
  mesh = runtime.create_mesh()
  graphs, state, txs = cg_state.create_cyclegan_state(config, mesh, runtime.prng_key(config, 0))
  step_fn = cg_state.make_cyclegan_step(config, graphs, txs, mesh)
  return config, mesh, graphs, txs, jax.device_get(state), step_fn


def fresh_state(setup):
  _, mesh, _, _, host_state, _ = setup
  return jax.device_put(host_state, runtime.replicated_sharding(mesh))


def device_batches(mesh, seed=0):
  sharding = runtime.batch_sharding(mesh)
  return tuple(jax.device_put(b, sharding) for b in toy_batches(seed=seed))


@pytest.fixture(scope="package")
def trained(setup, tmp_path_factory):
  """A state after a few steps, saved as a CycleGAN checkpoint: (state, workdir)."""
  config, mesh, _, _, _, step_fn = setup
  state = fresh_state(setup)
  ct, mr = device_batches(mesh)
  for i in range(3):
    state, _ = step_fn(state, ct, mr, runtime.prng_key(config, i), np.float32(2e-3))
  workdir = tmp_path_factory.mktemp("cyclegan_ckpt")
  manager = checkpointing.create_manager(workdir, keep=1, best_metric=None)
  checkpointing.save(manager, 3, state, config.to_dict())
  return state, workdir
