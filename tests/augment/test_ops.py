"""Tests for liverjax/augment/ops.py: shapes and ranges, image-mask alignment, determinism, and
agreement with OpenCV. Every op runs under jax.jit(jax.vmap(...)) on small 64x64 batches.

OpenCV agreement asserted here (uint8 inputs mapped to [0, 1] as k / 255):
- gaussian_blur vs cv2.GaussianBlur (float32 input, same ksize): max abs diff < 1e-5;
- median_blur vs cv2.medianBlur (ksize 3, 5): exact;
- equalize_histogram vs cv2.equalizeHist: exact;
- clahe vs cv2.createCLAHE: exact on 64x64 (power-of-two tiles); on sizes needing cv2's padding
  (60x72, 67x53) at most 1% of pixels differ, by one grey level;
- bilateral_filter vs cv2.bilateralFilter: max abs diff < 1 grey level (cv2 re-quantises), mean
  < 0.6 / 255.
- affine (rotation + translation) vs cv2.warpAffine bilinear: mean abs diff < 0.005 (cv2 uses
  5-bit fixed-point interpolation weights).
"""
import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax.augment import filters
from liverjax.augment import ops

SIZE = 64


def _u8_slices(n: int, h: int = SIZE, w: int = SIZE, seed: int = 0) -> np.ndarray:
  """n smooth-plus-noise uint8 slices [n, h, w] with a bright block, like a windowed CT slice."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  out = []
  for i in range(n):
    base = 110 + 60 * np.sin(xx / (5.0 + i)) * np.cos(yy / (9.0 + 2 * i)) + rng.normal(0, 18, (h, w))
    base[h // 4:h // 2, w // 6:w // 2] += 60
    base[: h // 8] = 0  # dark band as around the body
    out.append(np.clip(base, 0, 255).astype(np.uint8))
  return np.stack(out)


def _to_jax(u8: np.ndarray) -> jax.Array:
  return jnp.asarray(u8[..., None].astype(np.float32) / 255.0)


def _to_levels(x) -> np.ndarray:
  return np.round(np.asarray(x)[..., 0] * 255).astype(np.int32)


@pytest.fixture(scope='module')
def u8_batch():
  return _u8_slices(3)


@pytest.fixture(scope='module')
def batch(u8_batch):
  return _to_jax(u8_batch)


# Deterministic ops with parameters per slice (vmapped over image and parameter).
DETERMINISTIC = {
    'gaussian_blur': (lambda x, p: ops.gaussian_blur(x, p), [0.5, 1.2, 2.5]),
    'median_blur3': (lambda x, p: ops.median_blur(x, 3), [0.0, 0.0, 0.0]),
    'median_blur5': (lambda x, p: ops.median_blur(x, 5), [0.0, 0.0, 0.0]),
    'bilateral_filter': (lambda x, p: ops.bilateral_filter(x, p, 2.0, 2), [0.05, 0.1, 0.3]),
    'sharpness': (lambda x, p: ops.sharpness(x, p), [0.0, 1.5, 3.0]),
    'brightness': (lambda x, p: ops.brightness(x, p), [-0.5, 0.2, 0.7]),
    'contrast': (lambda x, p: ops.contrast(x, p), [0.2, 1.5, 3.0]),
    'gamma': (lambda x, p: ops.gamma(x, p), [0.3, 1.0, 2.5]),
    'clahe': (lambda x, p: ops.clahe(x, p), [1.0, 4.0, 40.0]),
    'equalize_histogram': (lambda x, p: ops.equalize_histogram(x), [0.0, 0.0, 0.0]),
}


@pytest.mark.parametrize('name', sorted(DETERMINISTIC))
def test_deterministic_op_keeps_shape_dtype_range(name, batch):
  fn, params = DETERMINISTIC[name]
  out = jax.jit(jax.vmap(fn))(batch, jnp.asarray(params, jnp.float32))
  assert out.shape == batch.shape and out.dtype == batch.dtype
  out = np.asarray(out)
  assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
  if name not in ('median_blur3', 'median_blur5'):
    assert not np.allclose(out, np.asarray(batch)), f'{name} changed nothing'


@pytest.mark.parametrize('name,fn', ops.RANDOM_PHOTOMETRIC_OPS)
def test_sampled_op_keeps_range_and_is_deterministic_per_key(name, fn, batch):
  f = jax.jit(jax.vmap(functools.partial(fn, severity=10)))
  keys = jax.random.split(jax.random.key(0), batch.shape[0])
  a, b = f(keys, batch), f(keys, batch)
  assert a.shape == batch.shape and a.dtype == batch.dtype
  a = np.asarray(a)
  assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
  np.testing.assert_array_equal(a, np.asarray(b))
  if name == 'clahe':
    # On 64x64 slices the 8x8 tiles hold 64 pixels, so every sampled clip limit (1..6) rounds to
    # cv2's minimum of one count per bin: the output varies with the key only on larger slices.
    batch = jax.image.resize(batch, (batch.shape[0], 128, 128, 1), 'linear')
    f = jax.jit(jax.vmap(functools.partial(fn, severity=10)))
    a = np.asarray(f(keys, batch))
  if name != 'median_blur':  # the median has no sampled magnitude
    c = np.asarray(f(jax.random.split(jax.random.key(1), batch.shape[0]), batch))
    assert not np.array_equal(a, c), f'{name}: another key gave the same output'


def test_salt_and_pepper_amount_and_keys(batch):
  f = jax.jit(jax.vmap(ops.salt_and_pepper, in_axes=(0, 0, None)))
  keys = jax.random.split(jax.random.key(3), 3)
  out = np.asarray(f(keys, batch, 0.2))
  changed = (out != np.asarray(batch)).mean()
  assert 0.12 < changed < 0.22  # a few corrupted pixels already were 0
  assert set(np.unique(out[out != np.asarray(batch)])) <= {0.0, 1.0}
  np.testing.assert_array_equal(out, np.asarray(f(keys, batch, 0.2)))
  assert not np.array_equal(out, np.asarray(f(jax.random.split(jax.random.key(4), 3), batch, 0.2)))


def test_identity_parameters_are_identity(batch):
  f = jax.jit(jax.vmap(lambda x: jnp.stack([
      ops.brightness(x, 0.0), ops.contrast(x, 1.0), ops.gamma(x, 1.0), ops.sharpness(x, 1.0)])))
  out = np.asarray(f(batch))
  for k in range(4):
    np.testing.assert_allclose(out[:, k], np.asarray(batch), atol=1e-6)


# ------------------------------------------------------------------------------------ vs OpenCV


def test_gaussian_blur_matches_cv2(u8_batch, batch):
  sigmas = np.asarray([0.6, 1.3, 2.5], np.float32)
  out = np.asarray(jax.jit(jax.vmap(ops.gaussian_blur))(batch, jnp.asarray(sigmas)))[..., 0]
  for i, s in enumerate(sigmas):
    r = int(filters.gaussian_kernel_radius(s, 8))
    ref = cv2.GaussianBlur(u8_batch[i].astype(np.float32) / 255, (2 * r + 1, 2 * r + 1), float(s))
    assert np.abs(out[i] - ref).max() < 1e-5, f'sigma {s}'


@pytest.mark.parametrize('ksize', [3, 5])
def test_median_blur_matches_cv2_exactly(ksize, u8_batch, batch):
  out = _to_levels(jax.jit(jax.vmap(lambda x: ops.median_blur(x, ksize)))(batch))
  for i in range(len(u8_batch)):
    np.testing.assert_array_equal(out[i], cv2.medianBlur(u8_batch[i], ksize))


def test_median_network_selects_the_median():
  rng = np.random.default_rng(0)
  for n in (9, 25):
    net = ops._median_network(n)  # pylint: disable=protected-access
    vals = rng.random((n, 4000))
    rows = list(vals)
    for a, b in net:
      rows[a], rows[b] = np.minimum(rows[a], rows[b]), np.maximum(rows[a], rows[b])
    np.testing.assert_array_equal(rows[n // 2], np.median(vals, axis=0))


def test_bilateral_filter_matches_cv2(u8_batch, batch):
  cases = [(0.05, 1.0, 1), (0.1, 2.0, 2), (0.2, 1.5, 3)]
  for sc, ss, r in cases:
    out = np.asarray(jax.jit(jax.vmap(lambda x, a, b: ops.bilateral_filter(x, a, b, r)),
                             )(batch, jnp.full(3, sc), jnp.full(3, ss)))[..., 0] * 255
    for i in range(len(u8_batch)):
      ref = cv2.bilateralFilter(u8_batch[i], 2 * r + 1, sc * 255, ss).astype(np.float64)
      diff = np.abs(out[i] - ref)
      assert diff.max() < 1.0 and diff.mean() < 0.6, (sc, ss, r, diff.max(), diff.mean())


def test_equalize_histogram_matches_cv2_exactly(u8_batch, batch):
  out = _to_levels(jax.jit(jax.vmap(ops.equalize_histogram))(batch))
  for i in range(len(u8_batch)):
    np.testing.assert_array_equal(out[i], cv2.equalizeHist(u8_batch[i]))
  flat = jnp.full((1, 16, 16, 1), 100 / 255, jnp.float32)  # constant slice: unchanged, like cv2
  np.testing.assert_array_equal(_to_levels(jax.vmap(ops.equalize_histogram)(flat))[0],
                                cv2.equalizeHist(np.full((16, 16), 100, np.uint8)))


@pytest.mark.parametrize('clip', [0.0, 1.0, 2.0, 4.0, 40.0])
def test_clahe_matches_cv2_exactly_on_power_of_two_tiles(clip, u8_batch, batch):
  f = jax.jit(jax.vmap(ops.clahe, in_axes=(0, None)))
  out = _to_levels(f(batch, clip))
  for i in range(len(u8_batch)):
    ref = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(u8_batch[i])
    np.testing.assert_array_equal(out[i], ref)


@pytest.mark.parametrize('shape,tiles', [((60, 72), (8, 8)), ((67, 53), (4, 6))])
def test_clahe_close_to_cv2_with_padding(shape, tiles):
  u8 = _u8_slices(2, *shape, seed=5)
  f = jax.jit(jax.vmap(lambda x: ops.clahe(x, 3.0, tiles)))
  out = _to_levels(f(_to_jax(u8)))
  for i in range(len(u8)):
    ref = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(tiles[1], tiles[0])).apply(u8[i])
    diff = np.abs(out[i] - ref.astype(np.int32))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


# ---------------------------------------------------------------------------------------- geometric


def _square(n: int = 4):
  img = np.zeros((n, SIZE, SIZE, 1), np.float32)
  img[:, 18:42, 22:40] = 0.9
  img[:, 18:42, 22:40] += np.linspace(0, 0.1, 18, dtype=np.float32)[None, None, :, None]
  return jnp.asarray(img), jnp.asarray((img > 0.5).astype(np.float32))


def test_affine_keeps_image_mask_alignment():
  image, mask = _square(4)
  angles = jnp.asarray([0.0, 17.0, -30.0, 45.0])
  shifts = jnp.asarray([[5.0, -3.0], [0.0, 0.0], [-7.5, 4.25], [3.0, 9.0]])
  flips = jnp.asarray([True, False, True, False])
  img, msk = jax.jit(jax.vmap(ops.affine))(image, mask, angles, shifts, flips)
  assert img.shape == image.shape and img.dtype == image.dtype and msk.dtype == mask.dtype
  img, msk = np.asarray(img), np.asarray(msk)
  assert img.min() >= 0 and img.max() <= 1
  assert set(np.unique(msk)) <= {0.0, 1.0}
  for i in range(4):
    th = img[i] > 0.45
    iou = (th & (msk[i] > 0)).sum() / (th | (msk[i] > 0)).sum()
    assert iou > 0.95, (i, iou)
  # The transform really moved things (except slice 1's centre-ish square under a pure rotation).
  assert (msk[0] != np.asarray(mask[0])).mean() > 0.05


def test_affine_direction_matches_cv2_warp_affine(u8_batch, batch):
  angles, shifts = [12.0, -25.0, 40.0], [(3.0, -2.0), (-6.5, 4.0), (0.0, 0.0)]
  img, _ = jax.jit(jax.vmap(ops.affine))(batch, batch, jnp.asarray(angles), jnp.asarray(shifts),
                                         jnp.zeros(3, bool))
  img = np.asarray(img)[..., 0]
  c = ((SIZE - 1) / 2, (SIZE - 1) / 2)
  for i, (a, (tx, ty)) in enumerate(zip(angles, shifts)):
    m = cv2.getRotationMatrix2D(c, a, 1.0)
    m[:, 2] += (tx, ty)
    ref = cv2.warpAffine(u8_batch[i].astype(np.float32) / 255, m, (SIZE, SIZE),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inner = np.s_[2:-2, 2:-2]  # border pixels differ in how the outside is blended in
    assert np.abs(img[i][inner] - ref[inner]).mean() < 0.005, a


def test_flip_twice_is_identity_and_matches_numpy(batch):
  mask = (batch > 0.5).astype(jnp.float32)
  twice = jax.jit(jax.vmap(lambda x, m: ops.flip(*ops.flip(x, m, True), True)))(batch, mask)
  np.testing.assert_array_equal(np.asarray(twice[0]), np.asarray(batch))
  np.testing.assert_array_equal(np.asarray(twice[1]), np.asarray(mask))
  aff = jax.jit(jax.vmap(lambda x, m: ops.affine(*ops.affine(x, m, flip=True), flip=True)))
  a_img, a_msk = aff(batch, mask)
  np.testing.assert_array_equal(np.asarray(a_img), np.asarray(batch))
  np.testing.assert_array_equal(np.asarray(a_msk), np.asarray(mask))
  once, _ = jax.jit(jax.vmap(lambda x, m: ops.affine(x, m, flip=True)))(batch, mask)
  np.testing.assert_array_equal(np.asarray(once), np.asarray(batch)[:, :, ::-1])


def test_random_affine_alignment_and_keys():
  image, mask = _square(4)
  f = jax.jit(jax.vmap(functools.partial(ops.random_affine, severity=10)))
  keys = jax.random.split(jax.random.key(7), 4)
  img, msk = f(keys, image, mask)
  img2, msk2 = f(keys, image, mask)
  np.testing.assert_array_equal(np.asarray(img), np.asarray(img2))
  np.testing.assert_array_equal(np.asarray(msk), np.asarray(msk2))
  img3, _ = f(jax.random.split(jax.random.key(8), 4), image, mask)
  assert not np.array_equal(np.asarray(img), np.asarray(img3))
  img, msk = np.asarray(img), np.asarray(msk)
  for i in range(4):
    th = img[i] > 0.45
    union = (th | (msk[i] > 0)).sum()
    if union:  # a severity-10 shift may move the square out of view
      assert (th & (msk[i] > 0)).sum() / union > 0.95
