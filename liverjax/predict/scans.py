"""The scans of the input paths, found and read for prediction.

An input is a DICOM series folder (CT or MR, modality from the header), a NIfTI
file, a CHAOS patient folder (`CT/<id>`, `MR/<id>`), a CHAOS folder, or a NIfTI
dataset folder (dataset.json, or NIfTI files in it / imagesTr/ / imagesTs/ /
images/). `find_scans` lists its scans, `read_scan` reads one in the display
orientation of `liverjax.data.orientation`, keeping what maps a mask back to the
input's own voxel order (`liverjax.predict.outputs`).
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any

import numpy as np

from liverjax.data import chaos
from liverjax.data import dicom_series
from liverjax.data import nifti
from liverjax.data import orientation
from liverjax.predict.errors import PredictError

_NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_NIFTI_IMAGE_DIRS = ("imagesTr", "imagesTs", "images")
# Folder names that say nothing about the scan (the name is taken from above them).
_GENERIC_DIRS = {"dicom_anon", "dicom", "inphase", "outphase", "t1dual", "t2spir"}


@dataclasses.dataclass
class ScanRef:
  """One scan found on disk, not read yet.

  kind: "nifti" (a file), "dicom" (a series folder) or "chaos" (a CHAOS series
  folder: its masks are written as CHAOS PNGs too). modality / sequence /
  patient_id: what the layout says (None: from the file).
  """
  kind: str
  path: pathlib.Path
  name: str
  modality: str | None = None
  sequence: str | None = None
  patient_id: str | None = None


@dataclasses.dataclass
class Scan:
  """A scan read for prediction.

  `volume` is in the display orientation; `reorientation` takes the input's
  NIfTI-ordered array (for DICOM: [column, row, slice], slices in the reader's
  order) to it, and `affine` / `header` describe that array's grid.
  `dicom_files` are the source files of the slices (DICOM), `chaos_names` the
  CHAOS PNG name of each (CHAOS input), both in the reader's slice order.
  `header_sequence` is the MR sequence the input tells and how
  (`dicom_series.sequence_from_header`, or the CHAOS folder layout), None when it
  does not tell (the volume's `sequence` is then an assumption).
  """
  ref: ScanRef
  volume: chaos.Volume
  reorientation: orientation.Reorientation
  affine: np.ndarray
  native_shape: tuple[int, int, int]
  header: Any = None
  dicom_files: list[str] = dataclasses.field(default_factory=list)
  chaos_names: list[str] | None = None
  problems: list[str] = dataclasses.field(default_factory=list)
  header_sequence: tuple[str, str] | None = None


def _nifti_stem(path: pathlib.Path) -> str | None:
  for ext in _NIFTI_EXTENSIONS:
    if path.name.endswith(ext):
      return path.name[: -len(ext)]
  return None


def _dicom_name(folder: pathlib.Path) -> str:
  parts = [folder.name]
  while parts[-1].lower() in _GENERIC_DIRS and len(folder.parents) > len(parts):
    parts.append(folder.parents[len(parts) - 1].name)
  return "_".join(reversed([p for p in parts if p.lower() not in _GENERIC_DIRS] or parts))


def _chaos_refs(refs: list[chaos.SeriesRef]) -> list[ScanRef]:
  return [ScanRef("chaos", r.image_dir,
                  f"{r.modality}_{r.patient_id}" + ("" if r.sequence == "ct" else
                                                    f"_{r.sequence}"),
                  r.modality, r.sequence, r.patient_id)
          for r in refs if r.image_dir.is_dir()]


def _nifti_dataset_refs(folder: pathlib.Path) -> list[ScanRef]:
  files = [f for f in sorted(folder.iterdir()) if _nifti_stem(f) is not None]
  for sub in _NIFTI_IMAGE_DIRS:
    if (folder / sub).is_dir():
      files += [f for f in sorted((folder / sub).iterdir()) if _nifti_stem(f) is not None]
  return [ScanRef("nifti", f, re.sub(r"_0000$", "", _nifti_stem(f))) for f in files]


def find_scans(path: str | pathlib.Path) -> list[ScanRef]:
  """Lists the scans of one input path.

  Args:
    path: a NIfTI file; a CHAOS patient folder (`.../CT/<id>` or
      `.../MR/<id>`: every series of it); a CHAOS folder (anything
      `chaos.find_root` accepts: every series); a NIfTI dataset folder
      (NIfTI files in it or in imagesTr/ imagesTs/ images/); or a DICOM series
      folder (anything else holding files).

  Returns:
    The scans, not read.

  Raises:
    PredictError: naming `path`: it does not exist, a file that is not NIfTI,
      a folder with no files and none of these layouts.
  """
  path = pathlib.Path(path).expanduser()
  if not path.exists():
    raise PredictError(f"{path}: no such file or folder")
  if path.is_file():
    stem = _nifti_stem(path)
    if stem is None:
      raise PredictError(f"{path}: not a NIfTI file (.nii, .nii.gz); give DICOM as the "
                         "series folder")
    return [ScanRef("nifti", path, re.sub(r"_0000$", "", stem))]
  if any((path / d).is_dir() for d in ("DICOM_anon", "T1DUAL", "T2SPIR")):
    if path.parent.name not in ("CT", "MR"):
      raise PredictError(f"{path}: a CHAOS patient folder must sit in a CT/ or MR/ folder")
    refs = [r for r in chaos.discover(path.parent.parent)
            if r.modality == path.parent.name and r.patient_id == path.name]
    return _chaos_refs(refs)
  try:
    return _chaos_refs(chaos.discover(path))
  except chaos.ChaosError:
    pass  # not a CHAOS folder
  refs = _nifti_dataset_refs(path)
  if refs:
    return refs
  if any(f.is_file() and not f.name.startswith(".") for f in path.iterdir()):
    return [ScanRef("dicom", path, _dicom_name(path))]
  raise PredictError(f"{path}: no DICOM file, NIfTI file, CHAOS or NIfTI dataset layout "
                     "in this folder")


def _dataset_json_info(path: pathlib.Path, modality: str | None) -> nifti.DatasetInfo | None:
  """The dataset.json beside a NIfTI image's folder (or its own), if there is one; with
  `modality` given, one that cannot be read is not needed and is passed over."""
  for root in (path.parent, path.parent.parent):
    if (root / "dataset.json").is_file():
      try:
        return nifti.read_dataset_json(root, modality=modality)
      except chaos.ChaosError:
        if modality:
          return None
        raise
  return None


def _nifti_description(img) -> str:
  """The NIfTI header's `descrip` text ("" when empty)."""
  raw = np.asarray(img.header.get("descrip", b"")).item()
  text = raw.decode("latin-1", "replace") if isinstance(raw, bytes) else str(raw)
  return text.strip("\x00 ")


def _nifti_modality(path: pathlib.Path, image: np.ndarray, modality: str | None,
                    info: nifti.DatasetInfo | None) -> tuple[str, str | None]:
  """(modality, note) of a NIfTI image: `modality`, its dataset.json's, else a guess
  (CT when it has values below -50, as HU do; the note says so)."""
  if modality:
    return modality.upper(), None
  if info is not None:
    return info.modality, None
  guess = "CT" if float(np.min(image)) < -50.0 else "MR"
  return guess, (f"{path}: no --modality and no dataset.json; read as {guess} from its "
                 "intensities")


def _read_nifti(ref: ScanRef, modality: str | None) -> Scan:
  img = nifti.load_image(ref.path)
  array, problems = nifti.read_image_array(img, ref.path)
  info = _dataset_json_info(ref.path, modality)
  mod, note = _nifti_modality(ref.path, array, modality, info)
  problems += [note] if note else []
  words = " ".join(filter(None, [info.channel if info is not None else "",
                                 _nifti_description(img)]))
  sequence, evidence = dicom_series.sequence_from_header(words)
  scan = _scan(ref, array, np.asarray(img.affine, np.float64), mod, img.header,
               problems=problems, sequence=sequence if sequence in chaos.SEQUENCES else None)
  if mod == "MR" and sequence:
    scan.header_sequence = (sequence, f"{ref.path}: {evidence}")
  return scan


def _read_dicom(ref: ScanRef) -> Scan:
  volume, metas = dicom_series.read_image_series(ref.path, ref.patient_id, ref.sequence)
  problems = list(volume.problems)
  positions = [m["position"] for m in metas]
  if any(p is None for p in positions):
    z = volume.spacing[0]
    positions = [(0.0, 0.0, -z * k) for k in range(len(metas))]
    problems.append(f"{ref.path}: slices without ImagePositionPatient; the NIfTI grid "
                    "assumes a regular axial series")
  affine, note = orientation.dicom_affine(positions, metas[0]["orientation"],
                                          metas[0]["pixel_spacing"] or (1.0, 1.0),
                                          volume.spacing[0])
  if note:
    problems.append(f"{ref.path}: {note}")
  names = None
  if ref.kind == "chaos":
    names = ([f"liver_GT_{k:03d}.png" for k in range(len(metas))] if volume.modality == "CT"
             else [pathlib.Path(f).stem + ".png" for f in volume.image_files])
  scan = _scan(ref, volume.image.transpose(2, 1, 0), affine, volume.modality, None,
               problems=problems, window=volume.window, sequence=volume.sequence)
  scan.dicom_files = list(volume.image_files)
  scan.chaos_names = names
  if volume.modality == "MR":
    if ref.kind == "chaos" and ref.sequence:
      scan.header_sequence = (ref.sequence, f"the CHAOS folder {ref.path}")
    else:
      sequence, evidence = dicom_series.sequence_from_header(
          metas[0].get("description", ""), metas[0].get("echo_time"),
          metas[0].get("repetition_time"))
      if sequence:
        scan.header_sequence = (sequence, f"{metas[0]['path']}: {evidence}")
  return scan


def _scan(ref: ScanRef, array: np.ndarray, affine: np.ndarray, modality: str, header,
          *, problems: list[str], window=None, sequence: str | None = None) -> Scan:
  """A Scan from a NIfTI-ordered array [I,J,K] and its affine."""
  r = orientation.to_display(orientation.nifti_directions(affine))
  zooms = np.linalg.norm(affine[:3, :3], axis=0)
  image = np.ascontiguousarray(orientation.apply(array, r))
  volume = chaos.Volume(
      patient_id=ref.patient_id or ref.name, modality=modality,
      sequence=sequence or ref.sequence or ("ct" if modality == "CT" else "t2"),
      image=image, mask=np.zeros(image.shape, np.uint8), spacing=orientation.apply_spacing(zooms, r),
      window=window, image_files=[str(ref.path)], mask_files=[], problems=problems)
  return Scan(ref=ref, volume=volume, reorientation=r, affine=affine,
              native_shape=tuple(array.shape), header=header, problems=problems)


def read_scan(ref: ScanRef, modality: str | None = None) -> Scan:
  """Reads one scan into the display orientation, keeping its native grid.

  Args:
    ref: from `find_scans`.
    modality: "CT" | "MR" for NIfTI files whose dataset.json does not say it.

  Raises:
    PredictError or chaos.ChaosError: naming the file: unreadable, truncated, a
      header that declares more voxels than the file holds, no voxel grid, not 3D,
      no DICOM slice, a DICOM Modality other than CT / MR, more than half of the
      voxels non-finite (fewer are replaced by the lowest finite value and named in
      `problems`: the rule of `liverjax.data.volume.finite_image`, as in training).
  """
  if ref.kind == "nifti":
    return _read_nifti(ref, modality)
  return _read_dicom(ref)
