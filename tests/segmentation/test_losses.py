"""Tests for liverjax/segmentation/losses.py against an independent float64 NumPy reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax.segmentation import losses


def _reference(logits, masks, smooth=1.0, weights=(1.0, 1.0, 1.0)):
  """Straightforward float64 formulas over the whole batch."""
  x = np.asarray(logits, np.float64)
  t = np.asarray(masks, np.float64)
  p = 1.0 / (1.0 + np.exp(-x))
  inter, psum, tsum = (p * t).sum(), p.sum(), t.sum()
  bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
  hard = p > 0.5
  denom = hard.sum() + tsum
  dice = 1.0 if denom == 0 else 2.0 * (hard * t).sum() / denom
  dice_loss = 1 - (2 * inter + smooth) / (psum + tsum + smooth)
  jacc_loss = 1 - (inter + smooth) / (psum + tsum - inter + smooth)
  total = weights[0] * dice_loss + weights[1] * bce + weights[2] * jacc_loss
  return {"dice": dice, "bce": bce, "dice_loss": dice_loss, "jaccard_loss": jacc_loss,
          "total": total}


def _random_batch(seed, shape=(4, 16, 16, 1), scale=3.0):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=shape) * scale).astype(np.float32)
  masks = (rng.random(shape) < 0.4).astype(np.float32)
  return logits, masks


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("smooth", [1.0, 1e-3])
def test_matches_numpy_reference(seed, smooth):
  logits, masks = _random_batch(seed)
  weights = (0.7, 1.3, 0.4)
  total, terms = losses.segmentation_loss(logits, masks, weights=weights, smooth=smooth)
  ref = _reference(logits, masks, smooth=smooth, weights=weights)
  assert set(terms) == set(ref)
  for k, v in ref.items():
    np.testing.assert_allclose(float(terms[k]), v, rtol=1e-5, atol=1e-6, err_msg=k)
  assert float(total) == float(terms["total"])
  assert total.dtype == jnp.float32 and total.shape == ()


def test_loss_sums_per_example():
  logits, masks = _random_batch(2, shape=(3, 8, 8, 1))
  sums = losses.loss_sums(logits, masks)
  assert set(sums) == set(losses.SUM_KEYS)
  for v in sums.values():
    assert v.shape == (3,) and v.dtype == jnp.float32
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  np.testing.assert_allclose(sums["intersection"], (p * masks).sum((1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(sums["prob_sum"], p.sum((1, 2, 3)), rtol=1e-5)
  np.testing.assert_array_equal(sums["mask_sum"], masks.sum((1, 2, 3)))
  np.testing.assert_array_equal(sums["count"], [64, 64, 64])
  np.testing.assert_array_equal(sums["hard_pred_sum"], (p > 0.5).sum((1, 2, 3)))
  np.testing.assert_array_equal(sums["hard_intersection"], ((p > 0.5) * masks).sum((1, 2, 3)))


def test_perfect_prediction():
  _, masks = _random_batch(3)
  logits = (2 * masks - 1) * 60.0
  _, terms = losses.segmentation_loss(logits, masks)
  assert float(terms["dice"]) == 1.0
  for k in ("bce", "dice_loss", "jaccard_loss", "total"):
    assert abs(float(terms[k])) < 1e-6, k


def test_completely_wrong_prediction():
  _, masks = _random_batch(4)
  logits = (1 - 2 * masks) * 60.0
  _, terms = losses.segmentation_loss(logits, masks)
  n = masks.size
  assert float(terms["dice"]) == 0.0
  # Only the smoothing keeps the soft losses from being exactly 1: 1 - 1/(n + 1).
  np.testing.assert_allclose(float(terms["dice_loss"]), 1 - 1 / (n + 1), rtol=1e-5)
  np.testing.assert_allclose(float(terms["jaccard_loss"]), 1 - 1 / (n + 1), rtol=1e-5)
  np.testing.assert_allclose(float(terms["bce"]), 60.0, rtol=1e-5)


def test_both_empty_hard_dice_is_one():
  masks = np.zeros((2, 8, 8, 1), np.float32)
  logits = np.full_like(masks, -5.0)
  _, terms = losses.segmentation_loss(logits, masks)
  assert float(terms["dice"]) == 1.0
  # Empty mask, non-empty prediction: Dice 0.
  _, terms = losses.segmentation_loss(-logits, masks)
  assert float(terms["dice"]) == 0.0


def test_sums_over_halves_equal_whole_batch():
  logits, masks = _random_batch(5, shape=(6, 16, 16, 1))
  _, whole = losses.segmentation_loss(logits, masks)
  s1 = losses.loss_sums(logits[:2], masks[:2])
  s2 = losses.loss_sums(logits[2:], masks[2:])
  # Accumulated in numpy (as evaluation over a volume would), per-example arrays concatenated...
  acc = {k: np.concatenate([np.asarray(s1[k]), np.asarray(s2[k])]) for k in s1}
  # ... or reduced to float64 totals first: both must give the whole-batch values.
  tot = {k: np.float64(np.asarray(s1[k]).sum()) + np.asarray(s2[k]).sum() for k in s1}
  for sums in (acc, tot):
    parts = losses.losses_from_sums(sums)
    for k in whole:
      np.testing.assert_allclose(float(parts[k]), float(whole[k]), rtol=1e-6, err_msg=k)


def test_weights_applied():
  logits, masks = _random_batch(6)
  _, t = losses.segmentation_loss(logits, masks)
  for w in [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (2.0, 0.5, 3.0)]:
    total, _ = losses.segmentation_loss(logits, masks, weights=w)
    expect = w[0] * t["dice_loss"] + w[1] * t["bce"] + w[2] * t["jaccard_loss"]
    np.testing.assert_allclose(float(total), float(expect), rtol=1e-6, err_msg=str(w))


def test_gradients_finite_for_extreme_logits_and_jit():
  _, masks = _random_batch(7, shape=(2, 8, 8, 1))
  rng = np.random.default_rng(7)
  logits = (rng.choice([-1.0, 1.0], size=masks.shape) * 1e4).astype(np.float32)
  # Near float32 max, on the right side (a wrong one would make the loss itself ~1e38).
  logits[0, 0, 0, 0], masks[0, 0, 0, 0] = 3e38, 1.0
  logits[1, 0, 0, 0], masks[1, 0, 0, 0] = -3e38, 0.0
  loss_fn = jax.jit(lambda x: losses.segmentation_loss(x, masks)[0])
  value, grad = jax.value_and_grad(loss_fn)(jnp.asarray(logits))
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(np.asarray(grad)))
  # Gradient is non-zero on a moderate input and points the right way (down on wrong pixels).
  g = jax.grad(loss_fn)(jnp.zeros_like(logits))
  assert np.all(np.asarray(g)[masks == 1] < 0) and np.all(np.asarray(g)[masks == 0] > 0)


def test_bfloat16_logits_computed_in_float32():
  logits, masks = _random_batch(8)
  _, t32 = losses.segmentation_loss(logits, masks)
  _, t16 = losses.segmentation_loss(jnp.asarray(logits, jnp.bfloat16), masks)
  for k in t32:
    assert t16[k].dtype == jnp.float32
    np.testing.assert_allclose(float(t16[k]), float(t32[k]), rtol=2e-2, atol=2e-2, err_msg=k)


def test_ignored_pixels_are_left_out_of_every_term():
  logits, masks = _random_batch(3)
  ignore = np.random.default_rng(4).random(masks.shape) < 0.3
  marked = np.where(ignore, losses.IGNORE, masks).astype(np.float32)
  _, terms = losses.segmentation_loss(logits, marked)
  keep = ~ignore
  ref = _reference(logits[keep], masks[keep])  # the same formulas over the kept pixels only
  for k in ref:
    np.testing.assert_allclose(float(terms[k]), ref[k], rtol=2e-5, atol=1e-6)
  # Whatever the logits say on ignored pixels, the loss does not move.
  flipped = np.where(ignore, -logits, logits)
  _, again = losses.segmentation_loss(flipped, marked)
  np.testing.assert_allclose(float(again["total"]), float(terms["total"]), rtol=1e-6)
  sums = losses.loss_sums(logits, marked)
  np.testing.assert_allclose(np.asarray(sums["count"]), keep.reshape(4, -1).sum(1))
