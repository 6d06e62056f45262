"""Augmentation ops as pure JAX functions on one slice.

Every op takes one slice `image` f32[H, W, 1] with values in [0, 1] and returns an array of the same
shape and dtype, clipped to [0, 1]. Shapes are static; magnitudes (sigma, factor, angle, ...) may be
traced values, so the ops jit, vmap and sit inside `jax.lax.switch` (AugMix). Integer-like settings
that change array shapes (kernel sizes, radii, tile grids, bin counts) are static Python ints.

Three groups:
- deterministic photometric / filter ops with explicit parameters (`gaussian_blur(image, sigma)`,
  `clahe(image, clip_limit)`, ...). Where OpenCV has the same operation the semantics follow it (see
  each docstring), and tests/augment/test_ops.py checks the agreement;
- geometric ops that move an image and its mask together (`affine`, `rotate`, `translate`, `flip`):
  bilinear for the image, nearest for the mask, zero outside;
- sampled versions `random_<op>(key, image, severity)` that draw the op's magnitude from `key`,
  scaled by an integer `severity` in 1..10 as in AugMix (a level drawn uniformly in [0.1, severity],
  mapped linearly onto the op's range at severity 10), and their parametrised forms
  `sampled_<op>(u, field, image, severity)` taking pre-drawn uniforms (`draw_randoms`), which AugMix
  switches between (`PHOTOMETRIC_OPS`; keyed list `RANDOM_PHOTOMETRIC_OPS`); `random_affine` for the
  geometric part.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from liverjax.augment import filters

Array = jax.Array

_LEVELS = 256  # grey levels of the 8-bit quantisation used by the histogram ops


def _finish(out: Array, image: Array) -> Array:
  """Clips to [0, 1] and restores the input's dtype."""
  return jnp.clip(out, 0.0, 1.0).astype(image.dtype)


def _quantise(image: Array) -> Array:
  """Maps [0, 1] floats onto int32 grey levels 0..255 (round to nearest)."""
  return jnp.clip(jnp.round(image.astype(jnp.float32) * (_LEVELS - 1)), 0, _LEVELS - 1).astype(jnp.int32)


# ------------------------------------------------------------------------------------ filters/noise


def salt_and_pepper(key: Array, image: Array, amount: Array | float) -> Array:
  """Sets a random fraction `amount` (in [0, 1]) of pixels to 0 or 1, half each on average.

  Takes a PRNG key, `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  u = jax.random.uniform(key, image.shape)
  half = jnp.asarray(amount, jnp.float32) / 2
  out = jnp.where(u < half, 0.0, jnp.where(u > 1.0 - half, 1.0, image.astype(jnp.float32)))
  return _finish(out, image)


def gaussian_blur(image: Array, sigma: Array | float, max_radius: int = 8,
                  radius: Array | int | None = None) -> Array:
  """Separable Gaussian blur with OpenCV semantics (BORDER_REFLECT_101).

  `sigma` in pixels (may be traced); the kernel radius follows cv2's 8-bit rule
  (round(6 sigma + 1) | 1 taps) unless `radius` is given, and is capped at the static `max_radius`.
  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  x = filters.gaussian_blur(image[..., 0].astype(jnp.float32), sigma, max_radius,
                            radius=radius, mode='reflect')
  return _finish(x[..., None], image)


def _median_network(n: int) -> list[tuple[int, int]]:
  """Compare-exchange pairs (i < j: min to i, max to j) that put the median of n values at n // 2.

  Batcher's odd-even merge sort for the next power of two, keeping only comparators on real inputs
  (+inf padding above index n only ever moves up, so comparators touching it are no-ops) and, by a
  backward pass, only those that can influence position n // 2.
  """
  size = 1 << (n - 1).bit_length()
  pairs = []
  p = 1
  while p < size:
    k = p
    while k >= 1:
      for j in range(k % p, size - k, 2 * k):
        for i in range(min(k, size - j - k)):
          if (i + j) // (2 * p) == (i + j + k) // (2 * p):
            pairs.append((i + j, i + j + k))
      k //= 2
    p *= 2
  pairs = [(a, b) for a, b in pairs if b < n]
  needed, kept = {n // 2}, []
  for a, b in reversed(pairs):
    if a in needed or b in needed:
      kept.append((a, b))
      needed |= {a, b}
  return kept[::-1]


def median_blur(image: Array, ksize: int = 3) -> Array:
  """Median filter over a static ksize x ksize window (ksize 3 or 5), like cv2.medianBlur.

  The ksize^2 shifted neighbourhoods are stacked and sorted by a min/max sorting network (pruned to
  the comparators that decide the middle element; elementwise, so it fuses and runs well on
  accelerators, unlike a general sort). The border is replicated, which is what cv2.medianBlur does
  internally (its documentation: "uses BORDER_REPLICATE internally"; checked against cv2 5.0 - a
  BORDER_REFLECT_101 border would not match it at the edges).
  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  if ksize not in (3, 5):
    raise ValueError(f'median_blur: ksize must be 3 or 5, got {ksize}')
  r = ksize // 2
  offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
  vals = filters.shifted_views(image[..., 0].astype(jnp.float32), r, offsets, 'edge')
  for a, b in _median_network(len(vals)):
    vals[a], vals[b] = jnp.minimum(vals[a], vals[b]), jnp.maximum(vals[a], vals[b])
  return _finish(vals[len(vals) // 2][..., None], image)


def bilateral_filter(image: Array, sigma_color: Array | float, sigma_space: Array | float,
                     radius: int = 2) -> Array:
  """Edge-preserving bilateral filter with cv2.bilateralFilter semantics.

  `sigma_color` is in image units ([0, 1] scale; cv2's sigmaColor on uint8 is 255 * sigma_color),
  `sigma_space` in pixels; both may be traced. The window is the disc of static `radius` (cv2's
  d = 2 * radius + 1 keeps offsets with dy^2 + dx^2 <= radius^2), border BORDER_REFLECT_101.
  The result is not re-quantised: on uint8 input it is within one grey level of cv2, which rounds
  for radius >= 3 and truncates for radius 1-2 (checked against cv2 5.0).
  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  r = max(int(radius), 1)
  offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r]
  x = image[..., 0].astype(jnp.float32)
  h, w = x.shape
  padded = jnp.pad(x, r, mode='reflect')
  space_coeff = -0.5 / jnp.square(jnp.maximum(jnp.asarray(sigma_space, jnp.float32), 1e-3))
  color_coeff = -0.5 / jnp.square(jnp.maximum(jnp.asarray(sigma_color, jnp.float32), 1e-4))
  num = jnp.zeros_like(x)
  den = jnp.zeros_like(x)
  for dy, dx in offsets:  # accumulate tap by tap: one fused elementwise pass, no [K, H, W] stack
    n = padded[r + dy:r + dy + h, r + dx:r + dx + w]
    wk = jnp.exp(space_coeff * (dy * dy + dx * dx) + color_coeff * jnp.square(n - x))
    num = num + wk * n
    den = den + wk
  out = num / den
  return _finish(out[..., None], image)


def _smooth3(x: Array) -> Array:
  """PIL's ImageFilter.SMOOTH (3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13); border pixels kept."""
  h, w = x.shape
  p = jnp.pad(x, 1, mode='edge')
  s = sum(p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
  s = (s + 4 * x) / 13
  interior = jnp.zeros((h, w), bool).at[1:-1, 1:-1].set(True)
  return jnp.where(interior, s, x)


def sharpness(image: Array, factor: Array | float) -> Array:
  """PIL-like ImageEnhance.Sharpness: blend(smoothed, image, factor) = s + factor * (image - s).

  factor 1 is identity, 0 the smoothed image, > 1 sharpens. Border pixels are unchanged (as PIL).
  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  x = image[..., 0].astype(jnp.float32)
  s = _smooth3(x)
  out = s + jnp.asarray(factor, jnp.float32) * (x - s)
  return _finish(out[..., None], image)


# ---------------------------------------------------------------------------------------- intensity


def brightness(image: Array, delta: Array | float) -> Array:
  """Adds `delta` (in image units) to every pixel. Returns the same shape/dtype in [0, 1]."""
  return _finish(image.astype(jnp.float32) + jnp.asarray(delta, jnp.float32), image)


def contrast(image: Array, factor: Array | float) -> Array:
  """Scales deviations from the slice mean by `factor` (1 = identity, 0 = flat grey at the mean).

  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  x = image.astype(jnp.float32)
  mean = jnp.mean(x)
  return _finish(mean + jnp.asarray(factor, jnp.float32) * (x - mean), image)


def gamma(image: Array, g: Array | float) -> Array:
  """Power-law intensity transform image ** g (g > 0; < 1 brightens, > 1 darkens).

  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  x = jnp.clip(image.astype(jnp.float32), 0.0, 1.0)
  return _finish(jnp.power(x, jnp.maximum(jnp.asarray(g, jnp.float32), 1e-3)), image)


def equalize_histogram(image: Array) -> Array:
  """Global histogram equalisation on the 8-bit quantised slice, as cv2.equalizeHist.

  lut[v] = round((cdf[v] - cdf[v0]) * 255 / (N - cdf[v0])), v0 the lowest occupied level; a
  constant slice is returned unchanged. Output takes the 256 levels k / 255.
  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype in [0, 1].
  """
  v = _quantise(image[..., 0]).ravel()
  total = v.shape[0]
  hist = jnp.zeros(_LEVELS, jnp.int32).at[v].add(1)
  cdf = jnp.cumsum(hist)
  first = jnp.argmax(hist > 0)
  cdf_min = hist[first]
  denom = total - cdf_min
  scale = jnp.float32(_LEVELS - 1) / jnp.maximum(denom, 1).astype(jnp.float32)
  lut = jnp.clip(jnp.round((cdf - cdf_min).astype(jnp.float32) * scale), 0, _LEVELS - 1)
  lut = jnp.where(jnp.arange(_LEVELS) <= first, 0.0, lut)
  lut = jnp.where(denom == 0, jnp.arange(_LEVELS, dtype=jnp.float32), lut)
  out = lut[v].reshape(image.shape[:2]) / (_LEVELS - 1)
  return _finish(out[..., None], image)


def clahe(image: Array, clip_limit: Array | float = 2.0, tiles: tuple[int, int] = (8, 8)) -> Array:
  """Contrast limited adaptive histogram equalisation with cv2.createCLAHE semantics (8-bit).

  The slice is quantised to 256 levels. With `tiles` = (rows, cols) of the static grid: where the
  size is not divisible by the grid, the bottom/right are padded with BORDER_REFLECT_101 as cv2 does
  (by `tiles - size % tiles` rows and columns). Per tile: a 256-bin histogram, clipped at
  max(int(clip_limit * tile_area / 256), 1) (no clipping for clip_limit <= 0), the clipped excess
  spread evenly plus the remainder one count at a time every max(256 // remainder, 1) bins from bin
  0; lut = round(cdf * 255 / tile_area). Each pixel is bilinearly interpolated between the maps of
  the four nearest tile centres (edge tiles clamped), rounded to a grey level. `clip_limit` may be
  traced; `tiles` is static.

  Agreement with cv2 (tests/augment/test_ops.py): identical where the tile sides are powers of two
  (e.g. 64..512 px slices on an 8x8 grid: all interpolation weights are exact). Otherwise a few
  pixels (< 1%) differ by one grey level: compiled XLA contracts the interpolation into fused
  multiply-adds, which can send an exact .5 tie the other way. Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape/dtype,
  values k / 255 in [0, 1].
  """
  n_ty, n_tx = int(tiles[0]), int(tiles[1])
  h, w = image.shape[:2]
  v = _quantise(image[..., 0])
  if h % n_ty or w % n_tx:
    vp = jnp.pad(v, ((0, n_ty - h % n_ty), (0, n_tx - w % n_tx)), mode='reflect')
  else:
    vp = v
  th, tw = vp.shape[0] // n_ty, vp.shape[1] // n_tx
  area = th * tw
  n_tiles = n_ty * n_tx

  # Per-tile histograms via one scatter-add over (tile, level) bins.
  tile_vals = vp.reshape(n_ty, th, n_tx, tw).transpose(0, 2, 1, 3).reshape(n_tiles, area)
  bins = tile_vals + _LEVELS * jnp.arange(n_tiles, dtype=jnp.int32)[:, None]
  hist = jnp.zeros(n_tiles * _LEVELS, jnp.int32).at[bins.ravel()].add(1).reshape(n_tiles, _LEVELS)

  # Clip and redistribute (integer arithmetic, as cv2).
  clip_limit = jnp.asarray(clip_limit, jnp.float32)
  limit = jnp.maximum(jnp.floor(clip_limit * area / _LEVELS).astype(jnp.int32), 1)
  limit = jnp.where(clip_limit > 0, limit, jnp.iinfo(jnp.int32).max)
  excess = jnp.sum(jnp.maximum(hist - limit, 0), axis=1, keepdims=True)
  hist = jnp.minimum(hist, limit)
  batch = excess // _LEVELS
  residual = excess - batch * _LEVELS
  step = jnp.maximum(_LEVELS // jnp.maximum(residual, 1), 1)
  idx = jnp.arange(_LEVELS, dtype=jnp.int32)[None, :]
  extra = (residual > 0) & (idx % step == 0) & (idx // step < residual)
  hist = hist + batch + extra.astype(jnp.int32)

  lut_scale = jnp.float32(_LEVELS - 1) / jnp.float32(area)
  lut = jnp.clip(jnp.round(jnp.cumsum(hist, axis=1).astype(jnp.float32) * lut_scale), 0, _LEVELS - 1)
  lut = lut.ravel()  # [n_tiles * 256]

  # Bilinear interpolation between tile maps (over the unpadded slice).
  def axis_weights(n: int, tile: int, n_tiles_axis: int):
    f = jnp.arange(n, dtype=jnp.float32) * (jnp.float32(1) / jnp.float32(tile)) - jnp.float32(0.5)
    t1 = jnp.floor(f)
    a = f - t1
    t1 = t1.astype(jnp.int32)
    return jnp.maximum(t1, 0), jnp.minimum(t1 + 1, n_tiles_axis - 1), a, 1.0 - a

  ty1, ty2, ya, ya1 = axis_weights(h, th, n_ty)
  tx1, tx2, xa, xa1 = axis_weights(w, tw, n_tx)

  def look(ty, tx):
    return lut[(ty[:, None] * n_tx + tx[None, :]) * _LEVELS + v]

  top = look(ty1, tx1) * xa1[None, :] + look(ty1, tx2) * xa[None, :]
  bottom = look(ty2, tx1) * xa1[None, :] + look(ty2, tx2) * xa[None, :]
  res = top * ya1[:, None] + bottom * ya[:, None]
  out = jnp.clip(jnp.round(res), 0, _LEVELS - 1) / (_LEVELS - 1)
  return _finish(out[..., None], image)


# ---------------------------------------------------------------------------------------- geometric


def affine(image: Array, mask: Array, angle: Array | float = 0.0,
           translate_xy: Array | Sequence[float] = (0.0, 0.0),
           flip: Array | bool = False, scale: Array | float = 1.0) -> tuple[Array, Array]:
  """Moves a slice and its mask together: left-right flip, then rotation and scaling, then
  translation.

  `angle` in degrees, counter-clockwise on screen about the slice centre (as
  cv2.getRotationMatrix2D); `scale` a zoom factor about the centre (> 1 enlarges); `translate_xy`
  = (dx, dy) in pixels (x to the right, y down); `flip` a boolean (mirror x). All may be traced. Implemented with one sampling grid through
  `jax.scipy.ndimage.map_coordinates`: bilinear (order 1) for the image, nearest (order 0) for the
  mask, 0 outside the slice. Takes `image` f32[H, W, 1] in [0, 1] and `mask` [H, W, C] (any
  numeric dtype, typically 0/1 f32 with C = 1; every channel moves alike); returns (image, mask)
  with their shapes and dtypes.
  """
  h, w = image.shape[:2]
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing='ij')
  t = jnp.asarray(translate_xy, jnp.float32)
  zoom = jnp.asarray(scale, jnp.float32)
  u = (xx - cx - t[0]) / zoom
  v = (yy - cy - t[1]) / zoom
  theta = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
  c, s = jnp.cos(theta), jnp.sin(theta)
  # Inverse of the forward rotation x' = c x + s y, y' = -s x + c y (y pointing down).
  xs = c * u - s * v + cx
  ys = s * u + c * v + cy
  xs = jnp.where(jnp.asarray(flip, bool), (w - 1) - xs, xs)
  img = jax.scipy.ndimage.map_coordinates(image[..., 0].astype(jnp.float32), [ys, xs], order=1,
                                          mode='constant', cval=0.0)
  nearest = lambda m: jax.scipy.ndimage.map_coordinates(m, [ys, xs], order=0, mode='constant',
                                                        cval=0.0)
  msk = jnp.stack([nearest(mask[..., i].astype(jnp.float32)) for i in range(mask.shape[-1])],
                  axis=-1)
  return _finish(img[..., None], image), msk.astype(mask.dtype)


def flip(image: Array, mask: Array, do_flip: Array | bool = True) -> tuple[Array, Array]:
  """Left-right mirror of image and mask where `do_flip` (may be traced); exact, no resampling.

  Returns (image, mask) with their shapes and dtypes.
  """
  do_flip = jnp.asarray(do_flip, bool)
  return jnp.where(do_flip, image[:, ::-1], image), jnp.where(do_flip, mask[:, ::-1], mask)


# ---------------------------------------------------------------------------------- sampled versions
#
# AugMix convention: a level drawn uniformly in [0.1, severity] (severity a static int 1..10), and
# magnitude = level / 10 * (the op's magnitude at severity 10).

MAX_SALT_PEPPER = 0.10  # fraction of pixels at severity 10
MAX_BLUR_SIGMA = 2.5  # pixels; with BLUR_MAX_RADIUS 8 the cv2 radius rule is never truncated
BLUR_MAX_RADIUS = 8
MAX_BILATERAL_SIGMA_COLOR = 0.3  # image units
MAX_BILATERAL_SIGMA_SPACE = 3.0  # pixels (the disc radius is fixed at 2)
MAX_BRIGHTNESS = 0.3  # additive, either sign
MAX_CONTRAST = 0.9  # factor 1 +- this
MAX_SHARPNESS = 0.9  # factor 1 +- this
MAX_LOG_GAMMA = 0.92  # |log g|, g in [0.4, 2.5] at severity 10
MAX_CLAHE_CLIP = 6.0  # clip limit 1 + level / 10 * (this - 1)
MAX_ROTATE = 30.0  # degrees, either sign
MAX_TRANSLATE = 0.2  # fraction of the slice size, each axis, either sign


N_UNIFORMS = 3  # uniforms a sampled photometric op may use


def draw_randoms(key: Array, shape: Sequence[int]) -> tuple[Array, Array]:
  """The randomness of one sampled photometric op: (u f32[N_UNIFORMS], field f32[shape]), both
  uniform in [0, 1). Drawn once per AugMix step, outside the lax.switch, so the branches carry no
  random-number generation of their own (smaller programs, faster compiles, no wasted draws).
  """
  k_u, k_f = jax.random.split(key)
  return jax.random.uniform(k_u, (N_UNIFORMS,)), jax.random.uniform(k_f, tuple(shape))


def level_from_uniform(u: Array, severity: int) -> Array:
  """AugMix's level from a uniform u in [0, 1): uniform in [0.1, severity], divided by 10 (f32
  scalar in (0, 1])."""
  lo = min(0.1, float(severity))
  return (lo + u * (float(severity) - lo)) / 10.0


def _signed(u_level: Array, u_sign: Array, severity: int) -> Array:
  """level_from_uniform with a random sign (u_sign < 0.5 is negative): f32 scalar in [-1, 1]."""
  return jnp.where(u_sign < 0.5, -1.0, 1.0) * level_from_uniform(u_level, severity)


# Parametrised forms: (u f32[N_UNIFORMS], field f32[H, W, 1], image, severity) -> image.


def sampled_salt_and_pepper(u: Array, field: Array, image: Array, severity: int) -> Array:
  """salt_and_pepper with amount = level * MAX_SALT_PEPPER, the pixels chosen by `field`."""
  half = level_from_uniform(u[0], severity) * MAX_SALT_PEPPER / 2
  out = jnp.where(field < half, 0.0, jnp.where(field > 1.0 - half, 1.0, image.astype(jnp.float32)))
  return _finish(out, image)


def sampled_gaussian_blur(u: Array, field: Array, image: Array, severity: int) -> Array:
  """gaussian_blur with sigma = level * MAX_BLUR_SIGMA."""
  del field
  return gaussian_blur(image, level_from_uniform(u[0], severity) * MAX_BLUR_SIGMA, BLUR_MAX_RADIUS)


def sampled_median_blur(u: Array, field: Array, image: Array, severity: int) -> Array:
  """median_blur, ksize 3 for severity <= 5 and 5 above (static: severity is a Python int)."""
  del u, field
  return median_blur(image, 3 if severity <= 5 else 5)


def sampled_bilateral_filter(u: Array, field: Array, image: Array, severity: int) -> Array:
  """bilateral_filter, radius 2, sigma_color and sigma_space scaled by two independent levels."""
  del field
  sc = 0.02 + level_from_uniform(u[0], severity) * MAX_BILATERAL_SIGMA_COLOR
  ss = 0.5 + level_from_uniform(u[1], severity) * MAX_BILATERAL_SIGMA_SPACE
  return bilateral_filter(image, sc, ss, radius=2)


def sampled_brightness(u: Array, field: Array, image: Array, severity: int) -> Array:
  """brightness with delta = +-level * MAX_BRIGHTNESS."""
  del field
  return brightness(image, _signed(u[0], u[1], severity) * MAX_BRIGHTNESS)


def sampled_contrast(u: Array, field: Array, image: Array, severity: int) -> Array:
  """contrast with factor = 1 +- level * MAX_CONTRAST."""
  del field
  return contrast(image, 1.0 + _signed(u[0], u[1], severity) * MAX_CONTRAST)


def sampled_sharpness(u: Array, field: Array, image: Array, severity: int) -> Array:
  """sharpness with factor = 1 +- level * MAX_SHARPNESS."""
  del field
  return sharpness(image, 1.0 + _signed(u[0], u[1], severity) * MAX_SHARPNESS)


def sampled_gamma(u: Array, field: Array, image: Array, severity: int) -> Array:
  """gamma with g = exp(+-level * MAX_LOG_GAMMA)."""
  del field
  return gamma(image, jnp.exp(_signed(u[0], u[1], severity) * MAX_LOG_GAMMA))


def sampled_clahe(u: Array, field: Array, image: Array, severity: int) -> Array:
  """clahe on an 8x8 grid with clip_limit = 1 + level * (MAX_CLAHE_CLIP - 1)."""
  del field
  return clahe(image, 1.0 + level_from_uniform(u[0], severity) * (MAX_CLAHE_CLIP - 1.0), (8, 8))


def _keyed(fn: Callable[[Array, Array, Array, int], Array], name: str) -> Callable[[Array, Array, int], Array]:
  """`random_<op>(key, image, severity)`: the sampled op with its randomness drawn from `key`."""

  def random_op(key: Array, image: Array, severity: int) -> Array:
    u, field = draw_randoms(key, image.shape)
    return fn(u, field, image, severity)

  random_op.__name__ = f'random_{name}'
  random_op.__doc__ = (f'`{fn.__name__}` with its randomness drawn from `key`. Takes a PRNG key, '
                       '`image` f32[H, W, 1] in [0, 1] and a static severity 1..10; returns the '
                       'same shape/dtype in [0, 1].')
  return random_op


random_salt_and_pepper = _keyed(sampled_salt_and_pepper, 'salt_and_pepper')
random_gaussian_blur = _keyed(sampled_gaussian_blur, 'gaussian_blur')
random_median_blur = _keyed(sampled_median_blur, 'median_blur')
random_bilateral_filter = _keyed(sampled_bilateral_filter, 'bilateral_filter')
random_brightness = _keyed(sampled_brightness, 'brightness')
random_contrast = _keyed(sampled_contrast, 'contrast')
random_sharpness = _keyed(sampled_sharpness, 'sharpness')
random_gamma = _keyed(sampled_gamma, 'gamma')
random_clahe = _keyed(sampled_clahe, 'clahe')


def random_affine(key: Array, image: Array, mask: Array, severity: int,
                  flip_prob: float = 0.5) -> tuple[Array, Array]:
  """affine with angle = +-level * MAX_ROTATE, shift = +-level * MAX_TRANSLATE * size per axis
  (independent levels) and a left-right flip with probability `flip_prob`.

  Takes image/mask [H, W, 1]; returns (image, mask) with their shapes and dtypes.
  """
  h, w = image.shape[:2]
  u = jax.random.uniform(key, (7,))
  angle = _signed(u[0], u[1], severity) * MAX_ROTATE
  shift = jnp.stack([_signed(u[2], u[3], severity) * MAX_TRANSLATE * w,
                     _signed(u[4], u[5], severity) * MAX_TRANSLATE * h])
  do_flip = u[6] < flip_prob
  return affine(image, mask, angle, shift, do_flip)


def random_spatial(key: Array, image: Array, mask: Array, *, max_rotate: float = 15.0,
                   scale_range: tuple[float, float] = (0.85, 1.2),
                   max_translate: float = 0.08) -> tuple[Array, Array]:
  """A random rotation, zoom and shift of a slice and its mask together (no flip: the liver
  stays on its side).

  angle ~ U(-max_rotate, max_rotate) degrees, scale log-uniform in `scale_range`, shift ~
  U(-max_translate, max_translate) x the slice size per axis; then `affine` (bilinear image,
  nearest mask, 0 outside). Takes image f32[H, W, 1] in [0, 1] and mask [H, W, 1] (0/1 or a
  label map, any numeric dtype); returns (image, mask) with their shapes and dtypes.
  """
  h, w = image.shape[:2]
  u = jax.random.uniform(key, (4,), minval=-1.0, maxval=1.0)
  lo, hi = jnp.log(scale_range[0]), jnp.log(scale_range[1])
  scale = jnp.exp(lo + (u[1] + 1.0) / 2.0 * (hi - lo))
  shift = jnp.stack([u[2] * max_translate * w, u[3] * max_translate * h])
  return affine(image, mask, u[0] * max_rotate, shift, False, scale)


SampledOp = Callable[[Array, Array, Array, int], Array]

# The photometric / filter ops AugMix chooses from, in a fixed order (the lax.switch index), in the
# parametrised form fn(u, field, image, severity) (randomness from `draw_randoms`).
PHOTOMETRIC_OPS: tuple[tuple[str, SampledOp], ...] = (
    ('salt_and_pepper', sampled_salt_and_pepper),
    ('gaussian_blur', sampled_gaussian_blur),
    ('median_blur', sampled_median_blur),
    ('bilateral_filter', sampled_bilateral_filter),
    ('brightness', sampled_brightness),
    ('contrast', sampled_contrast),
    ('sharpness', sampled_sharpness),
    ('gamma', sampled_gamma),
    ('clahe', sampled_clahe),
)

# The same ops keyed: fn(key, image, severity).
RANDOM_PHOTOMETRIC_OPS: tuple[tuple[str, Callable[[Array, Array, int], Array]], ...] = (
    ('salt_and_pepper', random_salt_and_pepper),
    ('gaussian_blur', random_gaussian_blur),
    ('median_blur', random_median_blur),
    ('bilateral_filter', random_bilateral_filter),
    ('brightness', random_brightness),
    ('contrast', random_contrast),
    ('sharpness', random_sharpness),
    ('gamma', random_gamma),
    ('clahe', random_clahe),
)
