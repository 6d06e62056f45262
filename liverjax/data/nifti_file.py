"""One NIfTI file opened and read with its damage named: the checks made before any voxel is
read, and the reads that name the file when its data is truncated or unreadable.

numpy + nibabel only. Every failure raises `ChaosError` (`liverjax.data.volume`) naming the
file: missing, not NIfTI, not 3D, a header that declares more voxel bytes than the file can
hold (checked before any array is allocated), an affine with a zero, dependent or non-finite
axis, truncated or damaged data (a cut .gz), more than half of the voxels non-finite (the
rule of `volume.finite_image`; fewer are replaced and reported). `liverjax.data.nifti` (the
dataset layouts) and `liverjax.predict` read through here.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import nibabel as nib
import numpy as np

from liverjax.data import volume as volume_lib
from liverjax.data.volume import ChaosError

# Deflate cannot compress better than about 1032:1: a .nii.gz whose header declares more
# bytes than that times its size cannot hold them (`check_declared_size`).
_MAX_DEFLATE_RATIO = 1032


def check_declared_size(img, path: pathlib.Path, what: str) -> None:
  """Refuses a header that declares more voxel bytes than its file can hold, before any
  array is allocated (a 1024^3 claim in a small file would otherwise take gigabytes)."""
  header = img.header
  declared = int(np.prod([int(n) for n in img.shape], dtype=np.float64)
                 * header.get_data_dtype().itemsize)
  size = os.path.getsize(path)
  if path.name.endswith(".gz"):
    limit, how = size * _MAX_DEFLATE_RATIO, f"a {size}-byte compressed file"
  else:
    limit, how = size - int(header.get_data_offset()), f"a {size}-byte file"
  if declared > limit:
    raise ChaosError(f"{path}: the header declares a {what} of {img.shape} "
                     f"{header.get_data_dtype()} voxels ({declared / 1e6:.1f} MB), more than "
                     f"{how} can hold (truncated, or a damaged header)")


def check_affine(img, path: pathlib.Path, what: str) -> None:
  """Refuses an affine with a non-finite entry or a zero (or dependent) axis: no voxel grid."""
  affine = np.asarray(img.affine, np.float64)
  axes = affine[:3, :3]
  if not np.isfinite(affine).all() or abs(np.linalg.det(axes)) < 1e-12:
    raise ChaosError(f"{path}: the {what}'s affine {axes.round(4).tolist()} has a zero, "
                     "dependent or non-finite axis: no voxel grid (a damaged header)")


def load(path: pathlib.Path, what: str):
  """Opens a 3D NIfTI file (a 4D one holding a single volume counts as 3D), data not read.

  Args:
    path: a .nii / .nii.gz file.
    what: "image" | "label", for the messages.

  Returns:
    The nibabel image, its header checked (`check_declared_size`, `check_affine`).

  Raises:
    ChaosError: naming the file: missing, unreadable, not 3D, a declared size the file
      cannot hold, no voxel grid.
  """
  if not path.is_file():
    raise ChaosError(f"{path}: {what} file missing")
  try:
    img = nib.load(str(path))
  except Exception as e:  # pylint: disable=broad-except
    raise ChaosError(f"{path}: unreadable NIfTI {what} ({type(e).__name__}: {e})") from e
  shape = img.shape
  if len(shape) == 4 and shape[3] == 1:
    img = img.slicer[..., 0]
  if len(img.shape) != 3:
    raise ChaosError(f"{path}: {what} of shape {shape}; expected a 3D volume")
  check_declared_size(img, path, what)
  check_affine(img, path, what)
  return img


def read_data(img, path: pathlib.Path, what: str, read) -> np.ndarray:
  """`read(img)`, with any failure of the file's data (truncated .gz, bad bytes) raised as a
  ChaosError naming `path` (the image and the label are each named as themselves)."""
  try:
    return np.asarray(read(img))
  except MemoryError as e:
    raise ChaosError(f"{path}: the {what} of {img.shape} voxels does not fit in memory") from e
  except Exception as e:  # pylint: disable=broad-except  (gzip, zlib, EOF, nibabel errors)
    raise ChaosError(f"{path}: unreadable NIfTI {what} data, truncated or damaged "
                     f"({type(e).__name__}: {e})") from e


def read_image_array(img, path) -> tuple[np.ndarray, list[str]]:
  """The voxels of a NIfTI image from `load_image`, under the non-finite voxel rule.

  Args:
    img: from `load_image`.
    path: its file, named in the messages.

  Returns:
    (array float32 in the file's own axis order, scl_slope / scl_inter applied; problems:
    the line `volume.finite_image` gives when non-finite voxels were replaced, else []).

  Raises:
    ChaosError: naming the file: truncated or unreadable data, more than half of the
      voxels non-finite.
  """
  path = pathlib.Path(path)
  array = read_data(img, path, "image", lambda i: i.get_fdata(dtype=np.float32))
  array, note = volume_lib.finite_image(array, path)
  return array, [note] if note else []


def load_image(path) -> Any:
  """Opens a 3D NIfTI image (a 4D one holding a single volume counts as 3D).

  Args:
    path: a .nii / .nii.gz file.

  Returns:
    The nibabel image (data not read yet).

  Raises:
    ChaosError: naming the file: missing, unreadable, not 3D, a declared size the file
      cannot hold, no voxel grid.
  """
  return load(pathlib.Path(path), "image")
