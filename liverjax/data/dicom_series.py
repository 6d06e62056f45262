"""One DICOM series folder read into a volume: headers, series UIDs, slice order,
duplicates, pixels rescaled to HU.

numpy + pydicom only (no TensorFlow, no JAX).

One series per folder: the headers of every file are read first. Files with no
readable DICOM header (zero-byte, truncated, not DICOM) are reported and
skipped. The folder's majority SeriesInstanceUID is kept; files of another
series are reported and skipped (a tie between two series refuses the folder);
a file without a SeriesInstanceUID among files that have one is reported and
skipped.

Slice order (never the file name while anything better exists): the slice
position along the slice normal, `z = ImagePositionPatient . (row x col)` with
the normal from ImageOrientationPatient, in DECREASING z (slice 0 is the head
end of an axial series). The key is the best one that ANY slice has: position,
else increasing SliceLocation (in the CHAOS CT sample SliceLocation grows as z
falls, so both keys give the same order), else increasing InstanceNumber; a
slice without that key has no known place in the volume and is reported and
skipped: one damaged file never sends a whole series to name order. File name
order only when no slice has any key (reported). Slices at the same place
(within 0.1 mm) are duplicates: with identical pixels one is kept (the shortest
name) and the copies are reported and dropped; with different pixels nobody
can tell which is the patient's, so that place is kept as an unusable slice
(dropped with its mask, the other slices keep their ranks) and reported.

Bad input raises `ChaosError` (`liverjax.data.volume`) naming the file and the
problem. `read_image_series` reads a folder without masks (a new scan to predict
on); `liverjax.data.chaos.read_series` reads a CHAOS series by the same rules and
pairs each slice with its mask (`liverjax.data.chaos_masks`).
"""
from __future__ import annotations

import collections
import dataclasses
import pathlib
import re
from typing import Any

import numpy as np
import pydicom
from pydicom import uid as pydicom_uid

from liverjax.data import volume as volume_lib
from liverjax.data.volume import ChaosError
from liverjax.data.volume import Volume

# The file index of a CHAOS CT slice file name (i0040,0000b.dcm -> 40): the name order
# of last resort here, one proof of the mask ranks in `chaos_masks`.
CT_NAME_RE = re.compile(r"^i(\d+),", re.IGNORECASE)  # CHAOS CT: i0040,0000b.dcm
# Slices closer than this along the slice normal are at the same place (mm).
POSITION_TOL_MM = 0.1
# Names of files that may be a lost slice when unreadable (a README.txt is not).
_SLICE_SUFFIXES = frozenset({"", ".dcm", ".dicom", ".ima"})


# ----------------------------------------------------------------------------- single files


def read_dataset(path: pathlib.Path, stop_before_pixels: bool = False):
  """dcmread with errors turned into ChaosError naming the file.

  Args:
    path: a DICOM file (a file without preamble / meta header is read too).
    stop_before_pixels: read the header only.

  Returns:
    The pydicom Dataset (a missing TransferSyntaxUID set to implicit VR little endian).
  """
  try:
    return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
  except pydicom.errors.InvalidDicomError:
    pass  # maybe a DICOM file without preamble / meta header: try once more below
  except Exception as e:  # pylint: disable=broad-except
    raise ChaosError(f"{path}: unreadable DICOM file ({type(e).__name__}: {e})") from e
  try:
    ds = pydicom.dcmread(str(path), force=True, stop_before_pixels=stop_before_pixels)
  except Exception as e:  # pylint: disable=broad-except
    raise ChaosError(f"{path}: not a DICOM file ({type(e).__name__}: {e})") from e
  if "Rows" not in ds or "Columns" not in ds or (
      not stop_before_pixels and "PixelData" not in ds):
    raise ChaosError(f"{path}: not a DICOM file (no DICM header, no image)")
  if "TransferSyntaxUID" not in ds.file_meta:
    ds.file_meta.TransferSyntaxUID = pydicom_uid.ImplicitVRLittleEndian
  return ds


def _float_or_none(value) -> float | None:
  if value is None or value == "":
    return None
  if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
    if not len(value):
      return None
    value = value[0]
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


def _floats_or_none(value, n: int) -> tuple[float, ...] | None:
  if value is None:
    return None
  try:
    out = tuple(float(v) for v in value)
  except (TypeError, ValueError):
    return None
  return out if len(out) == n else None


def metadata(ds, path: pathlib.Path) -> dict[str, Any]:
  """The header fields of one slice that the readers use: the meta dict of
  `read_dicom_slice` (its docstring lists the keys), from the Dataset `ds` of `path`."""
  position = _floats_or_none(ds.get("ImagePositionPatient"), 3)
  orientation = _floats_or_none(ds.get("ImageOrientationPatient"), 6)
  z = None
  if position is not None:
    normal = np.array([0.0, 0.0, 1.0])
    if orientation is not None:
      n = np.cross(np.array(orientation[:3]), np.array(orientation[3:]))
      if np.linalg.norm(n) > 1e-6:
        normal = n / np.linalg.norm(n)
    z = float(np.dot(np.array(position), normal))
  center = _float_or_none(ds.get("WindowCenter"))
  width = _float_or_none(ds.get("WindowWidth"))
  instance = ds.get("InstanceNumber")
  try:
    instance = int(instance) if instance not in (None, "") else None
  except (TypeError, ValueError):
    instance = None
  rows, cols = ds.get("Rows"), ds.get("Columns")
  return {
      "path": str(path),
      "modality": str(ds.get("Modality", "")) or None,
      "series_uid": str(ds.get("SeriesInstanceUID", "")) or None,
      "position": position,  # ImagePositionPatient (x, y, z) mm
      "orientation": orientation,  # ImageOrientationPatient (6 cosines)
      "z": z,  # position along the slice normal, mm
      "slice_location": _float_or_none(ds.get("SliceLocation")),
      "instance_number": instance,
      "pixel_spacing": _floats_or_none(ds.get("PixelSpacing"), 2),  # (row=y, col=x) mm
      "slice_thickness": _float_or_none(ds.get("SliceThickness")),
      "spacing_between_slices": _float_or_none(ds.get("SpacingBetweenSlices")),
      "window": (center, width) if center is not None and width is not None else None,
      "echo_time": _float_or_none(ds.get("EchoTime")),
      "repetition_time": _float_or_none(ds.get("RepetitionTime")),
      # What the header says of the acquisition, in words (MR sequence names live here).
      "description": " ".join(str(ds.get(k, "") or "") for k in (
          "SeriesDescription", "ProtocolName", "SequenceName")).strip(),
      "rescale": (_float_or_none(ds.get("RescaleSlope")),
                  _float_or_none(ds.get("RescaleIntercept"))),
      "shape": (int(rows), int(cols)) if rows and cols else None,
      "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")) or None,
  }


def _pixels(ds, path: pathlib.Path, meta: dict[str, Any]) -> np.ndarray:
  ts = meta["transfer_syntax"]
  try:
    arr = ds.pixel_array
  except Exception as e:  # pylint: disable=broad-except
    msg = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
    try:
      ts_obj = pydicom_uid.UID(ts) if ts else None
      compressed = ts_obj is not None and ts_obj.is_compressed
      ts_name = ts_obj.name if ts_obj is not None else "unknown"
    except Exception:  # pylint: disable=broad-except
      compressed, ts_name = False, str(ts)
    if compressed:
      raise ChaosError(
          f"{path}: cannot decode compressed pixel data (transfer syntax {ts_name}); "
          f"install a decoder (pylibjpeg / gdcm) or decompress the file: {msg}") from e
    raise ChaosError(f"{path}: unreadable pixel data ({type(e).__name__}: {msg})") from e
  if arr.ndim != 2:
    raise ChaosError(
        f"{path}: expected a single-frame grayscale image, got pixel array of shape "
        f"{arr.shape} ({ds.get('PhotometricInterpretation', '?')})")
  slope, intercept = meta["rescale"]
  out = arr.astype(np.float32)
  if slope is not None and slope != 1.0:
    out *= np.float32(slope)
  if intercept is not None and intercept != 0.0:
    out += np.float32(intercept)
  return out


def sequence_from_header(description: str, echo_time: float | None = None,
                         repetition_time: float | None = None) -> tuple[str | None, str]:
  """The MR sequence a header tells, and how it tells it.

  The words first (SeriesDescription, ProtocolName, SequenceName; a NIfTI `descrip` or a
  dataset.json channel name): "T2" names T2; "T1" names T1, in phase or opposed / out of
  phase when said. Else the timing: EchoTime >= 60 ms with RepetitionTime >= 1000 ms is
  T2-weighted, EchoTime <= 20 ms with RepetitionTime <= 800 ms T1-weighted.

  Args:
    description: the header's words ("" when none).
    echo_time, repetition_time: ms, or None.

  Returns:
    (sequence, evidence): sequence "t2", "t1_in", "t1_out", "t1" (phase not said) or None
    (the header does not tell); evidence names the field and value it came from.
  """
  text = str(description).lower()
  if re.search(r"t2", text):
    return "t2", f"{description!r}"
  if re.search(r"t1", text):
    if re.search(r"opp|out", text):
      return "t1_out", f"{description!r}"
    if re.search(r"in[ _-]?phase|\bin\b|\bip\b", text):
      return "t1_in", f"{description!r}"
    return "t1", f"{description!r}"
  if echo_time is not None and repetition_time is not None:
    timing = f"EchoTime {echo_time:g} ms, RepetitionTime {repetition_time:g} ms"
    if echo_time >= 60 and repetition_time >= 1000:
      return "t2", timing
    if echo_time <= 20 and repetition_time <= 800:
      return "t1", timing
  return None, ""


def read_dicom_slice(path) -> tuple[np.ndarray, dict]:
  """Reads one DICOM slice.

  Args:
    path: a .dcm file.

  Returns:
    (pixels, meta): pixels float32 [H,W] with RescaleSlope/Intercept applied
    when present (CT: HU); meta a dict with keys path, modality, series_uid
    (SeriesInstanceUID or None), position
    (ImagePositionPatient or None), orientation, z (position along the slice
    normal, mm, or None), slice_location, instance_number, pixel_spacing
    ((y, x) mm or None), slice_thickness, spacing_between_slices, window
    ((center, width) or None; first value when multi-valued), echo_time, repetition_time
    (ms or None), description (SeriesDescription, ProtocolName, SequenceName),
    rescale ((slope, intercept), None where absent), shape ((H, W)),
    transfer_syntax.

  Raises:
    ChaosError: naming the file: not DICOM, truncated, compressed with no
      decoder available, no pixel data, not a single-frame grayscale image.
  """
  path = pathlib.Path(path)
  ds = read_dataset(path)
  meta = metadata(ds, path)
  return _pixels(ds, path, meta), meta


# ----------------------------------------------------------------------------- series


@dataclasses.dataclass
class Slice:
  """One file of a series: its header `meta` (`metadata`), its pixels (float32 [H,W],
  rescaled) or None, and the `error` that made the pixels unreadable (None if none)."""
  path: pathlib.Path
  meta: dict[str, Any]
  pixels: np.ndarray | None
  error: str | None


def list_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """The files of `folder` (not its subfolders, no hidden files), sorted by path."""
  return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))


def _could_be_slice(path: pathlib.Path) -> bool:
  return path.suffix.lower() in _SLICE_SUFFIXES


def _read_files(files: list[pathlib.Path], problems: list[str]
                ) -> tuple[list[Slice], list[pathlib.Path]]:
  """Reads every file; returns (slices with a readable header, lost files).

  A file with no readable DICOM header is reported and skipped; when its name
  could be a slice's (`_SLICE_SUFFIXES`) it is a lost slice of the series.
  """
  slices, lost = [], []
  for f in files:
    try:
      ds = read_dataset(f)
    except ChaosError as e:
      problems.append(f"{e}; skipped")
      if _could_be_slice(f):
        lost.append(f)
      continue
    meta = metadata(ds, f)
    try:
      pixels, error = _pixels(ds, f, meta), None
    except ChaosError as e:
      pixels, error = None, str(e)
    slices.append(Slice(f, meta, pixels, error))
  return slices, lost


def _one_series(slices: list[Slice], image_dir: pathlib.Path, problems: list[str]
                ) -> tuple[list[Slice], list[pathlib.Path]]:
  """Keeps the folder's majority SeriesInstanceUID; returns (kept, lost files).

  Files of another series are reported and skipped; a file without a
  SeriesInstanceUID where the others have one is reported, skipped and lost
  (it may be a damaged slice of this series). Two series of the same size
  cannot be told apart: ChaosError.
  """
  uids = collections.Counter(s.meta["series_uid"] for s in slices if s.meta["series_uid"])
  if not uids:
    return slices, []
  ranked = uids.most_common()
  main, n = ranked[0]
  if len(ranked) > 1 and ranked[1][1] == n:
    raise ChaosError(f"{image_dir}: {n} files each of series {main} and {ranked[1][0]}; "
                     "one series per folder expected and neither is the majority")
  kept, lost = [], []
  for s in slices:
    uid = s.meta["series_uid"]
    if uid == main:
      kept.append(s)
    elif uid is None:
      why = f"; {s.error}" if s.error else ""
      problems.append(f"{s.path}: no SeriesInstanceUID (the folder's {n} other slices are "
                      f"series {main}){why}; skipped")
      lost.append(s.path)
    else:
      problems.append(f"{s.path}: belongs to another series ({uid}) than the folder's "
                      f"{n} slices of series {main}; skipped")
  return kept, lost


def _order_keys():
  return (("position", lambda m: None if m["z"] is None else -m["z"]),
          ("SliceLocation", lambda m: m["slice_location"]),
          ("InstanceNumber", lambda m: m["instance_number"]))


def _order(slices: list[Slice], image_dir: pathlib.Path, problems: list[str]
           ) -> tuple[list[Slice], list[float], str, list[pathlib.Path]]:
  """Sorts slices (module docstring); returns (ordered, order values, key kind, lost files).

  The key is the best one that any slice has (position, SliceLocation,
  InstanceNumber); slices lacking it have no known place in the volume and are
  reported, skipped and lost: never a fallback to name order for the whole
  series because of one damaged file. With no key at all, file name order
  (reported).
  """
  for kind, get in _order_keys():
    have = [s for s in slices if get(s.meta) is not None]
    if have:
      break
  else:
    problems.append(f"{image_dir}: no ImagePositionPatient / SliceLocation / "
                    "InstanceNumber on any slice; slices ordered by file name")

    def name_key(s):
      m = CT_NAME_RE.match(s.path.name)
      return (int(m.group(1)) if m else float("inf"), s.path.name)

    ordered = sorted(slices, key=name_key)
    return ordered, [float(i) for i in range(len(ordered))], "file name", []
  lost = []
  for s in slices:
    if get(s.meta) is None:
      why = f"; {s.error}" if s.error else ""
      problems.append(f"{s.path}: no {kind} while the other {len(have)} slices of the "
                      f"series have one, so its place in the volume is unknown{why}; skipped")
      lost.append(s.path)
  ordered = sorted(have, key=lambda s: (get(s.meta), s.path.name))
  return ordered, [float(get(s.meta)) for s in ordered], kind, lost


def _merge_duplicates(ordered: list[Slice], values: list[float], kind: str,
                      problems: list[str]) -> tuple[list[Slice], list[float]]:
  """One slice per position: copies dropped, conflicting slices replaced by an error.

  Slices at the same position (within 0.1 mm; the same InstanceNumber when that
  orders) with the same pixels are copies: the one with the shortest name is
  kept, the others reported and dropped. With different pixels nobody can say
  which is the patient's slice: all are reported and the position is kept as
  an unusable slice (its mask is dropped with it), so the ranks of the other
  slices do not move.
  """
  if kind == "file name" or not ordered:
    return ordered, values
  tol = 0.5 if kind == "InstanceNumber" else POSITION_TOL_MM
  groups = [[0]]
  for i in range(1, len(ordered)):
    if values[i] - values[groups[-1][0]] <= tol:
      groups[-1].append(i)
    else:
      groups.append([i])
  out, out_values = [], []
  for g in groups:
    members = [ordered[i] for i in g]
    out_values.append(values[g[0]])
    if len(members) == 1:
      out.append(members[0])
      continue
    readable = sorted((s for s in members if s.error is None),
                      key=lambda s: (len(s.path.name), s.path.name))
    if not readable or all(np.array_equal(readable[0].pixels, s.pixels) for s in readable):
      keep = readable[0] if readable else members[0]
      for s in members:
        if s is not keep:
          same = "same pixels" if s.error is None else "its own pixels unreadable"
          problems.append(f"{s.path}: duplicate of {keep.path.name} (same {kind} "
                          f"{_fmt(values[g[0]], kind)}, {same}); dropped")
      out.append(keep)
    else:
      names = ", ".join(s.path.name for s in members)
      msg = (f"{members[0].path.parent}: slices {names} share the {kind} {_fmt(values[g[0]], kind)} but "
             "differ in their pixels; which one is the patient's is unknown, all dropped")
      out.append(Slice(members[0].path, members[0].meta, None, msg))
  return out, out_values


def _fmt(value: float, kind: str) -> str:
  if kind == "position":
    return f"z = {-value:g} mm"
  return f"{value:g}"


def series_z_spacing(kept: list[Slice]) -> tuple[float, str | None]:
  """The slice spacing in mm of ordered slices (the median step of their positions, else
  SpacingBetweenSlices / SliceThickness, else 1.0), and a note when it is the 1.0 guess."""
  zs = [s.meta["z"] for s in kept if s.meta["z"] is not None]
  if len(zs) == len(kept) and len(zs) >= 2:
    diffs = np.abs(np.diff(np.array(zs)))
    diffs = diffs[diffs > 1e-4]
    if diffs.size:
      return float(np.median(diffs)), None
  for key in ("spacing_between_slices", "slice_thickness"):
    v = kept[0].meta[key]
    if v is not None and v > 0:
      return float(v), None
  return 1.0, "no slice positions or SliceThickness; z spacing set to 1.0 mm"


def series_pixel_spacing(kept: list[Slice]) -> tuple[tuple[float, float], str | None]:
  """(row, column) mm of the series' first slice, and a note when PixelSpacing is missing."""
  px = kept[0].meta["pixel_spacing"]
  if px is None:
    return (1.0, 1.0), ("no PixelSpacing; in-plane spacing set to 1.0 mm (surface distances "
                        "and data.field_of_view take it as given)")
  return (float(px[0]), float(px[1])), None


def ordered_slices(image_dir: pathlib.Path, label: str, problems: list[str]):
  """The slices of one series folder in position order (module docstring).

  Returns:
    (files, ordered slices, their order values, the key kind, lost files): every
    file of the folder, the slices of its majority series with duplicates merged,
    and the files that may be lost slices of the series.

  Raises:
    ChaosError: naming the folder: empty, no readable DICOM slice, two series of
      the same size.
  """
  files = list_files(image_dir)
  if not files:
    raise ChaosError(f"{image_dir}: empty folder, no DICOM files ({label})")
  slices, lost = _read_files(files, problems)
  if not slices:
    raise ChaosError(f"{image_dir}: no readable DICOM slice among {len(files)} files "
                     f"({label}); first problem: {problems[0]}")
  slices, lost_series = _one_series(slices, image_dir, problems)
  ordered, values, kind, lost_order = _order(slices, image_dir, problems)
  ordered, values = _merge_duplicates(ordered, values, kind, problems)
  return files, ordered, values, kind, lost + lost_series + lost_order


def read_image_series(image_dir, patient_id: str | None = None,
                      sequence: str | None = None) -> tuple[Volume, list[dict[str, Any]]]:
  """Reads one DICOM series folder without masks (a new scan to predict on).

  The same reading as `liverjax.data.chaos.read_series` (one series per folder, slices ordered by
  position, duplicates merged, unreadable or mis-sized slices dropped and
  reported) but nothing is paired, and the volume is NOT reoriented: it is in
  the reader's order, the one the DICOM geometry of `metas` describes.

  Args:
    image_dir: a folder of DICOM files of one series (CT or MR).
    patient_id: the Volume's id (default: the folder name).
    sequence: one of `chaos.SEQUENCES` (default: "ct" for CT, "t2" for MR).

  Returns:
    (volume, metas): volume.image float32 [Z,H,W] (CT in HU) in decreasing
    position order (slice 0 = the head end of an axial series), rows and
    columns as stored; volume.mask uint8 zeros; volume.modality from the
    header's Modality ("CT" or "MR"). metas: the `read_dicom_slice` meta
    dict of each kept slice, in the same order.

  Raises:
    ChaosError: naming the folder: missing, empty, no readable DICOM slice,
      two series of the same size, a Modality other than CT or MR, more than half
      of the voxels non-finite (fewer are replaced, `volume.finite_image`, and
      reported in `volume.problems`).
  """
  image_dir = pathlib.Path(image_dir)
  problems: list[str] = []
  if not image_dir.is_dir():
    raise ChaosError(f"{image_dir}: no such folder (expected a DICOM series folder)")
  files, ordered, _, _, _ = ordered_slices(image_dir, "DICOM series to predict", problems)
  shapes = collections.Counter(s.pixels.shape for s in ordered if s.pixels is not None)
  if not shapes:
    raise ChaosError(f"{image_dir}: no slice with readable pixels; first problem: "
                     f"{problems[0] if problems else '?'}")
  ref_shape = shapes.most_common(1)[0][0]
  kept = []
  for s in ordered:
    if s.error is not None:
      problems.append(f"{s.error}; slice dropped")
    elif s.pixels.shape != ref_shape:
      problems.append(f"{s.path}: image size {s.pixels.shape} differs from the series "
                      f"size {ref_shape}; slice dropped")
    else:
      kept.append(s)
  modality = str(kept[0].meta["modality"] or "").upper()
  if modality not in ("CT", "MR"):
    raise ChaosError(f"{kept[0].path}: DICOM Modality {modality or 'missing'!r}; "
                     "expected CT or MR")
  z_spacing, z_note = series_z_spacing(kept)
  px, px_note = series_pixel_spacing(kept)
  problems += [f"{image_dir}: {note}" for note in (z_note, px_note) if note]
  image, finite_note = volume_lib.finite_image(
      np.stack([s.pixels for s in kept]).astype(np.float32, copy=False), image_dir)
  problems += [finite_note] if finite_note else []
  volume = Volume(
      patient_id=patient_id or image_dir.name, modality=modality,
      sequence=sequence or ("ct" if modality == "CT" else "t2"), image=image,
      mask=np.zeros(image.shape, np.uint8), spacing=(z_spacing, float(px[0]), float(px[1])),
      window=kept[0].meta["window"], image_files=[str(s.path) for s in kept], mask_files=[],
      problems=problems, dropped_files=sorted(
          str(f) for f in files if str(f) not in {str(s.path) for s in kept}))
  return volume, [s.meta for s in kept]
