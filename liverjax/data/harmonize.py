"""Test-time intensity harmonisation of prepared volumes (numpy, on the host).

`reference_quantiles` summarises the source domain's body-intensity distribution from its prepared
training slices; `histogram_match` maps a target-domain volume's intensities so that its body
histogram matches it (piecewise-linear quantile mapping, monotone, so the tissue ordering of the
target volume is kept: it cannot undo a contrast inversion between modalities, only align the
levels). Per-volume standardisation already exists as `data.normalization = "zscore"`
(`preprocess.standardize_volume`, applied to train and test volumes alike).
"""
from __future__ import annotations

import numpy as np

BODY_THRESHOLD = 0.05  # prepared [0, 1] intensities above this count as body when no mask is given


def _body(image: np.ndarray, body: np.ndarray | None, where: str) -> np.ndarray:
  if body is None:
    return image > BODY_THRESHOLD
  body = np.asarray(body)
  if body.shape != image.shape:
    raise ValueError(f'harmonize.py {where}: body shape {body.shape} != image shape {image.shape}')
  return body.astype(bool)


def _levels(n: int) -> np.ndarray:
  if n < 2:
    raise ValueError(f'harmonize.py: need n >= 2 quantiles, got {n}')
  return np.linspace(0.0, 1.0, n)


def reference_quantiles(images: np.ndarray, body: np.ndarray | None = None,
                        n: int = 101) -> np.ndarray:
  """The body-intensity distribution of a set of prepared slices, as quantiles.

  Args:
    images: float [N, H, W] or [N, H, W, 1] in [0, 1] (e.g. the source domain's training slices).
    body: bool of the same shape, or None: body = images > BODY_THRESHOLD (0.05).
    n: number of quantiles, at levels linspace(0, 1, n) (>= 2).

  Returns:
    float32 [n], non-decreasing, in [0, 1]. Raises ValueError when the body is empty.
  """
  x = np.asarray(images, np.float32)
  vals = x[_body(x, body, 'reference_quantiles')]
  if vals.size == 0:
    raise ValueError('harmonize.py reference_quantiles: no body voxels')
  return np.quantile(vals, _levels(n)).astype(np.float32)


def histogram_match(volume: np.ndarray, body: np.ndarray | None,
                    reference: np.ndarray, gamma: float = 1.0) -> np.ndarray:
  """Maps a prepared volume's intensities so its body histogram matches `reference`.

  The volume's own body quantiles q_k (at the levels of `reference`) are mapped to reference[k],
  linearly in between; 0 -> 0 and 1 -> 1 anchor the ends, so air stays black and the map is
  monotone on the whole [0, 1] range (voxels outside the body go through the same map).

  Args:
    volume: float [Z, H, W] (any shape) in [0, 1], one prepared volume.
    body: bool of the same shape, or None: volume > BODY_THRESHOLD (0.05).
    reference: float [n] non-decreasing quantiles from `reference_quantiles`.
    gamma: then x -> x ** gamma (> 0; 1: nothing; < 1 brightens the mid-tones, 0 and 1 stay).

  Returns:
    float32, same shape, in [0, 1]. A volume without body voxels is returned unchanged (as float32).
  """
  x = np.asarray(volume, np.float32)
  ref = np.asarray(reference, np.float64)
  if not gamma > 0:
    raise ValueError(f'harmonize.py histogram_match: gamma must be > 0, got {gamma}')
  if ref.ndim != 1 or ref.size < 2 or np.any(np.diff(ref) < 0):
    raise ValueError(f'harmonize.py histogram_match: reference must be non-decreasing quantiles '
                     f'[n >= 2], got shape {ref.shape}')
  vals = x[_body(x, body, 'histogram_match')]
  if vals.size == 0:
    return x.copy()
  own = np.quantile(vals.astype(np.float64), _levels(ref.size))
  xp = np.concatenate([[0.0], own, [1.0]])
  fp = np.concatenate([[0.0], np.clip(ref, 0.0, 1.0), [1.0]])
  # np.interp needs increasing xp: spread ties (flat stretches of the histogram) by a tiny step.
  xp = np.maximum.accumulate(xp + 1e-9 * np.arange(xp.size))
  out = np.clip(np.interp(x, xp, fp), 0.0, 1.0)
  if gamma != 1.0:
    out = out ** float(gamma)
  return out.astype(np.float32)
