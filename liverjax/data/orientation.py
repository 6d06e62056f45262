"""One orientation for every volume: the DICOM display of an axial series.

Every reader (CHAOS DICOM, NIfTI) hands preprocessing volumes as [Z,H,W]
arrays with
  * rows (H) running anterior -> posterior (the spine at the bottom),
  * columns (W) running patient right -> left (the liver on the image's left),
  * slices (Z) running head -> feet,
and spacing (z, y, x) in mm along those axes.

Directions are unit vectors in DICOM patient coordinates (LPS+: +x patient
left, +y posterior, +z head). NIfTI affines are RAS+ (+x right, +y anterior):
`nifti_directions` converts. Oblique axes go to the nearest patient axis.
numpy only.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# The display orientation: direction (LPS) of each array axis (Z, H, W).
DISPLAY = np.array([[0.0, 0.0, -1.0],  # Z: head -> feet
                    [0.0, 1.0, 0.0],  # H: anterior -> posterior
                    [1.0, 0.0, 0.0]])  # W: right -> left

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def dicom_directions(orientation) -> np.ndarray:
  """LPS directions of the axes (Z, H, W) of a series read by `liverjax.data.chaos`.

  Args:
    orientation: ImageOrientationPatient, 6 floats (row cosine: the direction
      in which the column index grows; column cosine: the direction in which
      the row index grows), or None (taken as the standard axial 1,0,0,0,1,0).

  Returns:
    f64 [3,3], row a = the unit direction of array axis a. The slice axis is
    minus the normal row x col, because the reader orders slices by decreasing
    position along the normal.
  """
  if orientation is None:
    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
  row = np.asarray(orientation[:3], np.float64)
  col = np.asarray(orientation[3:], np.float64)
  normal = np.cross(row, col)
  if np.linalg.norm(normal) < 1e-6:
    raise ValueError(f"ImageOrientationPatient {tuple(orientation)}: parallel cosines")
  return np.stack([-normal / np.linalg.norm(normal), col / np.linalg.norm(col),
                   row / np.linalg.norm(row)])


def nifti_directions(affine) -> np.ndarray:
  """LPS directions of the array axes (i, j, k) of a NIfTI image.

  Args:
    affine: f [4,4] voxel -> RAS+ mm (`nibabel` `img.affine`).

  Returns:
    f64 [3,3], row a = the unit direction of array axis a in LPS.
  """
  m = np.asarray(affine, np.float64)[:3, :3]
  norms = np.linalg.norm(m, axis=0)
  if np.any(norms < 1e-9):
    raise ValueError(f"affine with a zero axis: {m.tolist()}")
  return (_RAS_TO_LPS @ (m / norms)).T


@dataclasses.dataclass(frozen=True)
class Reorientation:
  """How to bring an array to the display orientation.

  `axes[t]` is the source axis that becomes display axis t (Z, H, W);
  `flip[t]` says whether it is reversed after the transpose.
  """
  axes: tuple[int, int, int]
  flip: tuple[bool, bool, bool]

  @property
  def identity(self) -> bool:
    return self.axes == (0, 1, 2) and not any(self.flip)


def to_display(directions) -> Reorientation:
  """The axis permutation and flips that take axes with `directions` to DISPLAY.

  Args:
    directions: f [3,3], row a = direction (LPS) of source array axis a.

  Returns:
    A Reorientation. Each display axis takes the source axis closest to it
    (largest |cosine|), assigned greedily from the best match down.

  Raises:
    ValueError: when `directions` is not 3 independent directions.
  """
  d = np.asarray(directions, np.float64)
  if d.shape != (3, 3) or abs(np.linalg.det(d)) < 1e-3:
    raise ValueError(f"directions must be 3 independent axes, got {d.tolist()}")
  cos = d @ DISPLAY.T  # [source axis, display axis]
  axes, flip = [None] * 3, [False] * 3
  free_src, free_dst = {0, 1, 2}, {0, 1, 2}
  for flat in np.argsort(-np.abs(cos), axis=None):
    s, t = divmod(int(flat), 3)
    if s in free_src and t in free_dst:
      axes[t], flip[t] = s, bool(cos[s, t] < 0)
      free_src.discard(s)
      free_dst.discard(t)
  return Reorientation(tuple(axes), tuple(flip))


def apply(array: np.ndarray, reorientation: Reorientation) -> np.ndarray:
  """Transposes and flips a [A0,A1,A2] array to the display orientation (a view when possible)."""
  out = np.transpose(array, reorientation.axes)
  for t, f in enumerate(reorientation.flip):
    if f:
      out = np.flip(out, axis=t)
  return out


def from_display(array: np.ndarray, reorientation: Reorientation) -> np.ndarray:
  """The inverse of `apply`: a display-orientation [Z,H,W] array (and any trailing
  axes) back in the source array's axis order and directions.

  Args:
    array: [Z,H,W,...] in the display orientation (e.g. a predicted mask).
    reorientation: the one `apply` used to bring the source to the display.

  Returns:
    The array in the source order, `from_display(apply(x, r), r) == x` (a view
    when possible).
  """
  out = array
  for t, f in enumerate(reorientation.flip):
    if f:
      out = np.flip(out, axis=t)
  inverse = tuple(int(i) for i in np.argsort(reorientation.axes))
  return np.transpose(out, inverse + tuple(range(3, out.ndim)))


def dicom_affine(positions, orientation, pixel_spacing, slice_spacing: float = 1.0
                 ) -> tuple[np.ndarray, str | None]:
  """The NIfTI affine of a DICOM series stored as an array [column, row, slice].

  Args:
    positions: ImagePositionPatient of each slice, in the array's slice order
      (N x 3 mm, LPS); the first slice is the origin.
    orientation: ImageOrientationPatient (6 floats) or None (standard axial).
    pixel_spacing: PixelSpacing (row spacing, column spacing) mm.
    slice_spacing: the slice step (mm) used along the normal when there is a
      single slice.

  Returns:
    (affine f64 [4,4] voxel (i=column, j=row, k=slice) -> RAS+ mm, note):
    the slice step is (last - first) / (N - 1); note says when the positions
    do not lie on that regular grid (within 10% of a step), else None.
  """
  if orientation is None:
    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
  row = np.asarray(orientation[:3], np.float64)
  col = np.asarray(orientation[3:], np.float64)
  p = np.asarray(positions, np.float64).reshape(-1, 3)
  note = None
  if len(p) >= 2:
    step = (p[-1] - p[0]) / (len(p) - 1)
    off = np.linalg.norm(p - (p[0] + np.arange(len(p))[:, None] * step), axis=1)
    if off.max() > 0.1 * np.linalg.norm(step):
      note = (f"slice positions are not evenly spaced (up to {off.max():.2f} mm off a "
              f"{np.linalg.norm(step):.2f} mm grid): the NIfTI grid is approximate")
  else:
    normal = np.cross(row, col)
    step = -normal / np.linalg.norm(normal) * float(slice_spacing)
  lps = np.eye(4)
  lps[:3, 0] = row * float(pixel_spacing[1])
  lps[:3, 1] = col * float(pixel_spacing[0])
  lps[:3, 2] = step
  lps[:3, 3] = p[0]
  return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, note


def apply_spacing(spacing, reorientation: Reorientation) -> tuple[float, float, float]:
  """Spacing per source axis -> spacing per display axis (z, y, x) mm."""
  return tuple(float(spacing[a]) for a in reorientation.axes)


def reorient_volume(volume, orientation):
  """A CHAOS `Volume` (Z sorted by position, ImageOrientationPatient `orientation`)
  in the display orientation.

  Args:
    volume: a `liverjax.data.chaos.Volume` (any dataclass with image, mask
      [Z,H,W], spacing (z,y,x), image_files, mask_files, problems).
    orientation: ImageOrientationPatient of the series (6 floats) or None.

  Returns:
    `volume` itself for a standard axial series; otherwise a copy with image,
    mask and spacing reoriented (file lists reversed when the slice order is,
    and a note in `problems` when the slice axis changed).
  """
  r = to_display(dicom_directions(orientation))
  if r.identity:
    return volume
  image = np.ascontiguousarray(apply(volume.image, r))
  mask = np.ascontiguousarray(apply(volume.mask, r))
  files, mask_files, problems = list(volume.image_files), list(volume.mask_files), list(
      volume.problems)
  if r.axes[0] == 0 and r.flip[0]:
    files, mask_files = files[::-1], mask_files[::-1]
  elif r.axes[0] != 0:
    folder = files[0].rsplit("/", 1)[0] if files else "?"
    problems.append(f"{folder}: non-axial series (ImageOrientationPatient "
                    f"{tuple(orientation)}) resliced to axial; file lists do not map to slices")
  return dataclasses.replace(volume, image=image, mask=mask,
                             spacing=apply_spacing(volume.spacing, r), image_files=files,
                             mask_files=mask_files, problems=problems)
