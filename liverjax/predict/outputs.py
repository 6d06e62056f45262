"""The outputs of one predicted scan, on the input's own grid.

The mask is mapped back to the input's own voxel order (`native_mask`). Per
scan, in `<out>/<name>/` (`write_outputs`): mask.nii.gz (uint8 0/1, exactly the
input's affine and shape), probabilities.nii.gz, seg.dcm (DICOM-SEG, DICOM input),
Results/*.png (CHAOS input) and overlay.png; the program's help
(`liverjax.predict.__main__`) describes each. A predicted liver that reaches the
edge of the checkpoint's field-of-view crop is named in one line
(`field_of_view_edge_problem`).
"""
from __future__ import annotations

import pathlib

import numpy as np
from absl import logging

from liverjax.data import orientation
from liverjax.data import preprocess
from liverjax.predict import scans
from liverjax.predict.errors import PredictError
from liverjax.reporting import prediction as writers

try:  # highdicom may be missing on a GPU host: then no DICOM-SEG, said in one line
  from liverjax.reporting import dicom_seg
  DICOM_SEG_MISSING = None
except ImportError as _e:  # pylint: disable=invalid-name
  dicom_seg = None
  DICOM_SEG_MISSING = f"DICOM-SEG output needs highdicom ({_e}); pip install highdicom"


def native_mask(scan: scans.Scan, mask: np.ndarray) -> np.ndarray:
  """A display-orientation array of `scan` in the input's own voxel order.

  Returns:
    The array on the input's NIfTI grid [I,J,K] (`scan.native_shape`).
  """
  return np.ascontiguousarray(orientation.from_display(mask, scan.reorientation))


def write_outputs(scan: scans.Scan, mask: np.ndarray, folder: str | pathlib.Path, *,
                  probabilities: np.ndarray | None = None, dicom_seg_output: bool = True,
                  chaos_format: str = "ground_truth", model_version: str = "",
                  problems: list[str] | None = None) -> dict[str, str]:
  """Writes every output of one scan (see the module docstring).

  Args:
    scan: from `scans.read_scan`.
    mask: uint8 [Z,H,W] 0/1 in the display orientation (`model.predict_volume`).
    folder: the scan's output folder.
    probabilities: f32 [Z,H,W] in [0,1] (display orientation), or None.
    dicom_seg_output: write `seg.dcm` for DICOM input.
    chaos_format: CHAOS input's PNGs: "ground_truth" (named as the CHAOS ground
      truth, CT 0/255, MR liver 63) or "submission" (named as the submission
      sample: results001.png.. in slice order, liver 63).
    model_version: the trained model, recorded in the DICOM-SEG (`dicom_seg.write_dicom_seg`).
    problems: where an extra output that cannot be written is said (the DICOM-SEG: e.g. a
      series whose anonymiser stripped StudyInstanceUID); the other outputs are written
      all the same. Also logged.

  Returns:
    {output kind: path written}.
  """
  folder = pathlib.Path(folder)
  native = native_mask(scan, mask.astype(np.uint8))
  out = {"mask": str(writers.write_nifti(folder / "mask.nii.gz", native, scan.affine,
                                         scan.header))}
  if probabilities is not None:
    out["probabilities"] = str(writers.write_nifti(
        folder / "probabilities.nii.gz",
        native_mask(scan, probabilities.astype(np.float32)), scan.affine, scan.header))
  by_slice = native.transpose(2, 1, 0)  # DICOM input: [slice, row, column], reader order
  if scan.dicom_files and dicom_seg_output:
    if dicom_seg is None:
      raise PredictError(DICOM_SEG_MISSING)
    try:
      out["dicom_seg"] = str(dicom_seg.write_dicom_seg(
          folder / "seg.dcm", by_slice, scan.dicom_files, model_version=model_version))
    except Exception as e:  # pylint: disable=broad-except  (an extra output: say why, go on)
      (folder / "seg.dcm").unlink(missing_ok=True)
      line = (f"{scan.ref.path}: no DICOM-SEG written ({type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''}); the NIfTI mask and the other "
              "outputs are written")
      logging.warning("%s", line)
      if problems is not None:
        problems.append(line)
  if scan.chaos_names is not None:
    if chaos_format == "submission":
      names, value = writers.submission_names(len(by_slice)), writers.SUBMISSION_LIVER_VALUE
    elif chaos_format == "ground_truth":
      names, value = scan.chaos_names, writers.CHAOS_LIVER_VALUE[scan.volume.modality]
    else:
      raise ValueError(f"chaos_format={chaos_format!r}: expected ground_truth or submission")
    writers.write_chaos_pngs(folder / "Results", by_slice, names, value)
    out["chaos_png"] = str(folder / "Results")
  out["overlay"] = str(writers.write_overlay(
      folder / "overlay.png", scan.volume.image, mask,
      title=f"{scan.ref.name} ({scan.volume.modality})"))
  return out


def field_of_view_edge_problem(mask: np.ndarray, spacing_yx, field_of_view: float | None,
                               image_size: int, name: str) -> str | None:
  """A problem line when the predicted liver reaches where the field-of-view crop cut the scan.

  With `data.field_of_view`, a scan wider than it is cropped to its central field_of_view mm
  (`preprocess.crop_or_pad`, located on the scan by `preprocess.field_of_view_window`); liver
  outside that square is never predicted. The crop assumes the patient is centred: on the
  development scans emulated at a 460 mm field of view with the patient at one side,
  `best_mr_to_ct` fell from 0.87 to 0.60 (docs/results.md, the field of view, 2026-11-28).

  Args:
    mask: uint8 [Z,H,W] 0/1 on the scan's grid.
    spacing_yx: the scan's (row, column) pixel size in mm.
    field_of_view: the checkpoint's `data.field_of_view` (None: whole slices, never cut).
    image_size: its `data.image_size` S (the band checked is the outer 2 of the S pixels).
    name: the scan's name, for the message.

  Returns:
    None, or one line naming the scan, its size in mm and the field of view.
  """
  if field_of_view is None or not np.any(mask):
    return None
  _, h, w = mask.shape
  sy, sx = float(spacing_yx[0]), float(spacing_yx[1])
  window = preprocess.field_of_view_window((h, w), (sy, sx), image_size, field_of_view)
  touches = False
  for n, seen, axis in ((h, window[0], 1), (w, window[1], 2)):
    if seen is None:
      continue  # this side was padded, not cut
    start, stop = seen
    band = 2.0 * (stop - start) / image_size  # native pixels: two of the model's pixels
    centres = np.arange(n) + 0.5
    near_edge = (centres < start + band) | (centres > stop - band)
    profile = np.any(mask, axis=tuple(a for a in (0, 1, 2) if a != axis))
    touches |= bool(np.any(profile & near_edge))
  if not touches:
    return None
  return (f"{name}: the predicted liver reaches the edge of the {field_of_view:g} mm field of "
          f"view the model sees (the scan is {h * sy:.0f} x {w * sx:.0f} mm, cropped to its "
          "centre); any liver beyond it is not predicted")


def liver_ml(mask: np.ndarray, spacing) -> float:
  """The volume of a [Z,H,W] mask with (z, y, x) mm spacing, in mL."""
  return float(np.count_nonzero(mask) * np.prod(spacing) / 1000.0)
