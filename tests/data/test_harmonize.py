"""Tests for liverjax/data/harmonize.py."""
import numpy as np
import pytest

from liverjax.data import harmonize


def _volume(rng, power: float) -> tuple[np.ndarray, np.ndarray]:
  """A [4, 16, 16] volume: air (0) border, body values u ** power with u ~ U(0.1, 1)."""
  body = np.zeros((4, 16, 16), bool)
  body[:, 3:13, 3:13] = True
  v = np.zeros(body.shape, np.float32)
  v[body] = rng.uniform(0.1, 1.0, body.sum()) ** power
  return v, body


def test_reference_quantiles():
  rng = np.random.default_rng(0)
  v, body = _volume(rng, 1.0)
  q = harmonize.reference_quantiles(v[..., None], body[..., None], n=11)
  assert q.shape == (11,) and q.dtype == np.float32
  assert np.all(np.diff(q) >= 0) and q[0] >= 0.1 - 1e-6 and q[-1] <= 1.0
  np.testing.assert_allclose(q[5], 0.55, atol=0.05)
  # Default body: above 0.05 (the air border is excluded).
  np.testing.assert_allclose(harmonize.reference_quantiles(v, n=11), q, atol=1e-6)
  with pytest.raises(ValueError, match='harmonize.py'):
    harmonize.reference_quantiles(np.zeros((2, 4, 4)), n=5)


def test_histogram_match_moves_distribution_to_reference():
  rng = np.random.default_rng(1)
  src, src_body = _volume(rng, 1.0)
  tgt, tgt_body = _volume(rng, 3.0)  # darker, skewed
  ref = harmonize.reference_quantiles(src, src_body, n=101)
  out = harmonize.histogram_match(tgt, tgt_body, ref)
  assert out.shape == tgt.shape and out.dtype == np.float32
  assert out.min() >= 0 and out.max() <= 1 and np.isfinite(out).all()
  before = np.abs(np.quantile(tgt[tgt_body], [0.1, 0.5, 0.9]) - ref[[10, 50, 90]]).max()
  after = np.abs(np.quantile(out[tgt_body], [0.1, 0.5, 0.9]) - ref[[10, 50, 90]]).max()
  assert before > 0.2 and after < 0.02
  # Monotone: the ordering of voxels is kept; air stays black.
  order = np.argsort(tgt.ravel(), kind='stable')
  assert np.all(np.diff(out.ravel()[order]) >= -1e-6)
  assert (out[~tgt_body] == 0).all()


def test_histogram_match_onto_own_quantiles_is_near_identity():
  rng = np.random.default_rng(2)
  v, body = _volume(rng, 2.0)
  out = harmonize.histogram_match(v, body, harmonize.reference_quantiles(v, body, n=201))
  assert np.abs(out - v).max() < 0.02


def test_histogram_match_bad_inputs():
  v = np.zeros((2, 4, 4), np.float32)
  np.testing.assert_array_equal(harmonize.histogram_match(v, None, np.linspace(0, 1, 5)), v)
  with pytest.raises(ValueError, match='non-decreasing'):
    harmonize.histogram_match(v, None, np.array([0.5, 0.2]))
  with pytest.raises(ValueError, match='body shape'):
    harmonize.histogram_match(v, np.ones((2, 4), bool), np.linspace(0, 1, 5))


def test_histogram_match_gamma_brightens_after_matching():
  rng = np.random.default_rng(3)
  src, src_body = _volume(rng, 1.0)
  tgt, tgt_body = _volume(rng, 3.0)
  ref = harmonize.reference_quantiles(src, src_body, n=101)
  matched = harmonize.histogram_match(tgt, tgt_body, ref)
  np.testing.assert_array_equal(harmonize.histogram_match(tgt, tgt_body, ref, 1.0), matched)
  bright = harmonize.histogram_match(tgt, tgt_body, ref, 0.5)
  np.testing.assert_allclose(bright, np.sqrt(matched), atol=1e-6)
  # Mid-tones up, ordering kept, air still black, nothing above 1.
  assert (bright[tgt_body] > matched[tgt_body]).mean() > 0.99
  order = np.argsort(tgt.ravel(), kind='stable')
  assert np.all(np.diff(bright.ravel()[order]) >= -1e-6)
  assert (bright[~tgt_body] == 0).all() and bright.max() <= 1.0
  with pytest.raises(ValueError, match='gamma'):
    harmonize.histogram_match(tgt, tgt_body, ref, 0.0)
