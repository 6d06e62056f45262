"""CycleGAN state and step: shapes, donation, the losses, the image pool, the schedule."""
import jax
import jax.numpy as jnp
import numpy as np

from liverjax import runtime
from liverjax.configs import default
from liverjax.cyclegan import losses
from liverjax.cyclegan import state as cg_state
from tests.cyclegan.conftest import POOL, device_batches, fresh_state


def test_state_shapes_and_one_step(setup):
  config, mesh, graphs, _, host_state, step_fn = setup
  state = fresh_state(setup)
  assert state.pool_a.images.shape == (POOL, 32, 32, 1)
  assert state.pool_b.images.shape == (POOL, 32, 32, 1)
  assert int(state.pool_a.count) == 0 and int(state.nonfinite_step) == -1
  # G and F (and D_A, D_B) share a structure but not their weights.
  assert jax.tree.structure(state.g) == jax.tree.structure(state.f)
  assert not np.allclose(jax.tree.leaves(host_state.g)[0], jax.tree.leaves(host_state.f)[0])
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_fully_replicated
  ct, mr = device_batches(mesh)
  old_leaf = jax.tree.leaves(state.g)[0]
  state, metrics = step_fn(state, ct, mr, runtime.prng_key(config, 0), np.float32(2e-4))
  assert old_leaf.is_deleted()  # the state is donated
  metrics = jax.device_get(metrics)
  assert {"g_adv", "f_adv", "cycle", "identity", "total_g", "d_a", "d_b"} <= set(metrics)
  assert all(np.isfinite(v) for v in metrics.values())
  assert metrics["finite"] == 1.0
  np.testing.assert_allclose(metrics["total_g"], metrics["g_adv"] + metrics["f_adv"]
                             + metrics["cycle"] + metrics["identity"], rtol=1e-5)
  assert int(state.step) == 1
  assert int(state.pool_a.count) == POOL and int(state.pool_b.count) == POOL
  translate = cg_state.make_translate_fn(graphs.generator)
  out = np.asarray(translate(state.g, ct))
  assert out.shape == (8, 32, 32, 1) and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0


def test_a_nonfinite_step_changes_nothing_but_the_step(setup):
  """A NaN in the CT batch: no weight, Adam moment or pool entry moves; the step is recorded."""
  config, mesh, _, _, _, step_fn = setup
  state = fresh_state(setup)
  ct, mr = device_batches(mesh)
  state, _ = step_fn(state, ct, mr, runtime.prng_key(config, 0), np.float32(2e-3))
  bad_ct = np.array(jax.device_get(ct))
  bad_ct[0, 0, 0, 0] = np.nan
  bad_ct = jax.device_put(bad_ct, runtime.batch_sharding(mesh))
  before = jax.device_get((state.g, state.f, state.d_a, state.d_b, state.gen_opt_state,
                           state.disc_opt_state, state.pool_a, state.pool_b))
  state, metrics = step_fn(state, bad_ct, mr, runtime.prng_key(config, 1), np.float32(2e-3))
  assert float(metrics["finite"]) == 0.0
  assert int(state.step) == 2 and int(state.nonfinite_step) == 2
  after = jax.device_get((state.g, state.f, state.d_a, state.d_b, state.gen_opt_state,
                          state.disc_opt_state, state.pool_a, state.pool_b))
  assert len(jax.tree.leaves(before)) == len(jax.tree.leaves(after)) > 0
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)


def test_steps_on_a_fixed_batch_lower_the_losses(setup):
  """GAN losses need not fall monotonically; on one fixed batch the cycle term and the
  generator total fall over a few steps, and the discriminators (random at first, then
  seeing near-constant fakes) quickly get better."""
  config, mesh, _, _, _, step_fn = setup
  state = fresh_state(setup)
  ct, mr = device_batches(mesh)
  history = []
  for i in range(12):
    state, metrics = step_fn(state, ct, mr, runtime.prng_key(config, i), np.float32(2e-3))
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
  total, terms, (fake_a, fake_b) = losses.generator_losses(
      ident, ident, fooled, fooled, a, b, lambda_cycle=10.0, lambda_identity=0.5)
  assert float(terms["cycle"]) == 0.0 and float(terms["identity"]) == 0.0
  assert float(total) == 0.0
  np.testing.assert_array_equal(fake_b, a)
  np.testing.assert_array_equal(fake_a, b)
  # A constant generator: the cycle term is lambda * (mean|0.5 - a| + mean|0.5 - b|).
  half = lambda x: jnp.full_like(x, 0.5)  # noqa: E731
  _, terms, _ = losses.generator_losses(half, half, fooled, fooled, a, b, lambda_cycle=10.0,
                                    lambda_identity=0.0)
  expected = 10.0 * (np.abs(0.5 - a).mean() + np.abs(0.5 - b).mean())
  np.testing.assert_allclose(terms["cycle"], expected, rtol=1e-6)
  assert float(terms["identity"]) == 0.0
  # A perfect LSGAN discriminator (logit 1 on real, 0 on fake) has zero loss.
  ident_d = lambda x: x  # noqa: E731
  ones, zeros = jnp.ones((2, 4, 4, 1)), jnp.zeros((2, 4, 4, 1))
  assert float(losses.discriminator_loss(ident_d, ones, zeros)) == 0.0
  np.testing.assert_allclose(losses.discriminator_loss(ident_d, zeros, ones), 1.0)  # all wrong


def _ids(images):
  return [int(round(float(x))) for x in np.asarray(images)[:, 0, 0, 0]]


def test_image_pool():
  query = jax.jit(cg_state.pool_query)
  pool = cg_state.empty_pool(POOL, 4)
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
  empty, out = cg_state.pool_query(cg_state.empty_pool(0, 4), images, jax.random.key(0))
  np.testing.assert_array_equal(out, images)
  assert empty.images.shape[0] == 0


def test_learning_rate_schedule():
  cg = default.get_config().cyclegan
  cg.steps = 100
  schedule = cg_state.learning_rate_schedule(cg)
  assert schedule(0) == schedule(49) == cg.learning_rate
  np.testing.assert_allclose(schedule(75), cg.learning_rate / 2)
  assert schedule(100) == 0.0 and schedule(150) == 0.0


def test_structure_term_sees_moved_edges_not_contrast():
  rng = np.random.default_rng(1)
  x = np.zeros((2, 24, 24, 1), np.float32)
  x[:, 6:16, 5:14] = 0.8  # an organ
  x += rng.normal(0, 0.01, x.shape).astype(np.float32)
  x = jnp.asarray(np.clip(x, 0, 1))
  assert float(losses.structure_loss(x, x)) == 0.0
  # Another contrast of the same anatomy (inverted and rescaled) keeps the descriptor...
  restyled = 0.9 - 0.6 * x
  same_anatomy = float(losses.structure_loss(x, restyled))
  # ...an organ moved by four pixels does not.
  moved = float(losses.structure_loss(x, jnp.roll(x, 4, axis=2)))
  assert same_anatomy < 0.2 * moved
  d = losses.mind_descriptor(x)
  assert d.shape == (2, 24, 24, len(losses.MIND_OFFSETS))
  assert float(d.min()) > 0.0 and float(d.max()) <= 1.0


def test_structure_weight_enters_the_generator_objective():
  rng = np.random.default_rng(2)
  a = jnp.asarray(rng.uniform(size=(2, 16, 16, 1)), jnp.float32)
  b = jnp.asarray(rng.uniform(size=(2, 16, 16, 1)), jnp.float32)
  flip = lambda x: jnp.flip(x, axis=2)  # noqa: E731  # keeps contrast, moves every edge
  fooled = lambda x: jnp.ones((x.shape[0], 2, 2, 1))  # noqa: E731
  kw = dict(lambda_cycle=0.0, lambda_identity=0.0)
  total0, terms0, _ = losses.generator_losses(flip, flip, fooled, fooled, a, b, **kw)
  total1, terms1, _ = losses.generator_losses(flip, flip, fooled, fooled, a, b,
                                              lambda_structure=2.0, **kw)
  assert float(terms0["structure"]) == 0.0
  expected = 2.0 * (losses.structure_loss(a, flip(a)) + losses.structure_loss(b, flip(b)))
  np.testing.assert_allclose(terms1["structure"], expected, rtol=1e-6)
  np.testing.assert_allclose(total1 - total0, expected, rtol=1e-5)
