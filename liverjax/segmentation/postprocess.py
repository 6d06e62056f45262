"""Post-processing of predicted 3D liver masks (numpy / scipy, on the host): the largest
component, and whether a predicted liver is plausible (`liver_plausibility`, shared by
self-training's pseudo-label filter and `liverjax.predict`'s warnings)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_STRUCTURES = {6: 1, 18: 2, 26: 3}  # connectivity -> ndimage.generate_binary_structure rank
# A plausible adult liver, mL (self-training's default filter, predict's warning).
PLAUSIBLE_LIVER_ML = (500.0, 3500.0)


def largest_component(mask: np.ndarray, connectivity: int = 26) -> np.ndarray:
  """Keeps the largest 3D connected component of a binary mask.

  Args:
    mask: [Z, H, W] (any integer/bool dtype; non-zero = foreground).
    connectivity: 26 (default: voxels touching by a face, edge or corner are connected, so a liver
      that is thin between slices stays in one piece), 18 (faces and edges) or 6 (faces only).

  Returns:
    uint8 [Z, H, W] 0/1 with only the largest component; all zeros for an empty mask. Ties
    (several components of the largest size) keep the first in raster order (lowest z, then y,
    then x of its first voxel), so the result is deterministic.
  """
  m = np.asarray(mask)
  if m.ndim != 3:
    raise ValueError(f'postprocess.py largest_component: expected a [Z, H, W] mask, got shape {m.shape}')
  if connectivity not in _STRUCTURES:
    raise ValueError(f'postprocess.py largest_component: connectivity must be 6, 18 or 26, '
                     f'got {connectivity}')
  structure = ndimage.generate_binary_structure(3, _STRUCTURES[connectivity])
  labels, n = ndimage.label(m != 0, structure=structure)
  if n == 0:
    return np.zeros(m.shape, np.uint8)
  sizes = np.bincount(labels.ravel(), minlength=n + 1)
  sizes[0] = 0
  return (labels == int(np.argmax(sizes))).astype(np.uint8)  # argmax: first label among ties


def liver_plausibility(liver: np.ndarray, body: np.ndarray, spacing,
                       min_ml: float = PLAUSIBLE_LIVER_ML[0],
                       max_ml: float = PLAUSIBLE_LIVER_ML[1]) -> tuple[float, float, str]:
  """Whether a predicted liver is plausible: its volume, and its side of the body.

  Args:
    liver: [Z, H, W] mask (non-zero = liver) in the display orientation of
      `liverjax.data.orientation` (columns run from the patient's right to the left).
    body: [Z, H, W] bool, the body's voxels (its mean column is the body's centre).
    spacing: (z, y, x) mm of a voxel.
    min_ml, max_ml: the plausible volume.

  Returns:
    (liver_ml, right, reason): the volume in mL; the fraction of the liver's voxels on the
    patient's right of the body's centre (0 for an empty mask); "" when plausible, else why
    not: a volume outside [min_ml, max_ml], or most of the liver on the patient's left.
  """
  liver = np.asarray(liver) != 0
  liver_ml = float(np.count_nonzero(liver)) * float(np.prod(spacing)) / 1000.0
  body = np.asarray(body, bool)
  cols = np.nonzero(liver)[-1]
  centre = float(np.nonzero(body)[-1].mean()) if body.any() else liver.shape[-1] / 2.0
  right = float((cols < centre).mean()) if cols.size else 0.0
  reason = ""
  if not min_ml <= liver_ml <= max_ml:
    reason = (f"predicted liver {liver_ml:.0f} mL, outside the plausible "
              f"{min_ml:.0f}-{max_ml:.0f} mL")
  elif right < 0.5:
    reason = f"most of the predicted liver ({100 * (1 - right):.0f} %) on the patient's left"
  return liver_ml, right, reason
