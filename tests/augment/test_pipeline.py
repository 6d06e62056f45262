"""Tests for liverjax/augment/pipeline.py: the DG recipes of `config.augment` on a batch
(GIN, GIN-IPA views, location-scale with the organ map, the two-view recipes, config checks).
The domain transform + AugMix paths are tested in tests/augment/test_augmix.py."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax.augment import pipeline
from liverjax.configs import default
from liverjax.data import nifti
from tests.augment.test_dg import BATCH
from tests.augment.test_dg import _phantom



def _batch():
  """Two flat tissues (0.3: organ 1, the liver mask; 0.7: organ 2) on black air (test_dg's)."""
  x, organs = _phantom()
  masks = (organs == 1).astype(jnp.float32)[..., None]
  return x, masks, organs


def _config(**fields):
  c = default.get_config().augment
  c.update(fields)
  return c


@functools.cache
def _fn(views=False, **fields):
  fn = pipeline.augment_views if views else pipeline.augment_batch
  return jax.jit(functools.partial(fn, augment_config=_config(**fields), source="ct"))


def test_gin_is_keyed_in_range_and_keeps_the_mask():
  x, m, organs = _batch()
  f = _fn(gin=True)
  a, am = f(jax.random.key(0), x, m, organs=organs)
  b, _ = f(jax.random.key(0), x, m, organs=organs)
  c, _ = f(jax.random.key(1), x, m, organs=organs)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(np.asarray(a), np.asarray(c))
  np.testing.assert_array_equal(np.asarray(am), np.asarray(m))
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_gin_per_batch_gives_the_batch_one_appearance():
  # Identical slices get identical GIN outputs with one net per batch, different ones per slice.
  x, m, _ = _batch()
  same = jnp.repeat(x[:1], x.shape[0], axis=0)
  per_batch, _ = _fn(gin=True, gin_per_batch=True)(jax.random.key(3), same, m)
  per_slice, _ = _fn(gin=True)(jax.random.key(3), same, m)
  for i in range(1, x.shape[0]):
    np.testing.assert_allclose(np.asarray(per_batch[i]), np.asarray(per_batch[0]), atol=1e-6)
  assert not np.allclose(np.asarray(per_slice[1]), np.asarray(per_slice[0]), atol=1e-3)
  assert not np.allclose(np.asarray(per_batch[0]), np.asarray(same[0]), atol=1e-3)


def test_gin_prob_leaves_some_slices_original():
  x, m, _ = _batch()
  out, _ = _fn(gin=True, gin_prob=0.5)(jax.random.key(2), x, m)
  same = np.all(np.asarray(out) == np.asarray(x), axis=(1, 2, 3))
  assert 0 < same.sum() < BATCH
  none, _ = _fn(gin=True, gin_prob=0.0)(jax.random.key(2), x, m)
  np.testing.assert_array_equal(np.asarray(none), np.asarray(x))


def test_local_location_scale_reads_the_organ_map():
  """Each organ of `organs` gets its own curve (a flat region stays flat); without an organ
  map the liver mask is label 1 and organ 2 shares the background's curve."""
  x, m, organs = _batch()
  f = _fn(location_scale_local=True)
  out = np.asarray(f(jax.random.key(3), x, m, organs=organs)[0])[..., 0]
  for label in (1, 2):
    region = out[:, np.asarray(organs[0]) == label]
    assert np.abs(region - region[:, :1]).max() < 1e-6
  fallback = np.asarray(f(jax.random.key(3), x, m)[0])[..., 0]
  liver = np.asarray(organs[0]) == 1
  np.testing.assert_allclose(fallback[:, liver], out[:, liver], atol=1e-6)
  assert not np.allclose(fallback[:, np.asarray(organs[0]) == 2], out[:, np.asarray(organs[0]) == 2])
  np.testing.assert_array_equal(out[:, 0, 0], 0.0)  # air (below 0.01) is kept


def test_ipa_views_differ_share_the_mask_and_are_keyed():
  x, m, _ = _batch()
  f = _fn(views=True, gin=True, ipa=True, augmix=True, augmix_width=1, augmix_depth=(1, 1))
  v1, v2, vm = f(jax.random.key(4), x, m)
  w1, w2, _ = f(jax.random.key(4), x, m)
  np.testing.assert_array_equal(np.asarray(v1), np.asarray(w1))
  np.testing.assert_array_equal(np.asarray(v2), np.asarray(w2))
  assert not np.allclose(np.asarray(v1), np.asarray(v2))
  for v in (v1, v2):
    assert v.shape == x.shape and float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    # Photometric views + the same AugMix geometry: air stays where the moved mask says.
  assert vm.shape == m.shape and set(np.unique(np.asarray(vm))) <= {0.0, 1.0}


def test_saliency_views_are_global_and_local():
  x, m, organs = _batch()
  g, loc, vm = _fn(views=True, location_scale=True, location_scale_local=True,
                   saliency_fusion=True)(jax.random.key(5), x, m, organs=organs)
  np.testing.assert_array_equal(np.asarray(vm), np.asarray(m))
  g, loc = np.asarray(g)[..., 0], np.asarray(loc)[..., 0]
  assert not np.allclose(g, loc)
  np.testing.assert_array_equal(loc[:, 0, 0], 0.0)  # the local view keeps air black


def test_two_view_mode_and_config_errors():
  assert pipeline.two_view_mode(_config()) is None
  assert pipeline.two_view_mode(_config(gin=True, ipa=True)) == "ipa"
  assert pipeline.two_view_mode(_config(location_scale=True, location_scale_local=True,
                                        saliency_fusion=True)) == "saliency"
  with pytest.raises(ValueError, match="augment.gin"):
    pipeline.two_view_mode(_config(ipa=True))
  with pytest.raises(ValueError, match="location_scale_local"):
    pipeline.two_view_mode(_config(location_scale=True, saliency_fusion=True))
  with pytest.raises(ValueError, match="gin_prob"):
    pipeline.check_augment_config(_config(gin=True, gin_prob=1.5))
  x, m, _ = _batch()
  with pytest.raises(ValueError, match="two-view"):
    pipeline.augment_views(jax.random.key(0), x, m, _config(gin=True), "ct")
  with pytest.raises(ValueError, match="is_t2"):
    pipeline.augment_batch(jax.random.key(0), x, m, _config(domain=True), "mr")


def test_default_label_count_covers_every_organ():
  assert default.get_config().augment.ls_num_labels == len(nifti.ORGANS)


def test_spatial_moves_image_mask_and_organs_together_and_is_keyed():
  x, masks, organs = _batch()
  c = _config(spatial=True)
  key = jax.random.key(3)
  moved_x, moved_m, moved_o = pipeline._spatial(key, x, masks, organs, c)
  again = pipeline._spatial(key, x, masks, organs, c)
  for a, b in zip((moved_x, moved_m, moved_o), again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(moved_m, masks)  # it moved
  assert moved_o.dtype == organs.dtype and set(np.unique(moved_o)) <= set(np.unique(organs))
  # The mask and the organ map stay the liver's label; the image's liver tissue (0.3) stays
  # under the mask away from the bilinear edge.
  np.testing.assert_array_equal(np.asarray(moved_m[..., 0]) > 0.5, np.asarray(moved_o) == 1)
  inner = np.asarray(jax.vmap(lambda m: jax.scipy.signal.convolve2d(m, jnp.ones((3, 3)), "same"))(
      moved_m[..., 0])) > 8.5
  np.testing.assert_allclose(np.asarray(moved_x[..., 0])[inner], 0.3, atol=1e-5)
  assert float(moved_x.min()) >= 0.0 and float(moved_x.max()) <= 1.0


def test_spatial_zoom_scales_the_area_and_nothing_moves_without_range():
  x, masks, organs = _batch()
  still = _config(spatial=True, spatial_rotate=0.0, spatial_scale=(1.0, 1.0),
                  spatial_translate=0.0)
  out = pipeline._spatial(jax.random.key(0), x, masks, organs, still)
  np.testing.assert_allclose(out[0], x, atol=1e-6)
  np.testing.assert_array_equal(out[1], masks)
  zoom = _config(spatial=True, spatial_rotate=0.0, spatial_scale=(1.2, 1.2),
                 spatial_translate=0.0)
  area = lambda m: float(jnp.sum(m))
  _, zoomed, _ = pipeline._spatial(jax.random.key(0), x, masks, organs, zoom)
  assert area(zoomed) == pytest.approx(1.44 * area(masks), rel=0.1)
  # augment_batch runs it first, with the recipes after it.
  out_x, out_m = pipeline.augment_batch(jax.random.key(1), x, masks, _config(spatial=True,
                                        gin=True), source="ct", organs=organs)
  assert out_x.shape == x.shape and not np.array_equal(out_m, masks)
