"""Tests for liverjax/augment/augmix.py and liverjax/augment/pipeline.py (64x64 slices, jit+vmap).

AugMix compiles slowly on CPU (every op is a switch branch), so the jitted functions are built once
per module and shared.
"""
import functools
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from liverjax.augment import augmix
from liverjax.augment import ops
from liverjax.augment import pipeline

SIZE = 64
BATCH = 4


def _squares():
  """BATCH slices: textured dark background, a bright textured square; the mask is the square."""
  rng = np.random.default_rng(0)
  img = 0.1 + 0.05 * rng.random((BATCH, SIZE, SIZE, 1))
  mask = np.zeros((BATCH, SIZE, SIZE, 1), np.float32)
  for i in range(BATCH):
    y, x = 14 + 3 * i, 18 + 2 * i
    img[i, y:y + 26, x:x + 22] = 0.75 + 0.1 * rng.random((26, 22, 1))
    mask[i, y:y + 26, x:x + 22] = 1.0
  return jnp.asarray(img, jnp.float32), jnp.asarray(mask)


@pytest.fixture(scope='module')
def data():
  return _squares()


@pytest.fixture(scope='module')
def augmix_geo():
  return jax.jit(functools.partial(augmix.augmix_batch, width=3, depth=(1, 3), alpha=1.0,
                                   severity=3, geometric=True))


@pytest.fixture(scope='module')
def augmix_photo():
  return jax.jit(functools.partial(augmix.augmix_batch, width=2, depth=(1, 2), alpha=1.0,
                                   severity=5, geometric=False))


def test_mixing_weights_are_a_distribution():
  keys = jax.random.split(jax.random.key(0), 256)
  for width in (1, 3):
    f = jax.jit(jax.vmap(lambda k, a: augmix.mixing_weights(k, width, a), in_axes=(0, None)))
    for alpha in (0.3, 1.0, 5.0):
      w, m = f(keys, alpha)
      w, m = np.asarray(w), np.asarray(m)
      assert w.shape == (256, width) and w.dtype == np.float32 and m.shape == (256,)
      np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
      assert (w >= 0).all() and (m >= 0).all() and (m <= 1).all()
      assert np.unique(m).size > 128  # really random per key
      assert abs(m.mean() - 0.5) < 0.06  # Beta(alpha, alpha) is symmetric about 1/2
      if width == 3:
        assert np.abs(w.mean(axis=0) - 1 / 3).max() < 0.06


def test_augmix_shape_range_determinism(data, augmix_geo):
  images, masks = data
  out, out_m = augmix_geo(jax.random.key(1), images, masks)
  assert out.shape == images.shape and out.dtype == images.dtype
  assert out_m.shape == masks.shape and out_m.dtype == masks.dtype
  out_np = np.asarray(out)
  assert np.isfinite(out_np).all() and out_np.min() >= 0.0 and out_np.max() <= 1.0
  again, again_m = augmix_geo(jax.random.key(1), images, masks)
  np.testing.assert_array_equal(out_np, np.asarray(again))
  np.testing.assert_array_equal(np.asarray(out_m), np.asarray(again_m))
  other, _ = augmix_geo(jax.random.key(2), images, masks)
  assert not np.array_equal(out_np, np.asarray(other))
  # Slices of one batch get independent draws.
  same_in = jnp.broadcast_to(images[:1], images.shape)
  per_slice, _ = augmix_geo(jax.random.key(1), same_in, jnp.broadcast_to(masks[:1], masks.shape))
  assert not np.array_equal(np.asarray(per_slice[0]), np.asarray(per_slice[1]))


def test_augmix_geometry_moves_mask_with_image(data, augmix_geo):
  images, masks = data
  moved = 0
  for seed in range(3):
    out, out_m = augmix_geo(jax.random.key(10 + seed), images, masks)
    out, out_m = np.asarray(out)[..., 0], np.asarray(out_m)[..., 0]
    assert set(np.unique(out_m)) <= {0.0, 1.0}  # nearest sampling keeps the mask binary
    for i in range(BATCH):
      if (out_m[i] > 0).sum() < 50:  # square moved (mostly) out of view
        continue
      moved += not np.array_equal(out_m[i], np.asarray(masks)[i, ..., 0])
      # The photometric mixture keeps the square brighter than the background; the mask must
      # still sit on it: thresholding half-way between the two reproduces the mask.
      fg, bg = np.median(out[i][out_m[i] > 0]), np.median(out[i][out_m[i] == 0])
      assert fg > bg + 0.2, (seed, i, fg, bg)
      th = out[i] > (fg + bg) / 2
      m = out_m[i] > 0
      iou = (th & m).sum() / (th | m).sum()
      assert iou > 0.9, (seed, i, iou)
  assert moved >= 6  # the geometric part is really applied


def test_augmix_photometric_leaves_mask_untouched(data, augmix_photo):
  images, masks = data
  out, out_m = augmix_photo(jax.random.key(5), images, masks)
  np.testing.assert_array_equal(np.asarray(out_m), np.asarray(masks))
  assert not np.allclose(np.asarray(out), np.asarray(images))
  assert np.asarray(out).min() >= 0.0 and np.asarray(out).max() <= 1.0


def test_augmix_rejects_bad_settings(data):
  images, masks = data
  with pytest.raises(ValueError, match='severity'):
    augmix.augmix(jax.random.key(0), images[0], masks[0], severity=11)
  with pytest.raises(ValueError, match='depth'):
    augmix.augmix(jax.random.key(0), images[0], masks[0], depth=(3, 1))


# ----------------------------------------------------------------------------------- pipeline


def _augment_config(**overrides):
  # AugMix settings equal to the `augmix_geo` fixture, so its compiled program is the reference.
  cfg = ml_collections.ConfigDict(dict(domain=False, domain_prob=0.8, augmix=False, augmix_width=3,
                                       augmix_depth=(1, 3), augmix_alpha=1.0, augmix_severity=3))
  cfg.update(overrides)
  return cfg


def _fake_domain(monkeypatch, transform):
  """Installs a stand-in liverjax.augment.domain whose domain_transform_batch records its calls."""
  calls = []

  def domain_transform_batch(key, imgs, *, source, prob):
    del key
    calls.append((source, prob, imgs.shape))
    return transform(imgs)

  fake = types.ModuleType('liverjax.augment.domain')
  fake.domain_transform_batch = domain_transform_batch
  monkeypatch.setattr(pipeline, 'domain', fake)  # the module pipeline imported
  return calls


def test_pipeline_identity_when_off(data):
  images, masks = data
  f = jax.jit(functools.partial(pipeline.augment_batch, augment_config=_augment_config(),
                                source='ct'))
  out, out_m = f(jax.random.key(0), images, masks)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(images))
  np.testing.assert_array_equal(np.asarray(out_m), np.asarray(masks))


def test_pipeline_domain_only(data, monkeypatch):
  images, masks = data
  calls = _fake_domain(monkeypatch, lambda x: 1.0 - x)
  cfg = _augment_config(domain=True, domain_prob=0.3)
  f = jax.jit(functools.partial(pipeline.augment_batch, augment_config=cfg, source='ct'))
  out, out_m = f(jax.random.key(0), images, masks)
  assert calls == [('ct', 0.3, images.shape)]
  np.testing.assert_allclose(np.asarray(out), 1.0 - np.asarray(images), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(out_m), np.asarray(masks))


def test_pipeline_domain_then_augmix(data, monkeypatch, augmix_geo):
  """The domain transform runs first, AugMix (with the pipeline's key half) on its output."""
  images, masks = data
  calls = _fake_domain(monkeypatch, lambda x: 0.5 * x)
  cfg = _augment_config(domain=True, augmix=True)
  f = jax.jit(functools.partial(pipeline.augment_batch, augment_config=cfg, source='ct'))
  out, out_m = f(jax.random.key(3), images, masks)
  assert calls == [('ct', 0.8, images.shape)]
  assert out.shape == images.shape and out_m.shape == masks.shape
  _, k_augmix = jax.random.split(jax.random.key(3))
  ref, ref_m = augmix_geo(k_augmix, 0.5 * images, masks)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(out_m), np.asarray(ref_m))
  assert not np.allclose(np.asarray(out), 0.5 * np.asarray(images))


def test_pipeline_with_real_domain_module(data):
  domain = pytest.importorskip('liverjax.augment.domain')
  if not hasattr(domain, 'domain_transform_batch'):
    pytest.skip('liverjax.augment.domain has no domain_transform_batch yet')
  images, masks = data
  cfg = _augment_config(domain=True)
  f = jax.jit(functools.partial(pipeline.augment_batch, augment_config=cfg, source='ct'))
  out, out_m = f(jax.random.key(0), images, masks)
  assert out.shape == images.shape
  np.testing.assert_array_equal(np.asarray(out_m), np.asarray(masks))


def test_pipeline_reads_t2_slices_as_t2(data, monkeypatch):
  images, masks = data
  calls = _fake_domain(monkeypatch, lambda x: x)  # records the sources asked for
  del calls
  fake = pipeline.domain  # the stand-in _fake_domain installed
  fake.domain_transform_batch = lambda key, imgs, *, source, prob: (
      imgs * 0.0 + (0.25 if source == 't1' else 0.75))
  cfg = _augment_config(domain=True)
  is_t2 = jnp.asarray((np.arange(images.shape[0]) % 2).astype(np.float32))
  f = jax.jit(functools.partial(pipeline.augment_batch, augment_config=cfg, source='mr'))
  out, _ = f(jax.random.key(0), images, masks, is_t2=is_t2)
  per_slice = np.asarray(out).reshape(images.shape[0], -1)
  np.testing.assert_allclose(per_slice[0::2], 0.25)  # T1 slices: the T1 reading
  np.testing.assert_allclose(per_slice[1::2], 0.75)  # T2 slices: the T2 reading
  # An MR batch without its sequences is an error, not a silent T1 reading.
  with pytest.raises(ValueError, match="is_t2"):
    f(jax.random.key(0), images, masks)


def test_shared_ops_plan_fixes_the_ops_of_every_slice():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((4, 32, 32, 1), dtype=np.float32))
  masks = jnp.asarray((rng.random((4, 32, 32, 1)) > 0.5).astype(np.float32))
  names = [n for n, _ in ops.PHOTOMETRIC_OPS]
  width, hi = 2, 3
  # Every step of every chain is `contrast` (monotone in the input): the mixture stays monotone.
  plan = (jnp.full((width, hi), names.index('contrast'), jnp.int32),
          jnp.full((width,), hi, jnp.int32))
  f = jax.jit(jax.vmap(functools.partial(augmix.augmix, width=width, depth=(1, hi), severity=5,
                                         geometric=False, plan=plan)))
  out, out_m = f(jax.random.split(jax.random.key(0), 4), images, masks)
  for x, y in zip(np.asarray(images), np.asarray(out)):
    order = np.argsort(x.ravel(), kind='stable')
    assert np.all(np.diff(y.ravel()[order]) >= -1e-6)
  np.testing.assert_array_equal(np.asarray(out_m), np.asarray(masks))
  # With a blur in the plan the same check fails: the test can tell ops apart.
  blur_plan = (jnp.full((width, hi), names.index('gaussian_blur'), jnp.int32), plan[1])
  g = jax.jit(jax.vmap(functools.partial(augmix.augmix, width=width, depth=(1, hi), severity=5,
                                         geometric=False, plan=blur_plan)))
  blurred, _ = g(jax.random.split(jax.random.key(0), 4), images, masks)
  x, y = np.asarray(images)[0].ravel(), np.asarray(blurred)[0].ravel()
  assert np.any(np.diff(y[np.argsort(x, kind='stable')]) < -1e-3)


def test_augmix_batch_shared_ops_is_valid_and_deterministic(data):
  images, masks = data
  f = jax.jit(functools.partial(augmix.augmix_batch, width=3, depth=(1, 3), severity=3,
                                shared_ops=True))
  a, am = f(jax.random.key(3), images, masks)
  b, _ = f(jax.random.key(3), images, masks)
  c, _ = f(jax.random.key(4), images, masks)
  assert a.shape == images.shape and a.dtype == images.dtype
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  assert set(np.unique(np.asarray(am))) <= {0.0, 1.0}
  plan = augmix.chain_plan(jax.random.key(0), (1, 3), (5,))
  assert plan[0].shape == (5, 3) and plan[1].shape == (5,)
  assert int(plan[1].min()) >= 1 and int(plan[1].max()) <= 3
