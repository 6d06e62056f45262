"""CHAOS challenge metrics per 3D volume: DICE, RAVD, ASSD, MSSD (numpy + scipy.ndimage).

Definitions (Kavur et al. 2021, the CHAOS evaluation):
  * DICE = 2|A ∩ B| / (|A| + |B|)           (A: segmentation, B: reference)
  * RAVD = |V_ref - V_seg| / V_ref * 100     (percent; voxel volumes cancel, so voxel counts are used)
  * surface(X) = X xor erode(X), erosion with the 6-connected 3D structuring element, voxels outside
    the array counting as background (so a mask touching the array border has a surface there).
  * For every surface voxel of one mask, the Euclidean distance in mm (anisotropic spacing) to the
    nearest surface voxel of the other, voxel centres to voxel centres; both directions pooled:
    ASSD = mean of all these distances, MSSD = their maximum (the symmetric Hausdorff distance).

Edge cases (empty masks), chosen so that nothing raises and the values follow IEEE arithmetic:
  | prediction | reference | dice | ravd | assd, mssd |
  | empty      | empty     | 1.0  | nan  | nan        |   (agreement; ratios and distances undefined)
  | non-empty  | empty     | 0.0  | inf  | inf        |   (V_seg / 0; no reference surface to reach)
  | empty      | non-empty | 0.0  | 100  | inf        |   (all volume missed; no predicted surface)
`summarize` ignores nan (and counts them) but keeps inf, so a failed volume makes the mean inf
instead of disappearing silently.
"""
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_STRUCTURE_6 = ndimage.generate_binary_structure(3, 1)


def surface(mask: np.ndarray) -> np.ndarray:
  """Surface voxels of a 3D mask: mask xor erode(mask), 6-connected, outside counts as background.

  Args:
    mask: bool (or 0/1) array [Z, H, W].

  Returns:
    bool array [Z, H, W], True on the surface voxels.
  """
  mask = np.asarray(mask, bool)
  return mask ^ ndimage.binary_erosion(mask, structure=_STRUCTURE_6, border_value=0)


def surface_distances(prediction: np.ndarray, reference: np.ndarray,
                      spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """Nearest-surface distances in mm, each direction.

  Args:
    prediction, reference: bool/0-1 arrays [Z, H, W], both non-empty.
    spacing: (z, y, x) voxel spacing in mm.

  Returns:
    (pred_to_ref, ref_to_pred): float64 1-D arrays, for each surface voxel of the prediction
    (resp. reference) the distance to the nearest surface voxel of the other mask.
  """
  a = np.asarray(prediction, bool)
  b = np.asarray(reference, bool)
  if not a.any() or not b.any():
    raise ValueError("surface_distances needs two non-empty masks")
  # Crop to the bounding box of both masks plus one voxel, so erosion sees the same neighbourhood
  # (the pad is background, as outside the array) and the distance transforms stay small. Every
  # surface voxel of both masks lies inside the crop, so the distances are exact.
  coords = np.argwhere(a | b)
  lo = np.maximum(coords.min(axis=0) - 1, 0)
  hi = np.minimum(coords.max(axis=0) + 2, a.shape)
  box = tuple(slice(l, h) for l, h in zip(lo, hi))
  sa, sb = surface(a[box]), surface(b[box])
  sampling = tuple(float(s) for s in spacing)
  # The EDT of ~surface gives, at every voxel, the distance to the nearest surface voxel.
  dist_to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
  dist_to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
  return dist_to_b[sa], dist_to_a[sb]


def chaos_metrics(prediction: np.ndarray, reference: np.ndarray,
                  spacing: Sequence[float]) -> dict[str, float]:
  """The four CHAOS metrics of one 3D volume.

  Args:
    prediction: the segmentation, bool/0-1 array [Z, H, W].
    reference: the ground truth, same shape.
    spacing: (z, y, x) voxel spacing in mm (slice spacing, PixelSpacing row, PixelSpacing column).

  Returns:
    dict of Python floats: "dice" in [0, 1], "ravd" in percent (>= 0), "assd" and "mssd" in mm.
    Empty masks: see the module docstring (dice 1/0; ravd nan/inf/100; assd, mssd nan/inf).
  """
  a = np.asarray(prediction) > 0
  b = np.asarray(reference) > 0
  if a.shape != b.shape or a.ndim != 3:
    raise ValueError(f"prediction {a.shape} and reference {b.shape} must be equal 3D shapes")
  if len(spacing) != 3:
    raise ValueError(f"spacing must be (z, y, x), got {spacing!r}")
  n_a, n_b = int(a.sum()), int(b.sum())
  n_ab = int(np.logical_and(a, b).sum())
  dice = 1.0 if n_a + n_b == 0 else 2.0 * n_ab / (n_a + n_b)
  if n_b == 0:
    ravd = float("nan") if n_a == 0 else float("inf")
  else:
    ravd = abs(n_b - n_a) / n_b * 100.0
  if n_a == 0 and n_b == 0:
    assd = mssd = float("nan")
  elif n_a == 0 or n_b == 0:
    assd = mssd = float("inf")
  else:
    d_ab, d_ba = surface_distances(a, b, spacing)
    pooled = np.concatenate([d_ab, d_ba])
    assd, mssd = float(pooled.mean()), float(pooled.max())
  return {"dice": float(dice), "ravd": float(ravd), "assd": assd, "mssd": mssd}


def summarize(values: Sequence[float]) -> dict:
  """Mean and standard deviation over volumes, ignoring nan.

  Args:
    values: per-volume values (floats; nan = undefined, e.g. RAVD with an empty reference).

  Returns:
    {"mean", "std" (population, ddof=0), "n" (values used), "n_nan" (values ignored)}. inf values
    are kept (mean becomes inf, std nan). With no usable value, mean and std are nan.
  """
  v = np.asarray(list(values), np.float64).reshape(-1)
  nan = np.isnan(v)
  used = v[~nan]
  if used.size == 0:
    mean = std = float("nan")
  else:
    with np.errstate(invalid="ignore"):
      mean, std = float(used.mean()), float(used.std())
  return {"mean": mean, "std": std, "n": int(used.size), "n_nan": int(nan.sum())}
