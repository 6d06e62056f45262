"""Tests for liverjax/augment/dg.py: determinism for a key, range, alignment (photometric only: a
square's edges stay in place), contrast inversion across keys, IPA masks and views, the consistency
loss, and saliency fusion. Everything runs jitted on a batch of 16 synthetic 32x32 slices."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax.augment import dg

SIZE = 32
BATCH = 16


def _phantom() -> tuple[jax.Array, jax.Array]:
  """Slices with two flat tissues a (0.3, label 1) < b (0.7, label 2) on black air (label 0).

  Returns (images f32[B, S, S, 1], labels int32[B, S, S]).
  """
  x = np.zeros((BATCH, SIZE, SIZE, 1), np.float32)
  lab = np.zeros((BATCH, SIZE, SIZE), np.int32)
  x[:, 4:28, 2:15] = 0.3
  lab[:, 4:28, 2:15] = 1
  x[:, 4:28, 17:30] = 0.7
  lab[:, 4:28, 17:30] = 2
  return jnp.asarray(x), jnp.asarray(lab)


_OPS = {
    'gin': jax.jit(dg.gin),
    'gin_per_batch': jax.jit(functools.partial(dg.gin, per_slice=False)),
    'ipa_view2': jax.jit(lambda k, x, lab: dg.gin_ipa(k, x)[1]),
    'location_scale_global': jax.jit(dg.location_scale),
    'location_scale_local': jax.jit(functools.partial(dg.location_scale, num_labels=3)),
}


def _run(name, key, x, lab):
  if name == 'location_scale_local':
    return _OPS[name](key, x, labels=lab)
  if name == 'ipa_view2':
    return _OPS[name](key, x, lab)
  return _OPS[name](key, x)


@pytest.mark.parametrize('name', list(_OPS))
def test_deterministic_in_range_and_photometric(name):
  x, lab = _phantom()
  a = _run(name, jax.random.key(0), x, lab)
  b = _run(name, jax.random.key(0), x, lab)
  c = _run(name, jax.random.key(1), x, lab)
  assert a.shape == x.shape and a.dtype == x.dtype
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(np.asarray(a), np.asarray(c))
  a = np.asarray(a)
  assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
  # Photometric only: each flat tissue region stays (nearly) flat inside, so its edges do not move.
  # (GIN's four 3x3 layers see 4 pixels around; look 4 pixels inside. IPA's view 2 varies
  # smoothly inside a region by design: its mask blends two appearances.)
  if name == 'ipa_view2':
    return
  for sl in ((slice(8, 24), slice(6, 11)), (slice(8, 24), slice(21, 26))):
    inner = a[:, sl[0], sl[1], 0]
    spread = inner.max(axis=(1, 2)) - inner.min(axis=(1, 2))
    assert spread.max() < 1e-4, name


def test_location_scale_maps_each_region_through_one_value():
  """Local location-scale: a flat region stays flat; air at 0 stays black (threshold 0.01)."""
  x, lab = _phantom()
  out = np.asarray(_run('location_scale_local', jax.random.key(3), x, lab))
  assert (out[:, :4, :, 0] == 0).all()
  for r in (1, 2):
    vals = out[..., 0][np.asarray(lab) == r].reshape(BATCH, -1)
    assert np.ptp(vals, axis=1).max() < 1e-6


@pytest.mark.parametrize('name', list(_OPS))
def test_contrast_inverts_for_some_keys(name):
  """Across keys, tissue a (darker in the input) ends up brighter than b for some keys, not all."""
  x, lab = _phantom()
  inverted = []
  for seed in range(4):
    out = np.asarray(_run(name, jax.random.key(seed), x, lab))
    inverted.append(out[:, 16, 9, 0] > out[:, 16, 22, 0])
  inverted = np.concatenate(inverted)
  assert 0 < inverted.sum() < inverted.size, (name, inverted.mean())


def test_global_location_scale_monotone_keeps_ordering():
  x, lab = _phantom()
  out = np.asarray(jax.jit(functools.partial(dg.location_scale, non_monotone_prob=0.0))(
      jax.random.key(5), x))
  assert (out[:, 16, 9, 0] <= out[:, 16, 22, 0]).all()
  assert (out[:, 0, 0, 0] <= out[:, 16, 9, 0]).all()


def test_gin_is_vmappable_and_keyed_per_slice():
  x, _ = _phantom()
  out = np.asarray(_OPS['gin'](jax.random.key(0), x))
  # Identical inputs, different random nets per slice: the slices differ.
  assert len({round(float(v), 4) for v in out[:, 16, 9, 0]}) > BATCH // 2
  nested = jax.jit(jax.vmap(dg.gin))(jax.random.split(jax.random.key(0), 2), jnp.stack([x, x]))
  assert nested.shape == (2,) + x.shape


def test_ipa_mask_smooth_and_in_range():
  m = np.asarray(jax.jit(dg.ipa_mask, static_argnums=1)(jax.random.key(0), (4, 64, 64)))
  assert m.shape == (4, 64, 64, 1) and m.min() >= 0 and m.max() <= 1
  assert np.ptp(m, axis=(1, 2, 3)).min() > 0.2  # not flat
  assert np.abs(np.diff(m, axis=1)).max() < 0.15  # smooth: small neighbour steps
  assert np.abs(np.diff(m, axis=2)).max() < 0.15


def test_gin_ipa_views_differ_and_stay_in_range():
  x, _ = _phantom()
  v1, v2 = jax.jit(dg.gin_ipa)(jax.random.key(0), x)
  v1, v2 = np.asarray(v1), np.asarray(v2)
  assert v1.shape == v2.shape == x.shape
  assert v2.min() >= 0 and v2.max() <= 1 and np.isfinite(v2).all()
  assert not np.allclose(v1, v2)


def test_consistency_loss():
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.random.normal(k1, (2, 8, 8, 1)) * 3
  b = jax.random.normal(k2, (2, 8, 8, 1)) * 3
  assert float(dg.consistency_loss(a, a)) == pytest.approx(0.0, abs=1e-7)
  ab, ba = float(dg.consistency_loss(a, b)), float(dg.consistency_loss(b, a))
  assert ab > 0 and ab == pytest.approx(ba, rel=1e-5)
  # Bernoulli symmetric KL of p, q: (p - q) * (logit p - logit q), checked in numpy.
  p, q = 1 / (1 + np.exp(-np.asarray(a))), 1 / (1 + np.exp(-np.asarray(b)))
  assert ab == pytest.approx(np.mean((p - q) * (np.asarray(a) - np.asarray(b))), rel=1e-4)
  assert np.isfinite(float(dg.consistency_loss(a * 1e3, -a * 1e3)))
  g = jax.grad(lambda z: dg.consistency_loss(z, b))(a)
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
  c3 = jax.random.normal(k1, (2, 8, 8, 3))
  assert float(dg.consistency_loss(c3, c3, 'softmax')) == pytest.approx(0.0, abs=1e-7)
  assert float(dg.consistency_loss(c3, -c3, 'softmax')) > 0
  with pytest.raises(ValueError, match='dg.py'):
    dg.consistency_loss(a, a, 'relu')


def test_saliency_fuse_follows_saliency():
  x, _ = _phantom()
  g = jnp.full(x.shape, 0.2)
  l = jnp.full(x.shape, 0.8)
  sal = np.zeros(x.shape, np.float32)
  sal[:, :, :SIZE // 3] = 5.0  # salient on the left third
  out = np.asarray(jax.jit(dg.saliency_fuse)(g, l, -sal))  # sign ignored
  assert out.min() >= 0 and out.max() <= 1
  left, right = out[:, :, :4, 0].mean(), out[:, :, -4:, 0].mean()
  assert left == pytest.approx(0.2, abs=0.05) and right == pytest.approx(0.8, abs=0.05)
  flat = np.asarray(dg.saliency_fuse(g, l, jnp.ones(x.shape)))
  np.testing.assert_allclose(flat, 0.8, atol=1e-3)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match='dg.py gin'):
    dg.gin(jax.random.key(0), jnp.zeros((4, 8, 8)))
  with pytest.raises(ValueError, match='labels shape'):
    dg.location_scale(jax.random.key(0), jnp.zeros((2, 8, 8, 1)), labels=jnp.zeros((2, 4, 4), int))


def test_gin_keeps_a_flat_slice_flat():
  """Edge padding: no frame is drawn at the slice border (zero padding would draw one)."""
  out = np.asarray(jax.jit(dg.gin)(jax.random.key(0), jnp.full((4, 16, 16, 1), 0.4)))
  assert np.ptp(out, axis=(1, 2, 3)).max() < 1e-6
