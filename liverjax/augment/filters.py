"""Image filters shared by the AugMix ops (`ops.py`) and the domain transformation (`domain.py`).

Pure JAX on one plane f32[H, W]; parameters such as sigma may be traced (the
kernel size is static). Borders follow `jnp.pad` modes: 'reflect' is OpenCV's
BORDER_REFLECT_101, 'edge' is BORDER_REPLICATE.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


def shifted_views(plane: Array, radius: int, offsets: Sequence[tuple[int, int]],
                  mode: str) -> list[Array]:
  """Shifted views of a padded plane: out[k][y, x] = plane[y + dy_k, x + dx_k].

  Takes `plane` f32[H, W], a static `radius` >= every |dy|, |dx|, the (dy, dx)
  `offsets` and a `jnp.pad` mode for the border. Returns len(offsets) arrays f32[H, W].
  """
  h, w = plane.shape
  padded = jnp.pad(plane, radius, mode=mode)
  return [padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
          for dy, dx in offsets]


def gaussian_kernel_radius(sigma: Array | float, max_radius: int) -> Array:
  """The kernel radius OpenCV derives from sigma for 8-bit images: ksize = round(6 sigma + 1) | 1.

  Returns an int32 scalar in [0, max_radius] (the static cap truncates wide kernels).
  """
  n = jnp.round(jnp.asarray(sigma, jnp.float32) * 6 + 1).astype(jnp.int32)
  n = n | 1
  return jnp.clip(n // 2, 0, max_radius)


def gaussian_kernel(sigma: Array | float, max_radius: int,
                    radius: Array | int | None = None) -> Array:
  """A normalised 1-D Gaussian kernel f32[2 * max_radius + 1] for a (possibly traced) sigma.

  Taps beyond `radius` (default `gaussian_kernel_radius(sigma, max_radius)`) are zero, so the
  kernel equals cv2.getGaussianKernel(2 * radius + 1, sigma) centred in the fixed-size array.
  sigma is floored at 1e-3 pixels.
  """
  sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)
  if radius is None:
    radius = gaussian_kernel_radius(sigma, max_radius)
  x = jnp.arange(-max_radius, max_radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (x / sigma) ** 2)
  k = jnp.where(jnp.abs(x) <= radius, k, 0.0)
  return k / jnp.sum(k)


def separable_filter(plane: Array, kernel: Array, mode: str) -> Array:
  """Filters f32[H, W] with the 1-D `kernel` f32[2r + 1] along rows, then columns.

  The border is padded with `mode` (a `jnp.pad` mode). Returns f32[H, W].
  """
  r = (kernel.shape[0] - 1) // 2
  h, w = plane.shape
  p = jnp.pad(plane, ((0, 0), (r, r)), mode=mode)
  x = sum(kernel[i] * p[:, i:i + w] for i in range(2 * r + 1))
  p = jnp.pad(x, ((r, r), (0, 0)), mode=mode)
  return sum(kernel[i] * p[i:i + h, :] for i in range(2 * r + 1))


def gaussian_blur(plane: Array, sigma: Array | float, max_radius: int, *,
                  radius: Array | int | None = None, mode: str = "reflect") -> Array:
  """Separable Gaussian blur of f32[H, W] (`gaussian_kernel`, border `mode`). Returns f32[H, W]."""
  return separable_filter(plane, gaussian_kernel(sigma, max_radius, radius), mode)
