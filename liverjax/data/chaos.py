"""Reader for the CHAOS challenge data (CT and MR, DICOM slices + PNG masks).

numpy + pydicom + cv2 only (no TensorFlow, no JAX).

Layout (`root` is the folder holding `CT/` and/or `MR/`; `find_root` also accepts
`CHAOS_Train_Sets/` or `Train_Sets/` above it):

  CT/<id>/DICOM_anon/*.dcm                  CT/<id>/Ground/liver_GT_NNN.png
  MR/<id>/T1DUAL/DICOM_anon/InPhase/*.dcm   MR/<id>/T1DUAL/Ground/<InPhase stem>.png
  MR/<id>/T1DUAL/DICOM_anon/OutPhase/*.dcm  (masks: those of the InPhase partner)
  MR/<id>/T2SPIR/DICOM_anon/*.dcm           MR/<id>/T2SPIR/Ground/<stem>.png

Our sequence names: "ct" (CT), "t1_in", "t1_out", "t2" (MR).

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

CT mask pairing. `liver_GT_NNN.png` pairs with the slice of RANK NNN, the rank
being the slice's index in the position order of the series as it was
acquired (NNN = 000 is the head end, the slice of largest z). Verified on the
real CHAOS CT sample (../shared/data/chaos_ct_sample): z decreases as the file
index goes up, liver_GT_000 pairs with i0000 (z = 1690.5 mm, InstanceNumber 1),
and the mean HU inside the mask is ~soft tissue only with this pairing (see
tests/data/test_chaos.py). What is provable:
  * The series is complete - no file of the folder lost (unreadable, or
    without a position / series UID; a README.txt does not count, see
    `_SLICE_SUFFIXES`), no gap in the slice positions when they lie on a regular
    grid, and every mask number below the slice count: rank = index in the
    order. Slices whose mask is missing are dropped and reported.
  * Otherwise a slice may be missing, and the index no longer is the rank. The
    ranks are proven by any of:
      - the positions: they lie on a regular grid (every gap a whole number of
        slice steps, within 10%) whose span, gaps included, is exactly the mask
        numbers' 0..max: every missing slice lies inside the volume, and its
        grid step says where;
      - InstanceNumber - 1 (CHAOS numbers slices from 1 at the head end): when
        every slice has one, they increase along the order, are >= 0 and,
        on a grid, step exactly with it;
      - the CHAOS file index (`i0040,0000b.dcm` -> 40), under the same checks.
    (With no position, SliceLocation or InstanceNumber at all, only the file
    index can.) When none applies, or two of them disagree, the patient is refused
    (ChaosError with the reason) rather than trained on shifted masks. When
    one applies, the pairing is reported with the evidence used.
  Masks whose number is no kept slice's rank (an extra `liver_GT_NNN.png`
  beyond the slices, the mask of a lost slice) are reported and ignored.
Mask pairing for MR:
  * T2SPIR and T1 InPhase: the Ground PNG with the slice file's stem
    (IMG-0004-00002.dcm <-> IMG-0004-00002.png).
  * T1 OutPhase: the mask of its InPhase partner, the InPhase slice at the
    same ImagePositionPatient (within 0.1 mm). When positions are unavailable
    (or no InPhase slice sits there) the partner is the file whose image number
    is one higher (IMG-0004-00001.dcm -> IMG-0004-00002.png); when both rules
    apply and disagree, the position wins and the disagreement is reported.

Mask encodings. A CT mask must hold only 0 and 255 (`CT_MASK_VALUES`; a 1-bit
PNG is read as 0/255 and is fine); an MR mask only values in the CHAOS bands
(`MR_MASK_BANDS`: 0, liver 55-70, kidneys 110-135 and 175-200, spleen 240-255).
A mask with other values (an 8-bit PNG holding 0/1 or 0/100, which would
binarise to an empty liver) is reported and its slice dropped: guessing the
encoding could train on wrong labels, and dropping is never silent. A series
whose kept masks all hold no liver is reported and skipped (every CHAOS series
shows the liver; training on it would teach "no liver").

Masks are returned as raw gray values (CT 0/255; MR 0/63/126/189/252); 1-bit
PNGs are expanded to 0/255.

Bad input raises `ChaosError` naming the file and the problem. `read_series`
drops unusable slices (unreadable pixels, missing / unreadable / mis-sized /
mis-encoded mask, a size that differs from the rest of the series, the cases
above) and lists them in `Volume.problems` (the unused files in
`Volume.dropped_files`); files that are not DICOM at all are listed too. It
raises only when the series has no usable slice, its CT masks cannot be proven
to pair, or all its masks are empty; the error's `problems` keeps what was
found before.
`load_volumes` reports (absl logging + return value) and skips bad series.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import re
from typing import Any, Iterable, Sequence

from absl import logging
import cv2
import numpy as np
import pydicom
from pydicom import uid as pydicom_uid

from liverjax.data import orientation


class ChaosError(ValueError):
  """Bad input; the message names the file and the problem.

  Raised by `read_series`, `problems` also lists what was found in the series
  before it was refused (each naming its file).
  """
  problems: list[str] = []


SEQUENCES = ("ct", "t1_in", "t1_out", "t2")

# sequence -> (modality, image folder below the patient, mask folder below the patient)
_SEQUENCE_DIRS = {
    "ct": ("CT", ("DICOM_anon",), ("Ground",)),
    "t1_in": ("MR", ("T1DUAL", "DICOM_anon", "InPhase"), ("T1DUAL", "Ground")),
    "t1_out": ("MR", ("T1DUAL", "DICOM_anon", "OutPhase"), ("T1DUAL", "Ground")),
    "t2": ("MR", ("T2SPIR", "DICOM_anon"), ("T2SPIR", "Ground")),
}
_CT_MASK_RE = re.compile(r"^liver_GT_(\d+)\.png$", re.IGNORECASE)
_CT_NAME_RE = re.compile(r"^i(\d+),", re.IGNORECASE)  # CHAOS CT: i0040,0000b.dcm
_POSITION_TOL_MM = 0.1
_GRID_TOL = 0.1  # a gap is a whole number of slice steps within this fraction of a step
# Names of files that may be a lost slice when unreadable (a README.txt is not).
_SLICE_SUFFIXES = frozenset({"", ".dcm", ".dicom", ".ima"})
# The CHAOS mask encodings: CT liver 255; MR liver 63, kidneys 126 / 189, spleen 252.
CT_MASK_VALUES = (0, 255)
MR_MASK_BANDS = ((0, 0), (55, 70), (110, 135), (175, 200), (240, 255))
_LIVER_BAND = {"CT": (128, 255), "MR": (55, 70)}


@dataclasses.dataclass
class SeriesRef:
  """One image series of one patient found on disk, not read yet."""
  patient_id: str
  modality: str  # "CT" | "MR"
  sequence: str  # one of SEQUENCES
  image_dir: pathlib.Path
  mask_dir: pathlib.Path


@dataclasses.dataclass
class Volume:
  """One series read into memory, slices in the order described in the module docstring."""
  patient_id: str
  modality: str
  sequence: str
  image: np.ndarray  # float32 [Z,H,W]; CT in HU, MR raw (slope/intercept applied if present)
  mask: np.ndarray  # uint8 [Z,H,W], raw gray values of the Ground PNGs
  spacing: tuple[float, float, float]  # (z, y, x) mm
  window: tuple[float, float] | None  # (WindowCenter, WindowWidth) of the first slice
  image_files: list[str]
  mask_files: list[str]
  problems: list[str]  # slices dropped / files skipped while reading
  # Files of the image and mask folders that were not used (each has a problem).
  dropped_files: list[str] = dataclasses.field(default_factory=list)


# ----------------------------------------------------------------------------- discovery


def find_root(path) -> pathlib.Path:
  """Returns the folder holding CT/ and/or MR/.

  Args:
    path: a CHAOS folder: `CHAOS_Train_Sets`, `Train_Sets`, the folder holding
      CT/ and MR/ itself, or a folder directly above one of these.

  Returns:
    The resolved folder that contains `CT/` and/or `MR/`.

  Raises:
    ChaosError: naming `path`, when no such folder is found.
  """
  p = pathlib.Path(os.path.expanduser(str(path)))
  if not p.exists():
    raise ChaosError(f"{p}: no such folder (expected a CHAOS dataset folder)")
  if not p.is_dir():
    raise ChaosError(f"{p}: not a folder (expected a CHAOS dataset folder)")
  candidates = [p, p / "Train_Sets", p / "CHAOS_Train_Sets",
                p / "CHAOS_Train_Sets" / "Train_Sets"]
  for c in candidates:
    if (c / "CT").is_dir() or (c / "MR").is_dir():
      return c.resolve()
  raise ChaosError(
      f"{p}: no CT/ or MR/ folder found here or in Train_Sets/ or "
      "CHAOS_Train_Sets/[Train_Sets/] below it")


def _natural_key(name: str):
  return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _subdirs(folder: pathlib.Path) -> list[pathlib.Path]:
  if not folder.is_dir():
    return []
  dirs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
  return sorted(dirs, key=lambda d: _natural_key(d.name))


def discover(root, sequences: Sequence[str] = SEQUENCES) -> list[SeriesRef]:
  """Lists the series of a CHAOS folder without reading them.

  Args:
    root: anything `find_root` accepts.
    sequences: which of SEQUENCES to list.

  Returns:
    One SeriesRef per (patient folder, requested sequence), CT first, patients
    in natural order ("2" before "10"). A ref is returned for every patient
    folder even when its image folder is missing: `read_series` reports that.

  Raises:
    ChaosError: bad root, or an unknown sequence name.
  """
  root = find_root(root)
  unknown = [s for s in sequences if s not in _SEQUENCE_DIRS]
  if unknown:
    raise ChaosError(f"unknown sequence(s) {unknown}; expected some of {SEQUENCES}")
  refs = []
  for modality in ("CT", "MR"):
    seqs = [s for s in SEQUENCES if s in sequences and _SEQUENCE_DIRS[s][0] == modality]
    if not seqs:
      continue
    for patient_dir in _subdirs(root / modality):
      for seq in seqs:
        _, image_sub, mask_sub = _SEQUENCE_DIRS[seq]
        refs.append(SeriesRef(
            patient_id=patient_dir.name, modality=modality, sequence=seq,
            image_dir=patient_dir.joinpath(*image_sub),
            mask_dir=patient_dir.joinpath(*mask_sub)))
  return refs


# ----------------------------------------------------------------------------- single files


def _read_dataset(path: pathlib.Path, stop_before_pixels: bool = False):
  """dcmread with errors turned into ChaosError naming the file."""
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


def _metadata(ds, path: pathlib.Path) -> dict[str, Any]:
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
    ((center, width) or None; first value when multi-valued), echo_time,
    rescale ((slope, intercept), None where absent), shape ((H, W)),
    transfer_syntax.

  Raises:
    ChaosError: naming the file: not DICOM, truncated, compressed with no
      decoder available, no pixel data, not a single-frame grayscale image.
  """
  path = pathlib.Path(path)
  ds = _read_dataset(path)
  meta = _metadata(ds, path)
  return _pixels(ds, path, meta), meta


def _png_bit_depth(data: bytes) -> int | None:
  # PNG signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4), then bit depth.
  if len(data) > 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
    return data[24]
  return None


def read_mask_png(path) -> np.ndarray:
  """Reads one Ground mask.

  Args:
    path: a PNG file (8-bit, 16-bit or 1/2/4-bit gray; gray-valued RGB(A) accepted).

  Returns:
    uint8 [H,W] gray values 0..255; low-bit-depth PNGs are scaled to the full
    range (a 1-bit PNG gives 0/255), 16-bit PNGs are scaled down by 257.

  Raises:
    ChaosError: naming the file, when it is missing, not a decodable image, or
      has colours that are not gray.
  """
  path = pathlib.Path(path)
  try:
    data = path.read_bytes()
  except OSError as e:
    raise ChaosError(f"{path}: cannot read mask ({e.strerror or e})") from e
  img = None
  if data:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if img is None:
    raise ChaosError(f"{path}: not a readable PNG image")
  if img.ndim == 3:
    if img.shape[2] == 4:
      img = img[..., :3]
    if not all(np.array_equal(img[..., 0], img[..., c]) for c in range(1, img.shape[2])):
      raise ChaosError(f"{path}: colour mask (channels differ), expected a gray mask")
    img = img[..., 0]
  if img.ndim != 2:
    raise ChaosError(f"{path}: unexpected mask shape {img.shape}")
  if img.dtype == np.uint16:
    img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
  elif img.dtype != np.uint8:
    raise ChaosError(f"{path}: unsupported mask dtype {img.dtype}")
  bit_depth = _png_bit_depth(data[:33])
  if bit_depth is not None and bit_depth < 8:
    top = (1 << bit_depth) - 1
    if img.max() <= top:  # decoder left the raw 0..top levels: expand to 0..255
      img = (img.astype(np.uint16) * (255 // top)).astype(np.uint8)
  return np.ascontiguousarray(img)


# ----------------------------------------------------------------------------- series


@dataclasses.dataclass
class _Slice:
  path: pathlib.Path
  meta: dict[str, Any]
  pixels: np.ndarray | None
  error: str | None


def _list_files(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))


def _could_be_slice(path: pathlib.Path) -> bool:
  return path.suffix.lower() in _SLICE_SUFFIXES


def _read_files(files: list[pathlib.Path], problems: list[str]
                ) -> tuple[list[_Slice], list[pathlib.Path]]:
  """Reads every file; returns (slices with a readable header, lost files).

  A file with no readable DICOM header is reported and skipped; when its name
  could be a slice's (`_SLICE_SUFFIXES`) it is a lost slice of the series.
  """
  slices, lost = [], []
  for f in files:
    try:
      ds = _read_dataset(f)
    except ChaosError as e:
      problems.append(f"{e}; skipped")
      if _could_be_slice(f):
        lost.append(f)
      continue
    meta = _metadata(ds, f)
    try:
      pixels, error = _pixels(ds, f, meta), None
    except ChaosError as e:
      pixels, error = None, str(e)
    slices.append(_Slice(f, meta, pixels, error))
  return slices, lost


def _one_series(slices: list[_Slice], image_dir: pathlib.Path, problems: list[str]
                ) -> tuple[list[_Slice], list[pathlib.Path]]:
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


def _order(slices: list[_Slice], image_dir: pathlib.Path, problems: list[str]
           ) -> tuple[list[_Slice], list[float], str, list[pathlib.Path]]:
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
      m = _CT_NAME_RE.match(s.path.name)
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


def _merge_duplicates(ordered: list[_Slice], values: list[float], kind: str,
                      problems: list[str]) -> tuple[list[_Slice], list[float]]:
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
  tol = 0.5 if kind == "InstanceNumber" else _POSITION_TOL_MM
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
      out.append(_Slice(members[0].path, members[0].meta, None, msg))
  return out, out_values


def _fmt(value: float, kind: str) -> str:
  if kind == "position":
    return f"z = {-value:g} mm"
  return f"{value:g}"


def _check_instance_order(ordered: list[_Slice], image_dir: pathlib.Path,
                          problems: list[str]) -> None:
  """Reports a CT series whose InstanceNumbers run against the position order.

  CT masks pair by position order (liver_GT_000 = the head end); in the real
  CHAOS sample InstanceNumber (and the file index) follows the same order. A
  series where it runs the other way pairs differently from a reader that goes
  by file index, so it is flagged for a look (the masks still load).
  """
  numbers = [s.meta["instance_number"] for s in ordered]
  if len(numbers) < 2 or any(n is None for n in numbers):
    return
  if all(a > b for a, b in zip(numbers, numbers[1:])):
    problems.append(f"{image_dir}: InstanceNumber decreases from the head end to the feet "
                    "(opposite to the CHAOS sample); liver_GT_NNN masks are paired in "
                    "position order (000 = head end) - check that they fall on the liver")


def _stem_number(stem: str) -> tuple[str, str] | None:
  m = re.match(r"^(.*?)(\d+)$", stem)
  return (m.group(1), m.group(2)) if m else None


def _grid(values: list[float]) -> list[int] | None:
  """Slice steps of sorted order values on a regular grid, or None.

  The step is the smallest gap; every gap must be a whole number of steps
  (within `_GRID_TOL`). Returns the grid index of each value (first = 0).
  """
  if len(values) < 2:
    return [0] * len(values)
  gaps = np.diff(np.asarray(values, np.float64))
  step = gaps.min()
  if step <= 0:
    return None
  q = gaps / step
  r = np.rint(q)
  if np.any(np.abs(q - r) > _GRID_TOL):
    return None
  return [0] + [int(v) for v in np.cumsum(r)]


def _consistent(ranks: list[int] | None, grid: list[int] | None, limit: int) -> bool:
  """Ranks strictly increasing, within 0..limit, spaced as the grid when there is one."""
  if ranks is None or not ranks:
    return False
  if ranks[0] < 0 or ranks[-1] > limit:
    return False
  if any(b <= a for a, b in zip(ranks, ranks[1:])):
    return False
  return grid is None or all(r - ranks[0] == g for r, g in zip(ranks, grid))


def _ct_ranks(ordered: list[_Slice], values: list[float], kind: str,
              lost: list[pathlib.Path], top: int, image_dir: pathlib.Path,
              problems: list[str]) -> list[int] | str:
  """The mask number (rank) of each ordered slice, or the reason none is provable.

  See the module docstring ("CT mask pairing").
  """
  n = len(ordered)
  grid = _grid(values) if kind != "file name" else None
  holes = grid[-1] + 1 - n if grid is not None else 0
  reasons = []
  if lost:
    reasons.append(f"{len(lost)} file(s) of the series lost (no header or no {kind})")
  if holes:
    reasons.append(f"{holes} gap(s) between the slice {kind}s")
  if top >= n:
    reasons.append(f"masks numbered up to {top} for {n} slices")
  if kind == "file name":
    reasons.append("no slice position, SliceLocation or InstanceNumber")
  if not reasons:
    return list(range(n))
  limit = max(top, n - 1 + len(lost) + holes)
  candidates = {}
  if grid is not None and grid[-1] == top:
    candidates[f"the slice {kind}s (every missing slice inside the volume)"] = grid
  numbers = [s.meta["instance_number"] for s in ordered]
  if all(v is not None for v in numbers):
    ranks = [v - 1 for v in numbers]
    if _consistent(ranks, grid, limit):
      candidates["InstanceNumber - 1"] = ranks
  matches = [_CT_NAME_RE.match(s.path.name) for s in ordered]
  if all(matches):
    ranks = [int(m.group(1)) for m in matches]
    if _consistent(ranks, grid, limit):
      candidates["the file index iNNNN"] = ranks
  why = "; ".join(reasons)
  if not candidates:
    return (f"{why}; neither the slice positions, nor InstanceNumber, nor the file "
            "names (iNNNN) place every slice")
  if len({tuple(r) for r in candidates.values()}) > 1:
    return f"{why}; {' and '.join(candidates)} place the slices differently"
  problems.append(f"{image_dir}: {why}; slices paired with their liver_GT masks by "
                  f"{' and '.join(candidates)}")
  return next(iter(candidates.values()))


def _pair_ct(ordered, values, kind, lost, image_dir, mask_dir,
             problems) -> list[pathlib.Path | str]:
  masks = {}
  for f in _list_files(mask_dir):
    m = _CT_MASK_RE.match(f.name)
    if m and int(m.group(1)) not in masks:
      masks[int(m.group(1))] = f
    else:
      problems.append(f"{f}: unexpected file in {mask_dir.name}/ (not liver_GT_NNN.png, "
                      "or a second file of that number), ignored")
  n = len(ordered)
  head = (f"{mask_dir}: {len(masks)} liver_GT_NNN.png masks (numbers "
          f"{min(masks) if masks else '-'}..{max(masks) if masks else '-'}) for {n} "
          f"DICOM slices in {image_dir}")
  if not masks:
    raise ChaosError(f"{head}; cannot pair them")
  ranks = _ct_ranks(ordered, values, kind, lost, max(masks), image_dir, problems)
  if isinstance(ranks, str):
    raise ChaosError(f"{head}; cannot prove which mask belongs to which slice: {ranks}; "
                     "patient refused")
  for k in sorted(set(masks) - set(ranks)):
    problems.append(f"{masks[k]}: mask with no image slice in {image_dir} "
                    f"(no readable slice of rank {k}); ignored")
  return [masks.get(r) or f"{s.path}: missing mask {mask_dir / f'liver_GT_{r:03d}.png'}"
          for s, r in zip(ordered, ranks)]


def _mask_encoding_problem(mask: np.ndarray, modality: str) -> str | None:
  """Why a mask's gray values are not the CHAOS encoding of `modality`, or None."""
  values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
  if modality == "CT":
    if np.all(np.isin(values, CT_MASK_VALUES)):
      return None
    return (f"mask values {values[:6].tolist()} are not the CHAOS CT encoding {{0, 255}} "
            "(a 0/1 or 0/100 mask in an 8-bit PNG would train on an empty liver)")
  ok = np.zeros(values.shape, bool)
  for lo, hi in MR_MASK_BANDS:
    ok |= (values >= lo) & (values <= hi)
  if ok.all():
    return None
  return (f"mask values {values[~ok][:6].tolist()} lie outside the CHAOS MR encoding "
          "(0, liver 55-70, kidneys 110-135 / 175-200, spleen 240-255)")


def _mask_index(mask_dir: pathlib.Path) -> dict[str, pathlib.Path]:
  return {f.stem.lower(): f for f in _list_files(mask_dir) if f.suffix.lower() == ".png"}


def _pair_by_stem(ordered, mask_dir, problems) -> list[pathlib.Path | str]:
  index = _mask_index(mask_dir)
  out = [index.get(s.path.stem.lower())
         or f"{s.path}: missing mask {mask_dir / (s.path.stem + '.png')}" for s in ordered]
  used = {s.path.stem.lower() for s in ordered}
  for stem, f in sorted(index.items()):
    if stem not in used:
      problems.append(f"{f}: mask with no image slice in {ordered[0].path.parent}")
  return out


def _pair_outphase(ordered, image_dir, mask_dir, problems) -> list[pathlib.Path | str]:
  index = _mask_index(mask_dir)
  in_dir = image_dir.parent / "InPhase"
  in_positions = []  # (position, stem)
  if in_dir.is_dir():
    for f in _list_files(in_dir):
      try:
        meta = _metadata(_read_dataset(f, stop_before_pixels=True), f)
      except ChaosError:
        continue  # reported when the InPhase series itself is read
      if meta["position"] is not None:
        in_positions.append((np.array(meta["position"]), f.stem))
  out = []
  for s in ordered:
    by_number = None
    parts = _stem_number(s.path.stem)
    if parts is not None:
      prefix, num = parts
      by_number = f"{prefix}{int(num) + 1:0{len(num)}d}"
    by_position = None
    if s.meta["position"] is not None and in_positions:
      pos = np.array(s.meta["position"])
      matches = [stem for p, stem in in_positions
                 if np.linalg.norm(p - pos) <= _POSITION_TOL_MM]
      if by_number is not None and by_number in matches:
        by_position = by_number
      elif matches:
        by_position = matches[0]
    if by_position is not None and by_number is not None and by_position != by_number:
      problems.append(f"{s.path}: InPhase partner at the same position is {by_position}, "
                      f"not {by_number} (image number + 1); using the position")
    partner = by_position or by_number
    m = index.get(partner.lower()) if partner else None
    out.append(m or f"{s.path}: missing mask of the InPhase partner "
               f"{mask_dir / ((partner or '?') + '.png')}")
  return out


def _z_spacing(kept: list[_Slice]) -> tuple[float, str | None]:
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


def _pixel_spacing(kept: list[_Slice]) -> tuple[tuple[float, float], str | None]:
  """(row, column) mm of the series' first slice, and a note when PixelSpacing is missing."""
  px = kept[0].meta["pixel_spacing"]
  if px is None:
    return (1.0, 1.0), ("no PixelSpacing; in-plane spacing set to 1.0 mm (surface distances "
                        "and data.field_of_view take it as given)")
  return (float(px[0]), float(px[1])), None


def read_series(ref: SeriesRef) -> Volume:
  """Reads one series and its masks.

  Args:
    ref: from `discover` (or built by hand).

  Returns:
    A Volume with the usable slices in position order (module docstring);
    `problems` lists the slices dropped and the files skipped, each naming its file.

  Raises:
    ChaosError: naming the folder, when the image folder is missing or empty,
      the mask folder is missing, no slice is readable/usable, or the CT masks
      cannot be proven to pair (see the module docstring), or every mask is
      empty; its `problems` lists what was found before.
  """
  problems: list[str] = []
  try:
    return _read_series(ref, problems)
  except ChaosError as e:
    e.problems = list(problems)
    raise


def _ordered_slices(image_dir: pathlib.Path, label: str, problems: list[str]):
  """The slices of one series folder in position order (module docstring).

  Returns:
    (files, ordered slices, their order values, the key kind, lost files): every
    file of the folder, the slices of its majority series with duplicates merged,
    and the files that may be lost slices of the series.

  Raises:
    ChaosError: naming the folder: empty, no readable DICOM slice, two series of
      the same size.
  """
  files = _list_files(image_dir)
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


def _read_series(ref: SeriesRef, problems: list[str]) -> Volume:
  image_dir, mask_dir = pathlib.Path(ref.image_dir), pathlib.Path(ref.mask_dir)
  label = f"{ref.modality} patient {ref.patient_id} {ref.sequence}"
  if not image_dir.is_dir():
    raise ChaosError(f"{image_dir}: image folder missing ({label})")
  if not mask_dir.is_dir():
    raise ChaosError(f"{mask_dir}: mask folder missing ({label})")
  files, ordered, values, kind, lost = _ordered_slices(image_dir, label, problems)
  if ref.sequence == "ct" or ref.modality == "CT":
    _check_instance_order(ordered, image_dir, problems)
    mask_paths = _pair_ct(ordered, values, kind, lost,
                          image_dir, mask_dir, problems)
  elif ref.sequence == "t1_out":
    mask_paths = _pair_outphase(ordered, image_dir, mask_dir, problems)
  else:
    mask_paths = _pair_by_stem(ordered, mask_dir, problems)

  shapes = collections.Counter(s.pixels.shape for s in ordered if s.pixels is not None)
  ref_shape = shapes.most_common(1)[0][0] if shapes else None
  kept, images, masks, mask_files = [], [], [], []
  for s, m in zip(ordered, mask_paths):
    if s.error is not None:
      problems.append(f"{s.error}; slice dropped"
                      + (f" with its mask {m.name}" if not isinstance(m, str) else ""))
      continue
    if isinstance(m, str):  # no mask: the pairing's message
      problems.append(f"{m}; slice dropped")
      continue
    if s.pixels.shape != ref_shape:
      problems.append(f"{s.path}: image size {s.pixels.shape} differs from the series "
                      f"size {ref_shape}; slice dropped")
      continue
    try:
      mask = read_mask_png(m)
    except ChaosError as e:
      problems.append(f"{e}; slice {s.path.name} dropped")
      continue
    if mask.shape != s.pixels.shape:
      problems.append(f"{m}: mask size {mask.shape} differs from image size "
                      f"{s.pixels.shape} of {s.path.name}; slice dropped")
      continue
    bad = _mask_encoding_problem(mask, ref.modality)
    if bad:
      problems.append(f"{m}: {bad}; slice {s.path.name} dropped")
      continue
    kept.append(s)
    images.append(s.pixels)
    masks.append(mask)
    mask_files.append(str(m))
  if not kept:
    raise ChaosError(f"{image_dir}: no usable slice ({label}); problems: "
                     + " | ".join(problems[:3]))
  lo, hi = _LIVER_BAND[ref.modality]
  if not any(((m >= lo) & (m <= hi)).any() for m in masks):
    raise ChaosError(f"{mask_dir}: the masks of all {len(kept)} usable slices of {image_dir} "
                     f"are empty (no liver value {lo}..{hi}); a CHAOS series always shows the "
                     f"liver ({label}); series skipped")
  z_spacing, z_note = _z_spacing(kept)
  px, px_note = _pixel_spacing(kept)
  problems += [f"{image_dir}: {note}" for note in (z_note, px_note) if note]
  volume = Volume(
      patient_id=ref.patient_id, modality=ref.modality, sequence=ref.sequence,
      image=np.stack(images).astype(np.float32, copy=False),
      mask=np.stack(masks).astype(np.uint8, copy=False),
      spacing=(z_spacing, float(px[0]), float(px[1])),
      window=kept[0].meta["window"],
      image_files=[str(s.path) for s in kept], mask_files=mask_files,
      problems=problems,
      dropped_files=_unused(files, mask_dir if ref.sequence != "t1_out" else None, kept,
                            mask_files))
  # One orientation for every reader (rows A->P, columns R->L, slices head->feet).
  return orientation.reorient_volume(volume, kept[0].meta["orientation"])


def _unused(files, mask_dir, kept, mask_files) -> list[str]:
  """The image files and mask-folder files (none when mask_dir is None: OutPhase
  shares the InPhase masks) that are not in the volume, as sorted paths."""
  used = {str(s.path) for s in kept} | set(mask_files)
  masks = _list_files(mask_dir) if mask_dir is not None else []
  return sorted(str(f) for f in list(files) + masks if str(f) not in used)


def read_image_series(image_dir, patient_id: str | None = None,
                      sequence: str | None = None) -> tuple[Volume, list[dict[str, Any]]]:
  """Reads one DICOM series folder without masks (a new scan to predict on).

  The same reading as `read_series` (one series per folder, slices ordered by
  position, duplicates merged, unreadable or mis-sized slices dropped and
  reported) but nothing is paired, and the volume is NOT reoriented: it is in
  the reader's order, the one the DICOM geometry of `metas` describes.

  Args:
    image_dir: a folder of DICOM files of one series (CT or MR).
    patient_id: the Volume's id (default: the folder name).
    sequence: one of SEQUENCES (default: "ct" for CT, "t2" for MR).

  Returns:
    (volume, metas): volume.image float32 [Z,H,W] (CT in HU) in decreasing
    position order (slice 0 = the head end of an axial series), rows and
    columns as stored; volume.mask uint8 zeros; volume.modality from the
    header's Modality ("CT" or "MR"). metas: the `read_dicom_slice` meta
    dict of each kept slice, in the same order.

  Raises:
    ChaosError: naming the folder: missing, empty, no readable DICOM slice,
      two series of the same size, a Modality other than CT or MR.
  """
  image_dir = pathlib.Path(image_dir)
  problems: list[str] = []
  if not image_dir.is_dir():
    raise ChaosError(f"{image_dir}: no such folder (expected a DICOM series folder)")
  files, ordered, _, _, _ = _ordered_slices(image_dir, "DICOM series to predict", problems)
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
  z_spacing, z_note = _z_spacing(kept)
  px, px_note = _pixel_spacing(kept)
  problems += [f"{image_dir}: {note}" for note in (z_note, px_note) if note]
  image = np.stack([s.pixels for s in kept]).astype(np.float32, copy=False)
  volume = Volume(
      patient_id=patient_id or image_dir.name, modality=modality,
      sequence=sequence or ("ct" if modality == "CT" else "t2"), image=image,
      mask=np.zeros(image.shape, np.uint8), spacing=(z_spacing, float(px[0]), float(px[1])),
      window=kept[0].meta["window"], image_files=[str(s.path) for s in kept], mask_files=[],
      problems=problems, dropped_files=sorted(
          str(f) for f in files if str(f) not in {str(s.path) for s in kept}))
  return volume, [s.meta for s in kept]


def load_volumes(root, sequences: Sequence[str] = SEQUENCES) -> tuple[list[Volume], list[str]]:
  """Reads every series of a CHAOS folder, skipping what is unusable.

  Args:
    root: anything `find_root` accepts.
    sequences: which of SEQUENCES to read.

  Returns:
    (volumes, problems): the readable volumes in `discover` order, and every
    problem found (dropped slices, skipped files and series), each naming its
    file or folder. Problems are also logged with absl logging.

  Raises:
    ChaosError: only when `root` itself is not a CHAOS folder.
  """
  return read_each(discover(root, sequences), read_series,
                   where=lambda ref: ref.image_dir, what="series")


def read_each(items, read, *, where, what: str) -> tuple[list, list[str]]:
  """Reads every item with `read`; one that fails is reported and skipped, never fatal.

  Args:
    items: what to read (series references, NIfTI cases, ...).
    read: item -> a volume with a `problems` list (reader notes, each naming a file).
    where: item -> the file or folder named when an unexpected error skips it.
    what: the word for an item in the messages ("series", "case").

  Returns:
    (volumes, problems): the volumes read, in item order, and every problem (the
    volumes' own, then "<what> skipped: ..." for each failure, with the problems a
    `ChaosError` carried); all are logged with absl logging.
  """
  volumes, problems = [], []
  for item in items:
    try:
      vol = read(item)
    except Exception as e:  # pylint: disable=broad-except  (never crash the whole load)
      msg = str(e) if isinstance(e, ChaosError) else (
          f"{where(item)}: unexpected error ({type(e).__name__}: {e})")
      for p in getattr(e, "problems", []) + [f"{what} skipped: {msg}"]:
        logging.warning("%s", p)
        problems.append(p)
      continue
    for p in vol.problems:
      logging.warning("%s", p)
    problems.extend(vol.problems)
    volumes.append(vol)
  return volumes, problems


# ----------------------------------------------------------------------------- splits


def split_patients(patient_ids: Iterable[str], fractions=(0.6, 0.2, 0.2),
                   seed: int = 0) -> dict[str, list[str]]:
  """Splits patients into train / val / test.

  Args:
    patient_ids: patient ids (duplicates are merged).
    fractions: (train, val, test) proportions, non-negative, not all zero
      (normalised to sum 1).
    seed: the shuffle seed.

  Returns:
    {"train": [...], "val": [...], "test": [...]}: disjoint, every patient in
    exactly one split, ids sorted within a split. Deterministic in (set of ids,
    fractions, seed), independent of input order. With >= 3 patients every
    split with a positive fraction gets at least one patient.
  """
  ids = sorted(set(str(p) for p in patient_ids), key=_natural_key)
  f = np.asarray(fractions, dtype=np.float64)
  if f.shape != (3,) or np.any(f < 0) or f.sum() <= 0:
    raise ValueError(f"fractions must be 3 non-negative numbers, not all 0; got {fractions}")
  f = f / f.sum()
  n = len(ids)
  exact = f * n
  counts = np.floor(exact).astype(int)
  for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
    counts[i] += 1
  if n >= 3:
    for i in range(3):
      if f[i] > 0 and counts[i] == 0:
        donor = int(np.argmax(counts))
        counts[donor] -= 1
        counts[i] += 1
  order = np.random.default_rng(seed).permutation(n)
  shuffled = [ids[i] for i in order]
  out, start = {}, 0
  for name, c in zip(("train", "val", "test"), counts):
    out[name] = sorted(shuffled[start:start + c], key=_natural_key)
    start += c
  return out
