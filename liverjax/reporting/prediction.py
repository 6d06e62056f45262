"""Writers of predicted liver masks: NIfTI, CHAOS submission PNGs, an overlay figure.

Pure I/O functions (numpy, nibabel, cv2): they write what they are given and
compute nothing about the model. The DICOM-SEG writer is
`liverjax.reporting.dicom_seg` (highdicom).
"""
from __future__ import annotations

import pathlib
from typing import Any, Sequence

import cv2
import nibabel as nib
import numpy as np

# CHAOS ground-truth gray values of the liver: CT masks 0/255, MR liver 63.
CHAOS_LIVER_VALUE = {"CT": 255, "MR": 63}
# The submission sample (../shared/data/chaos_ct_sample/submission_sample): liver 63.
SUBMISSION_LIVER_VALUE = 63


def submission_names(n: int) -> list[str]:
  """The file names of the CHAOS submission sample: results001.png .. (1-based, slice order)."""
  return [f"results{k + 1:03d}.png" for k in range(n)]


def write_nifti(path: str | pathlib.Path, array: np.ndarray, affine: np.ndarray,
                header: Any | None = None) -> pathlib.Path:
  """Writes a 3D array as NIfTI on the grid of `affine`.

  Args:
    path: a .nii or .nii.gz file (its folder is created).
    array: [I,J,K] in the voxel order of `affine` (uint8 mask or float32 map).
    affine: f [4,4] voxel -> RAS+ mm; written as both sform and qform.
    header: the input image's NIfTI header, copied (dimensions, units,
      codes) with the data type and scaling of `array`; None: a fresh
      NIfTI-1 header with scanner-anatomical sform / qform codes.

  Returns:
    The path written; reloaded, its `affine` and `shape` are `affine` and
    `array.shape`.
  """
  path = pathlib.Path(path)
  array = np.asarray(array)
  if header is None:
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
  else:
    img = nib.Nifti1Image(array, affine, header=header.copy())
    img.set_sform(affine, code=int(header.get("sform_code", 1)) or 1)
    img.set_qform(affine, code=int(header.get("qform_code", 1)) or 1)
  img.set_data_dtype(array.dtype)
  img.header.set_slope_inter(1.0, 0.0)
  path.parent.mkdir(parents=True, exist_ok=True)
  nib.save(img, str(path))
  return path


def write_chaos_pngs(folder: str | pathlib.Path, mask: np.ndarray, names: Sequence[str],
                     value: int) -> list[pathlib.Path]:
  """Writes one 8-bit PNG per slice, 0 outside the liver and `value` inside.

  Args:
    folder: where the PNGs go (created).
    mask: [N,H,W] (non-zero = liver), slice n in the source DICOM's pixel
      orientation (rows and columns as stored).
    names: the N file names (ground truth: CT `liver_GT_NNN.png`, MR
      `<DICOM stem>.png`; or `submission_names`).
    value: the liver's gray value (`CHAOS_LIVER_VALUE[modality]`: CT 255, MR
      63; or `SUBMISSION_LIVER_VALUE`).

  Returns:
    The N paths written; `liverjax.data.chaos_masks.read_mask_png` reads them back
    as the same gray values.
  """
  folder = pathlib.Path(folder)
  mask = np.asarray(mask)
  if mask.ndim != 3 or mask.shape[0] != len(names):
    raise ValueError(f"{folder}: {len(names)} names for a mask of shape {mask.shape}")
  folder.mkdir(parents=True, exist_ok=True)
  out = []
  for m, name in zip(mask, names):
    path = folder / name
    if not cv2.imwrite(str(path), ((m != 0) * value).astype(np.uint8)):
      raise OSError(f"{path}: could not write the PNG")
    out.append(path)
  return out


def overlay_slices(mask: np.ndarray, n: int = 4) -> list[int]:
  """The n slice indices with the most mask (in slice order), else n evenly spaced ones.

  Args:
    mask: [Z,H,W], non-zero = foreground.
    n: how many slices (at most Z).

  Returns:
    Sorted distinct slice indices.
  """
  z = mask.shape[0]
  n = max(1, min(n, z))
  area = np.asarray(mask != 0).reshape(z, -1).sum(1)
  if not area.any():
    return sorted({int(i) for i in np.linspace(0, z - 1, n).round()})
  return sorted(int(i) for i in np.argsort(-area, kind="stable")[:n])


def write_overlay(path: str | pathlib.Path, image: np.ndarray, mask: np.ndarray, *,
                  slices: Sequence[int] | None = None, height: int = 256,
                  title: str = "") -> pathlib.Path:
  """Writes a PNG of a few slices side by side, the mask tinted red with its outline.

  Args:
    path: the PNG file (its folder is created).
    image: float [Z,H,W] in the display orientation (any range: shown between
      its 1st and 99th percentiles).
    mask: [Z,H,W] on the same grid, non-zero = liver.
    slices: which slices (default `overlay_slices(mask)`).
    height: the height in pixels of each tile (width keeps the aspect ratio).
    title: text written on the first tile.

  Returns:
    The path written (an RGB PNG).
  """
  path = pathlib.Path(path)
  image = np.asarray(image, np.float32)
  if slices is None:
    slices = overlay_slices(mask)
  lo, hi = np.percentile(image, (1.0, 99.0))
  scale = 255.0 / max(float(hi - lo), 1e-6)
  tiles = []
  for z in slices:
    gray = np.clip((image[z] - lo) * scale, 0, 255).astype(np.uint8)
    m = (np.asarray(mask[z]) != 0).astype(np.uint8)
    width = max(1, round(height * gray.shape[1] / gray.shape[0]))
    gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    m = cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    tint = rgb.copy()
    tint[m > 0] = (0, 0, 255)
    rgb = cv2.addWeighted(rgb, 0.65, tint, 0.35, 0)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, (0, 0, 255), 1)
    cv2.putText(rgb, f"slice {z}", (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    tiles.append(rgb)
  grid = np.concatenate(tiles, axis=1)
  if title:
    cv2.putText(grid, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                cv2.LINE_AA)
  path.parent.mkdir(parents=True, exist_ok=True)
  if not cv2.imwrite(str(path), grid):
    raise OSError(f"{path}: could not write the PNG")
  return path
