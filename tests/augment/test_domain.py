"""Tests for liverjax/augment/domain.py: the CT <-> MRI domain transformation."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax.augment import domain

# Phantom values per modality: air, fat, muscle, liver, fluid, bone.
_PHANTOM_VALUES = {
    "ct": dict(air=0.0, fat=0.15, muscle=0.52, liver=0.6, fluid=0.42, bone=0.95),
    "t1": dict(air=0.02, fat=0.9, muscle=0.48, liver=0.58, fluid=0.18, bone=0.05),
    "t2": dict(air=0.02, fat=0.2, muscle=0.33, liver=0.3, fluid=0.95, bone=0.06),
}


def phantom(size: int = 64, modality: str = "ct"):
  """A synthetic abdominal slice with the five tissue classes.

  Args:
    size: the side in pixels.
    modality: "ct", "mr"/"t1" (T1 in-phase values) or "t2".

  Returns:
    (image f32[size, size, 1] in [0, 1], labels int32[size, size]) where labels
    index `domain.CLASSES`: 0 air (outside and a bowel-gas disk), 1 fat (subcutaneous
    ring and a visceral disk), 2 soft tissue (muscle background and a liver
    disk), 3 fluid (a gallbladder/cyst disk), 4 bone (a vertebra disk). Values
    carry a little deterministic texture noise.
  """
  mod = {"mr": "t1"}.get(modality.lower(), modality.lower())
  if mod not in _PHANTOM_VALUES:
    raise ValueError(f"phantom: modality must be 'ct', 'mr', 't1' or 't2', got {modality!r}")
  v = _PHANTOM_VALUES[mod]
  yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size

  def ellipse(cx, cy, ax, ay):
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0

  image = np.full((size, size), v["air"], np.float32)
  labels = np.zeros((size, size), np.int32)
  for mask, name, label in (
      (ellipse(0.5, 0.5, 0.45, 0.37), "fat", domain.FAT),
      (ellipse(0.5, 0.5, 0.39, 0.31), "muscle", domain.SOFT),
      (ellipse(0.34, 0.45, 0.17, 0.17), "liver", domain.SOFT),
      (ellipse(0.66, 0.36, 0.1, 0.1), "fat", domain.FAT),
      (ellipse(0.42, 0.7, 0.08, 0.08), "fluid", domain.FLUID),
      (ellipse(0.6, 0.68, 0.075, 0.075), "bone", domain.BONE),
      (ellipse(0.72, 0.55, 0.06, 0.06), "air", domain.AIR)):
    image[mask] = v[name]
    labels[mask] = label
  rng = np.random.default_rng(0)
  image = np.clip(image + rng.normal(0.0, 0.01, image.shape) * (labels > 0), 0.0, 1.0)
  return image.astype(np.float32)[..., None], labels


SIZE = 64
BATCH = 32
AIR, FAT, SOFT, FLUID, BONE = range(5)


def _jit(fn):
  """jax.jit with XLA's backend optimisation off: ~3x faster compiles on CPU,
  fine at test sizes (the test suite is compile-bound)."""
  return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


@functools.cache
def _batch_fn(source):
  """jit(domain_transform_batch) with `prob` a traced keyword argument."""
  return _jit(functools.partial(domain.domain_transform_batch, source=source))


@functools.cache
def _keys_fn(source, target, params=domain.DomainParams()):
  """jit(vmap over keys) of domain_transform on one image."""
  fn = functools.partial(domain.domain_transform, source=source, target=target, params=params)
  return _jit(jax.vmap(fn, in_axes=(0, None)))


def _probs(image, source):
  return _jit(functools.partial(domain.tissue_probabilities, source=source))(jnp.asarray(image))


def _batch_images(modality):
  """BATCH slices: phantoms, then a blank slice and a constant slice."""
  image, _ = phantom(SIZE, modality)
  images = np.repeat(image[None], BATCH, axis=0)
  images[-2] = 0.0
  images[-1] = 0.5
  return jnp.asarray(images)


@functools.cache
def _run(source):
  """(source, images, domain_transform_batch output for key 0 with prob=1)."""
  images = _batch_images("ct" if source == "ct" else "t1")
  out = _batch_fn(source)(jax.random.key(0), images, prob=1.0)
  return source, images, np.asarray(out)


@pytest.fixture(params=["ct", "t1"])
def batch_run(request):
  return _run(request.param)


def _region_means(out, labels):
  """out f32[N, H, W, 1] -> f32[N, 5] means per phantom label."""
  out = np.asarray(out)[..., 0]
  return np.stack([out[:, labels == c].mean(axis=1) for c in range(5)], axis=1)


def test_phantom():
  for modality in ("ct", "mr", "t1", "t2"):
    image, labels = phantom(SIZE, modality)
    assert image.shape == (SIZE, SIZE, 1) and image.dtype == np.float32
    assert labels.shape == (SIZE, SIZE) and np.issubdtype(labels.dtype, np.integer)
    assert set(np.unique(labels)) == set(range(5))
    assert image.min() >= 0.0 and image.max() <= 1.0
  image, labels = phantom(SIZE, "ct")  # windowed CT values
  assert image[..., 0][labels == FAT].mean() < image[..., 0][labels == FLUID].mean()
  assert image[..., 0][labels == FLUID].mean() < image[..., 0][labels == SOFT].mean()
  assert image[..., 0][labels == SOFT].mean() < image[..., 0][labels == BONE].mean()


def test_batch_shape_dtype_range(batch_run):
  _, images, out = batch_run
  assert out.shape == images.shape and out.dtype == np.float32
  assert np.all(np.isfinite(out))  # blank and constant slices included
  assert out.min() >= 0.0 and out.max() <= 1.0


def test_batch_deterministic_per_key(batch_run):
  source, images, out = batch_run
  fn = _batch_fn(source)
  np.testing.assert_array_equal(np.asarray(fn(jax.random.key(0), images, prob=1.0)), out)
  other = np.asarray(fn(jax.random.key(1), images, prob=1.0))
  assert np.abs(other[:4] - out[:4]).max() > 0.05
  # Each slice of the batch gets its own draw.
  assert np.abs(out[0] - out[1]).max() > 0.05


def test_batch_prob(batch_run):
  source, images, out = batch_run
  fn = _batch_fn(source)
  # prob=0: identity, statically and as a traced value under jit.
  assert domain.domain_transform_batch(jax.random.key(0), images, source=source, prob=0.0) is images
  np.testing.assert_array_equal(np.asarray(fn(jax.random.key(0), images, prob=0.0)), images)
  # prob=1: every phantom slice changes; prob=0.5: some do, some do not.
  phantoms = np.asarray(images[:-2])
  assert np.all(np.abs(out[:-2] - phantoms).max(axis=(1, 2, 3)) > 0.05)
  half = np.asarray(fn(jax.random.key(3), images, prob=0.5))[:-2]
  changed = (np.abs(half - phantoms).max(axis=(1, 2, 3)) > 0).sum()
  assert 3 <= changed <= len(phantoms) - 3


def test_vmap_batch_matches_per_key_transform():
  """The batch draws slice i with key split(split(key)[i])[1]; vmap changes nothing."""
  _, images, out = _run("t1")
  keys = jax.random.split(jax.random.key(0), BATCH)
  k_transform = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
  single = _keys_fn("t1", "ct")(k_transform, images[0])  # same compile as the ordering test
  np.testing.assert_allclose(np.asarray(single)[:-2], out[:-2], atol=2e-5)


def test_ct_source_picks_t1_or_t2_style():
  _, _, out = _run("ct")
  _, labels = phantom(SIZE, "ct")
  m = _region_means(out[:-2], labels)
  t1_like = (m[:, FAT] > m[:, SOFT]) & (m[:, SOFT] > m[:, FLUID])
  t2_like = (m[:, FLUID] > m[:, SOFT]) & (m[:, FLUID] > m[:, FAT])
  assert t1_like.sum() >= 4 and t2_like.sum() >= 4
  assert (t1_like | t2_like).mean() >= 0.9


def test_mr_source_gives_black_ct_air():
  _, _, out = _run("t1")
  assert out[:-2, :6, :6, 0].max() == 0.0  # outside the body, as in windowed CT


def test_constant_slice_has_no_spatial_structure(batch_run):
  """Masks are never needed and nothing moves: a flat slice stays flat, up to
  noise (and, for MR targets, the smooth bias field)."""
  source, _, out = batch_run
  flat = out[-1, ..., 0]
  half = SIZE // 2
  quadrants = [flat[:half, :half], flat[:half, half:], flat[half:, :half], flat[half:, half:]]
  means = np.array([q.mean() for q in quadrants])
  if source != "ct":  # -> CT: no bias field, only noise
    assert means.max() - means.min() < 0.01
  assert out[-2].mean() <= 0.1  # a blank slice stays dark (MR: a Rician noise floor)


@pytest.mark.parametrize("source,target,check", [
    ("ct", "t1", lambda m: (m[:, FAT] > m[:, SOFT]) & (m[:, SOFT] > m[:, FLUID])),
    ("ct", "t2", lambda m: m[:, FLUID] > m[:, SOFT]),
    ("t1", "ct", lambda m: m[:, FAT] < m[:, SOFT]),
])
def test_target_tissue_ordering(source, target, check):
  image, labels = phantom(SIZE, "ct" if source == "ct" else "t1")
  keys = jax.random.split(jax.random.key(42), BATCH)
  out = _keys_fn(source, target)(keys, jnp.asarray(image))
  assert out.shape == (BATCH,) + image.shape
  assert check(_region_means(out, labels)).mean() > 0.9


def test_tissue_probabilities_ct_phantom():
  image, labels = phantom(SIZE, "ct")
  probs = np.asarray(_probs(image, "ct"))
  assert probs.shape == (SIZE, SIZE, 5) and probs.dtype == np.float32
  assert probs.min() >= 0.0 and probs.max() <= 1.0
  np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(probs.argmax(axis=-1), labels)


@pytest.mark.parametrize("modality,source", [("t1", "t1"), ("t2", "t2")])
def test_tissue_probabilities_mr_phantom(modality, source):
  image, labels = phantom(SIZE, modality)
  probs = np.asarray(_probs(image, source))
  np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
  cls = probs.argmax(axis=-1)
  for c in (FAT, SOFT, FLUID, BONE):
    assert (cls[labels == c] == c).mean() > 0.95, domain.CLASSES[c]
  assert np.all(cls[:4, :] == AIR)  # outside the body
  # The gas disk, dark inside the body, is air or "very dark in body" (bone).
  assert np.all(np.isin(cls[labels == AIR], (AIR, BONE)))


def test_tissue_probabilities_soft_between_thresholds():
  ramp = jnp.linspace(0.0, 1.0, 256).reshape(16, 16, 1)
  probs = np.asarray(_probs(ramp, "ct")).reshape(256, 5)
  np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
  assert np.any((probs.max(axis=-1) > 0.3) & (probs.max(axis=-1) < 0.7))  # smooth transitions
  # Along increasing CT intensity the dominant class runs air, fat, fluid, soft, bone.
  order = [c for i, c in enumerate(probs.argmax(-1)) if i == 0 or c != probs[i - 1].argmax()]
  assert order == [AIR, FAT, FLUID, SOFT, BONE]


def test_constant_image_stays_smooth_without_noise():
  """CT -> MR on a flat slice with noise off: only the smooth bias field (and the
  monotone photometric maps) remain; no edges, rims or texture appear."""
  params = dataclasses.replace(domain.DomainParams(), noise_prob=0.0)
  image = jnp.full((SIZE, SIZE, 1), 0.5, jnp.float32)
  keys = jax.random.split(jax.random.key(7), 8)
  out = np.asarray(_keys_fn("ct", None, params)(keys, image))
  steps = max(np.abs(np.diff(out, axis=1)).max(), np.abs(np.diff(out, axis=2)).max())
  assert steps < 0.04


def test_l1_distance_matches_brute_force():
  rng = np.random.default_rng(0)
  feature = rng.random((13, 17)) < 0.05
  got = np.asarray(_jit(domain._l1_distance)(jnp.asarray(feature)))
  ys, xs = np.nonzero(feature)
  yy, xx = np.mgrid[:13, :17]
  want = np.min(np.abs(yy[..., None] - ys) + np.abs(xx[..., None] - xs), axis=-1)
  np.testing.assert_array_equal(got, want)


def test_bad_arguments():
  image = jnp.zeros((8, 8, 1))
  with pytest.raises(ValueError, match="ambiguous"):  # T1 or T2: the caller must say
    domain.domain_transform(jax.random.key(0), image, source="mr")
  with pytest.raises(ValueError, match="source"):
    domain.domain_transform(jax.random.key(0), image, source="pet")
  with pytest.raises(ValueError, match="target"):
    domain.domain_transform(jax.random.key(0), image, source="ct", target="xray")
  with pytest.raises(ValueError, match="shape"):
    domain.domain_transform(jax.random.key(0), jnp.zeros((8, 8)), source="ct")
  with pytest.raises(ValueError, match="shape"):
    domain.domain_transform_batch(jax.random.key(0), image, source="ct")


def test_source_of_sequence():
  assert [domain.source_of_sequence(s) for s in ("ct", "t1_in", "t1_out", "t2")] == [
      "ct", "t1", "t1", "t2"]
  with pytest.raises(ValueError, match="sequence"):
    domain.source_of_sequence("flair")


def test_t2_slice_read_as_t2_keeps_the_liver_mid_grey():
  """T2-SPIR -> CT: soft tissue (liver) goes to CT soft-tissue grey, not black (the bug of
  reading T2 slices with the T1 ordering, where liver sits in the 'fluid' band)."""
  image, labels = phantom(SIZE, "t2")
  keys = jax.random.split(jax.random.key(5), BATCH)
  out = np.asarray(_keys_fn("t2", "ct")(keys, jnp.asarray(image)))
  m = _region_means(out, labels)
  assert (m[:, SOFT] > 0.3).mean() > 0.9, m[:, SOFT]
  assert (m[:, SOFT] > m[:, FAT]).mean() > 0.9


def test_enhanced_ct_liver_is_soft_tissue_not_bone():
  """Contrast-enhanced liver, 0.71-0.74 in window units (125-135 HU), is soft tissue."""
  image = jnp.full((16, 16, 1), 0.73, jnp.float32).at[:2].set(0.0)
  probs = np.asarray(_probs(image, "ct"))
  assert np.all(probs[4:12, 4:12].argmax(-1) == SOFT)


def test_zscore_like_input_keeps_the_air_dark():
  """Air at ~0.35 (z-score normalisation) instead of 0: the body is found relative to the
  slice's minimum, so the air outside it still becomes CT-black."""
  image, _ = phantom(SIZE, "t2")
  shifted = jnp.asarray(0.35 + 0.6 * image)
  keys = jax.random.split(jax.random.key(9), 8)
  out = np.asarray(_keys_fn("t2", "ct")(keys, shifted))
  assert out[:, :4, :4, 0].max() == 0.0
  assert out[:, SIZE // 2 - 4:SIZE // 2 + 4, SIZE // 2 - 4:SIZE // 2 + 4, 0].mean() > 0.2


def test_ct_clipped_above_air_still_reads_air():
  """BTCV-like CT clipped at -125 HU: air at ~0.09 in window units is air, not fat."""
  image, labels = phantom(SIZE, "ct")
  clipped = jnp.maximum(jnp.asarray(image), 0.0875)
  probs = np.asarray(_probs(clipped, "ct")).argmax(-1)
  assert np.all(probs[:4, :4] == AIR)
  assert (probs[labels == FAT] == FAT).mean() > 0.95
