"""CycleGAN training: losses, the image pool, the sharded step, checkpoints, translation.

One tiny CycleGAN (4 channels, 1 residual block, 2-layer PatchGAN, 32 px, pool of 4) is
compiled once for the module: the compiled step and init are cached per setting, so the
end-to-end test reuses them.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax import checkpointing
from liverjax import input_pipeline
from liverjax import metric_writer
from liverjax import train
from liverjax import train_cyclegan as tc
from tests.conftest import make_tiny_config

POOL = 4


def _tiny_cyclegan_config(tmp_path):
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


def _toy_batches(n=8, size=32, seed=0):
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


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """(config, mesh, graphs, txs, host copy of the initial state, compiled step)."""
  config = _tiny_cyclegan_config(tmp_path_factory.mktemp("cyclegan"))
  mesh = input_pipeline.create_mesh()
  graphs, state, txs = tc.create_cyclegan_state(config, mesh, train.prng_key(config, 0))
  step_fn = tc.make_cyclegan_step(config, graphs, txs, mesh)
  return config, mesh, graphs, txs, jax.device_get(state), step_fn


def _fresh_state(setup):
  _, mesh, _, _, host_state, _ = setup
  return jax.device_put(host_state, input_pipeline.replicated_sharding(mesh))


def _device_batches(mesh, seed=0):
  sharding = input_pipeline.batch_sharding(mesh)
  return tuple(jax.device_put(b, sharding) for b in _toy_batches(seed=seed))


@pytest.fixture(scope="module")
def trained(setup, tmp_path_factory):
  """A state after a few steps, saved as a CycleGAN checkpoint: (state, workdir)."""
  config, mesh, _, _, _, step_fn = setup
  state = _fresh_state(setup)
  ct, mr = _device_batches(mesh)
  for i in range(3):
    state, _ = step_fn(state, ct, mr, train.prng_key(config, i), np.float32(2e-3))
  workdir = tmp_path_factory.mktemp("cyclegan_ckpt")
  manager = checkpointing.create_manager(workdir, keep=1, best_metric=None)
  checkpointing.save(manager, 3, state, config.to_dict())
  return state, workdir


def test_state_shapes_and_one_step(setup):
  config, mesh, graphs, _, host_state, step_fn = setup
  state = _fresh_state(setup)
  assert state.pool_a.images.shape == (POOL, 32, 32, 1)
  assert state.pool_b.images.shape == (POOL, 32, 32, 1)
  assert int(state.pool_a.count) == 0 and int(state.nonfinite_step) == -1
  # G and F (and D_A, D_B) share a structure but not their weights.
  assert jax.tree.structure(state.g) == jax.tree.structure(state.f)
  assert not np.allclose(jax.tree.leaves(host_state.g)[0], jax.tree.leaves(host_state.f)[0])
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_fully_replicated
  ct, mr = _device_batches(mesh)
  old_leaf = jax.tree.leaves(state.g)[0]
  state, metrics = step_fn(state, ct, mr, train.prng_key(config, 0), np.float32(2e-4))
  assert old_leaf.is_deleted()  # the state is donated
  metrics = jax.device_get(metrics)
  assert set(tc.METRIC_KEYS) <= set(metrics)
  assert all(np.isfinite(v) for v in metrics.values())
  assert metrics["finite"] == 1.0
  np.testing.assert_allclose(metrics["total_g"], metrics["g_adv"] + metrics["f_adv"]
                             + metrics["cycle"] + metrics["identity"], rtol=1e-5)
  assert int(state.step) == 1
  assert int(state.pool_a.count) == POOL and int(state.pool_b.count) == POOL
  translate = tc.make_translate_fn(graphs.generator)
  out = np.asarray(translate(state.g, ct))
  assert out.shape == (8, 32, 32, 1) and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0


def test_steps_on_a_fixed_batch_lower_the_losses(setup):
  """GAN losses need not fall monotonically; on one fixed batch the cycle term and the
  generator total fall over a few steps, and the discriminators (random at first, then
  seeing near-constant fakes) quickly get better."""
  config, mesh, _, _, _, step_fn = setup
  state = _fresh_state(setup)
  ct, mr = _device_batches(mesh)
  history = []
  for i in range(12):
    state, metrics = step_fn(state, ct, mr, train.prng_key(config, i), np.float32(2e-3))
    history.append(jax.device_get(metrics))
  first = lambda k: history[0][k]  # noqa: E731
  last = lambda k: np.mean([h[k] for h in history[-3:]])  # noqa: E731
  assert all(h["finite"] == 1.0 for h in history)
  assert last("cycle") < 0.6 * first("cycle"), [h["cycle"] for h in history]
  assert last("total_g") < 0.7 * first("total_g"), [h["total_g"] for h in history]
  assert last("d_a") + last("d_b") < 0.8 * (first("d_a") + first("d_b"))


def test_identity_generators_have_zero_cycle_and_identity_loss():
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.uniform(size=(2, 8, 8, 1)), jnp.float32)
  b = jnp.asarray(rng.uniform(size=(2, 8, 8, 1)), jnp.float32)
  ident = lambda x: x  # noqa: E731
  fooled = lambda x: jnp.ones((x.shape[0], 2, 2, 1))  # noqa: E731  # D says "real"
  total, terms, (fake_a, fake_b) = tc.generator_losses(
      ident, ident, fooled, fooled, a, b, lambda_cycle=10.0, lambda_identity=0.5)
  assert float(terms["cycle"]) == 0.0 and float(terms["identity"]) == 0.0
  assert float(total) == 0.0
  np.testing.assert_array_equal(fake_b, a)
  np.testing.assert_array_equal(fake_a, b)
  # A constant generator: the cycle term is lambda * (mean|0.5 - a| + mean|0.5 - b|).
  half = lambda x: jnp.full_like(x, 0.5)  # noqa: E731
  _, terms, _ = tc.generator_losses(half, half, fooled, fooled, a, b, lambda_cycle=10.0,
                                    lambda_identity=0.0)
  expected = 10.0 * (np.abs(0.5 - a).mean() + np.abs(0.5 - b).mean())
  np.testing.assert_allclose(terms["cycle"], expected, rtol=1e-6)
  assert float(terms["identity"]) == 0.0
  # A perfect LSGAN discriminator (logit 1 on real, 0 on fake) has zero loss.
  ident_d = lambda x: x  # noqa: E731
  ones, zeros = jnp.ones((2, 4, 4, 1)), jnp.zeros((2, 4, 4, 1))
  assert float(tc.discriminator_loss(ident_d, ones, zeros)) == 0.0
  np.testing.assert_allclose(tc.discriminator_loss(ident_d, zeros, ones), 1.0)  # all wrong


def _ids(images):
  return [int(round(float(x))) for x in np.asarray(images)[:, 0, 0, 0]]


def test_image_pool():
  query = jax.jit(tc.pool_query)
  pool = tc.empty_pool(POOL, 4)
  next_id = 1

  def batch(n=2):
    nonlocal next_id
    ids = list(range(next_id, next_id + n))
    next_id += n
    return jnp.asarray(np.array(ids, np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1),
                                                                              np.float32))
  # Filling: images are stored in order and returned unchanged.
  for i in range(POOL // 2):
    images = batch()
    pool, out = query(pool, images, jax.random.key(i))
    np.testing.assert_array_equal(out, images)
  assert int(pool.count) == POOL
  assert sorted(_ids(pool.images)) == list(range(1, POOL + 1))
  # Full: each image is swapped for a stored one with probability 1/2.
  stored = set(_ids(pool.images))
  returned_stored, mixed_batches, total = 0, 0, 0
  for i in range(150):
    images = batch()
    pool, out = query(pool, images, jax.random.key(100 + i))
    kinds = []
    for new, got in zip(_ids(images), _ids(out)):
      if got == new:
        kinds.append("new")
      else:
        assert got in stored, (got, stored)  # a stored image, handed out once ...
        stored.remove(got)
        stored.add(new)  # ... and replaced by the new one
        kinds.append("stored")
    returned_stored += kinds.count("stored")
    mixed_batches += len(set(kinds)) == 2
    total += len(kinds)
    assert sorted(_ids(pool.images)) == sorted(stored)
  assert int(pool.count) == POOL
  assert 0.4 < returned_stored / total < 0.6, returned_stored / total
  assert mixed_batches > 0
  # A pool of size 0 returns the batch.
  images = batch()
  empty, out = tc.pool_query(tc.empty_pool(0, 4), images, jax.random.key(0))
  np.testing.assert_array_equal(out, images)
  assert empty.images.shape[0] == 0


def test_learning_rate_schedule():
  from configs import default  # pylint: disable=g-import-not-at-top
  cg = default.get_config().cyclegan
  cg.steps = 100
  schedule = tc.learning_rate_schedule(cg)
  assert schedule(0) == schedule(49) == cg.learning_rate
  np.testing.assert_allclose(schedule(75), cg.learning_rate / 2)
  assert schedule(100) == 0.0 and schedule(150) == 0.0


def test_checkpoint_round_trip(setup, trained):
  config, mesh, graphs, _, _, _ = setup
  state, workdir = trained
  x = jax.device_put(_toy_batches(seed=3)[0], input_pipeline.batch_sharding(mesh))
  translate = tc.make_translate_fn(graphs.generator)
  want_g = np.asarray(translate(state.g, x))
  want_f = np.asarray(translate(state.f, x))
  assert not np.allclose(want_g, want_f)
  # The workdir, and an explicit step folder, with a config whose architecture differs
  # (the checkpoint's own settings win).
  other = _tiny_cyclegan_config(workdir / "other")
  other.cyclegan.generator_features = 8
  for path, cfg in ((workdir, config), (workdir / "checkpoints" / "3", other)):
    ct_to_mr, mr_to_ct = tc.load_generators(path, cfg)
    np.testing.assert_array_equal(np.asarray(ct_to_mr(x)), want_g)
    np.testing.assert_array_equal(np.asarray(mr_to_ct(x)), want_f)
  with pytest.raises(FileNotFoundError):
    tc.load_generators(workdir / "nowhere", config)


def test_translate_slices(setup, trained):
  config, mesh, graphs, _, _, _ = setup
  state, workdir = trained
  images = np.concatenate(_toy_batches(n=6, seed=5))  # 12 slices: not a multiple of 8
  assert tc.translate_slices(images, config) is images  # no CycleGAN configured
  config = _tiny_cyclegan_config(workdir / "unet")
  config.augment.cyclegan_workdir = str(workdir)
  out = tc.translate_slices(images, config)
  assert out.shape == images.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0
  translate = tc.make_translate_fn(graphs.generator)
  np.testing.assert_allclose(out, np.asarray(translate(state.g, images)), atol=1e-6)  # G: CT -> MR
  config.data.source = "mr"
  out_mr = tc.translate_slices(images, config)
  np.testing.assert_allclose(out_mr, np.asarray(translate(state.f, images)), atol=1e-6)
  config.data.source = "ct"
  config.augment.cyclegan_mix = 0.5
  mixed = tc.translate_slices(images, config)
  same = np.all(mixed == images, axis=(1, 2, 3))
  assert 0 < same.sum() < len(images)
  np.testing.assert_array_equal(mixed[~same], out[~same])


def test_train_and_evaluate_end_to_end_and_resume(tmp_path):
  config = _tiny_cyclegan_config(tmp_path)
  config.cyclegan.steps = 2
  workdir = tmp_path / "work"
  results = tc.train_and_evaluate(config, str(workdir))
  assert (workdir / "samples" / "step_000002.png").stat().st_size > 0
  assert (workdir / "cyclegan.md").read_text().count("| ct to mr |") == len(results["quality"])
  saved = json.loads((workdir / "cyclegan_metrics.json").read_text())
  assert set(saved["quality"]) == {"val", "test"}
  for directions in saved["quality"].values():
    assert set(directions) == {"ct_to_mr", "mr_to_ct"}
    for q in directions.values():
      assert 0.0 <= q["wasserstein"] <= 1.0 and 0.0 <= q["intersection"] <= 1.0
      assert 0.0 <= q["cycle_l1"] <= 1.0 and q["slices"] > 0
  assert checkpointing.create_manager(workdir, best_metric=None).latest_step() == 2
  # Resume: one more step, from the checkpoint at step 2.
  config.cyclegan.steps = 3
  results = tc.train_and_evaluate(config, str(workdir))
  assert results["step"] == 3
  train_steps = [r["step"] for r in metric_writer.read_scalars(workdir) if r["split"] == "train"]
  assert train_steps == [2, 3]
