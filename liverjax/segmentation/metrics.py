"""CHAOS challenge metrics per 3D volume: DICE, RAVD, ASSD, MSSD (numpy + scipy.ndimage).

Definitions (Kavur et al. 2021, the CHAOS evaluation):
  * DICE = 2|A ∩ B| / (|A| + |B|)           (A: segmentation, B: reference)
  * RAVD = |V_ref - V_seg| / V_ref * 100     (percent; voxel volumes cancel, so voxel counts are used)
  * surface(X) = X xor erode(X), erosion with the 6-connected 3D structuring element.
    Outside the array: by default (`border_is_surface=True`) voxels outside count as background, so
    a mask cut by the edge of the volume has a surface on the cut (scipy's default; the organisers'
    Python port). With `border_is_surface=False` they count as foreground and the cut is not
    surface (MATLAB's `imerode` pads binary images with 1s; the organisers' MATLAB code). On the
    CHAOS sample, whose liver reaches the last slice, this is exactly the published difference:
    ASSD 0.713 mm (True) vs 0.734 mm (False); DICE, RAVD and MSSD are unaffected there.
  * For every surface voxel of one mask, the Euclidean distance in mm (anisotropic spacing) to the
    nearest surface voxel of the other, voxel centres to voxel centres; both directions pooled:
    ASSD = mean of all these distances, MSSD = their maximum (the symmetric Hausdorff distance).

Edge cases (empty masks), chosen so that nothing raises and the values follow IEEE arithmetic:
  | prediction | reference | dice | ravd | assd, mssd |
  | empty      | empty     | 1.0  | nan  | nan        |   (agreement; ratios and distances undefined)
  | non-empty  | empty     | 0.0  | inf  | inf        |   (V_seg / 0; no reference surface to reach)
  | empty      | non-empty | 0.0  | 100  | inf        |   (all volume missed; no predicted surface)
With `border_is_surface=False` a non-empty mask filling the whole array has no surface voxels; its
ASSD/MSSD are then treated like an empty mask's (inf, or nan when both surfaces are empty).
`summarize` ignores nan (and counts them) but keeps inf, so a failed volume makes the mean inf
instead of disappearing silently.
"""
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_STRUCTURE_6 = ndimage.generate_binary_structure(3, 1)


def surface(mask: np.ndarray, *, border_is_surface: bool = True) -> np.ndarray:
  """Surface voxels of a 3D mask: mask xor erode(mask), 6-connected.

  Args:
    mask: bool (or 0/1) array [Z, H, W].
    border_is_surface: True: outside the array is background (mask voxels on the array's edge are
      surface); False: outside is foreground (MATLAB `imerode` convention).

  Returns:
    bool array [Z, H, W], True on the surface voxels.
  """
  mask = np.asarray(mask, bool)
  border_value = 0 if border_is_surface else 1
  return mask ^ ndimage.binary_erosion(mask, structure=_STRUCTURE_6, border_value=border_value)


def surface_distances(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float], *,
                      border_is_surface: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Nearest-surface distances in mm, each direction.

  Args:
    prediction, reference: bool/0-1 arrays [Z, H, W], both with surface voxels.
    spacing: (z, y, x) voxel spacing in mm.
    border_is_surface: see `surface`.

  Returns:
    (pred_to_ref, ref_to_pred): float64 1-D arrays, for each surface voxel of the prediction
    (resp. reference) the distance to the nearest surface voxel of the other mask.
  """
  a = np.asarray(prediction, bool)
  b = np.asarray(reference, bool)
  if not a.any() or not b.any():
    raise ValueError("surface_distances needs two non-empty masks")
  if a.shape != b.shape or a.ndim != 3:
    raise ValueError(f"prediction {a.shape} and reference {b.shape} must be equal 3D shapes")
  # Crop to the bounding box of both masks plus one voxel, so erosion sees the same neighbourhood
  # (the pad is background; where the masks reach the array edge the crop keeps that edge, so the
  # border convention is unchanged) and the distance transforms stay small. Every surface voxel of
  # both masks lies inside the crop, so the distances are exact.
  coords = np.argwhere(a | b)
  lo = np.maximum(coords.min(axis=0) - 1, 0)
  hi = np.minimum(coords.max(axis=0) + 2, a.shape)
  box = tuple(slice(l, h) for l, h in zip(lo, hi))
  sa = surface(a[box], border_is_surface=border_is_surface)
  sb = surface(b[box], border_is_surface=border_is_surface)
  if not sa.any() or not sb.any():
    raise ValueError("a mask has no surface voxels (it fills the array, border_is_surface=False)")
  sampling = tuple(float(s) for s in spacing)
  # The EDT of ~surface gives, at every voxel, the distance to the nearest surface voxel.
  dist_to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
  dist_to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
  return dist_to_b[sa], dist_to_a[sb]


def chaos_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float], *,
                  border_is_surface: bool = True) -> dict[str, float]:
  """The four CHAOS metrics of one 3D volume.

  Args:
    prediction: the segmentation, bool/0-1 array [Z, H, W].
    reference: the ground truth, same shape.
    spacing: (z, y, x) voxel spacing in mm (slice spacing, PixelSpacing row, PixelSpacing column).
    border_is_surface: whether mask voxels on the array's edge are surface (see `surface`):
      True matches the organisers' Python port, False their MATLAB code.

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
  has_a, has_b = n_a > 0, n_b > 0
  if not border_is_surface:
    # Outside counted as foreground, a non-empty mask has no surface voxel exactly when it fills
    # the array (otherwise some mask voxel has a background 6-neighbour): treat it as empty here.
    has_a = has_a and n_a < a.size
    has_b = has_b and n_b < b.size
  if not has_a and not has_b:
    assd = mssd = float("nan")
  elif not has_a or not has_b:
    assd = mssd = float("inf")
  else:
    d_ab, d_ba = surface_distances(a, b, spacing, border_is_surface=border_is_surface)
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
