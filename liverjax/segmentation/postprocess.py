"""Post-processing of predicted 3D liver masks (numpy / scipy, on the host)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_STRUCTURES = {6: 1, 18: 2, 26: 3}  # connectivity -> ndimage.generate_binary_structure rank


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
