"""Synthetic CHAOS: the phantom of `liverjax.data.phantom` written in the exact CHAOS layout.

The real CHAOS data cannot be downloaded everywhere, so this module is the
project's embedded default dataset. Each synthetic patient is a phantom
(`phantom.make_phantom`) rendered per modality (`phantom.render_ct`,
`phantom.render_mr`) and written here:

- CT stored as uint16 with RescaleIntercept -1000 like the real CHAOS sample.
- MR T1-DUAL in-phase / out-of-phase and T2-SPIR in arbitrary uint16
  intensity units.

Geometry follows radiological convention (patient's right on the image left,
anterior at the top), DICOM LPS with ImageOrientationPatient [1,0,0,0,1,0].
The phantom's anatomy spans the slices whatever their count, so the header
spacings (CT 2-3 mm, MR 5.5-9 mm) are plausible values, not a physical
extent the anatomy was built in.

Layout written under `<out_dir>/Train_Sets` (as in the CHAOS release):

  CT/<id>/DICOM_anon/i0000,0000b.dcm ...   z decreases as the index goes up
  CT/<id>/Ground/liver_GT_000.png ...      0/255, pairs with file index NNN
  MR/<id>/T1DUAL/DICOM_anon/InPhase/IMG-<series>-<even>.dcm
  MR/<id>/T1DUAL/DICOM_anon/OutPhase/IMG-<series>-<even - 1>.dcm
  MR/<id>/T1DUAL/Ground/IMG-<series>-<even>.png
  MR/<id>/T2SPIR/DICOM_anon/IMG-<series>-<n>.dcm
  MR/<id>/T2SPIR/Ground/IMG-<series>-<n>.png
  MR masks: liver 63, right kidney 126, left kidney 189, spleen 252.

CLI: python -m liverjax.data.synthetic --out=DIR --ct=4 --mr=4 [--size=128
--slices=24 --seed=0]
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

import cv2
import numpy as np
import pydicom
from absl import flags
from pydicom.dataset import FileMetaDataset
from pydicom import uid as dcm_uid

from liverjax.data import filelock
from liverjax.data import phantom

GENERATOR_VERSION = 1
# The marker that says a `Train_Sets` folder was written by this generator, and with which
# arguments: inside the folder, so that the rename that puts the set in place puts its
# marker there too (a kill can leave no set without its marker). Sets written before it
# moved keep theirs beside the folder (`out_dir/synthetic_chaos.json`), still honoured.
MARKER_NAME = "synthetic_chaos.json"


def marker_path(out_dir) -> pathlib.Path:
  """The marker of the set in `out_dir`: `out_dir/Train_Sets/synthetic_chaos.json`."""
  return pathlib.Path(out_dir) / "Train_Sets" / MARKER_NAME


def _marker(out_dir: pathlib.Path) -> pathlib.Path | None:
  """The marker of the set in `out_dir` (inside it, or beside it as older sets have it)."""
  for path in (marker_path(out_dir), out_dir / MARKER_NAME):
    if path.is_file():
      return path
  return None

# CHAOS training patient ids (CT and MR are different people in CHAOS, and so
# here: the same id in both modalities is two unrelated phantoms).
_CHAOS_CT_IDS = (1, 2, 5, 6, 8, 10, 14, 16, 18, 19, 21, 22, 23, 24, 25, 26, 27,
                 28, 29, 30)
_CHAOS_MR_IDS = (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36,
                 37, 38, 39)

# The CHAOS mask values the phantom's organ labels are written as.
MR_MASK_VALUES = np.array([0, 63, 126, 189, 252], np.uint8)
CT_MASK_VALUES = np.array([0, 255, 0, 0, 0], np.uint8)  # liver only

# Echo / repetition times (ms) at 1.5 T, as in CHAOS (Philips Achieva).
T1_OUT_TE, T1_IN_TE, T1_TR = 2.3, 4.6, 150.0
T2_TE, T2_TR = 80.0, 1600.0


# ------------------------------------------------------------ DICOM / PNG
def _uid(*parts) -> str:
  return dcm_uid.generate_uid(entropy_srcs=["liverjax-synthetic"] +
                              [str(p) for p in parts])


def _series_dataset(fields: dict, rows: int, cols: int) -> pydicom.Dataset:
  """A DICOM image dataset (explicit VR little endian, uint16 MONOCHROME2)
  holding the series-wide `fields`; slices fill in the rest (_write_slice)."""
  sop_class = (dcm_uid.CTImageStorage if fields["Modality"] == "CT" else
               dcm_uid.MRImageStorage)
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = sop_class
  meta.MediaStorageSOPInstanceUID = "1.2"
  meta.TransferSyntaxUID = dcm_uid.ExplicitVRLittleEndian
  meta.ImplementationClassUID = dcm_uid.PYDICOM_IMPLEMENTATION_UID
  meta.ImplementationVersionName = "LIVERJAX_SYN1"
  ds = pydicom.Dataset()
  ds.file_meta = meta
  ds.SpecificCharacterSet = "ISO_IR 100"
  ds.SOPClassUID = sop_class
  for key, value in fields.items():
    setattr(ds, key, value)
  ds.Rows, ds.Columns = rows, cols
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.BitsAllocated = 16
  ds.BitsStored = 16
  ds.HighBit = 15
  ds.PixelRepresentation = 0
  return ds


def _write_slice(ds: pydicom.Dataset, path: pathlib.Path, pixels: np.ndarray,
                 fields: dict) -> None:
  """Sets the per-slice `fields` and uint16 `pixels` [H,W] on the series
  dataset `ds` (mutated) and writes it to `path`."""
  for key, value in fields.items():
    setattr(ds, key, value)
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  ds.PixelData = np.ascontiguousarray(pixels, "<u2").tobytes()
  ds.save_as(path, enforce_file_format=True)


def _ds(v: float) -> str:
  """A DS string (at most 16 characters)."""
  return f"{v:.6g}"


def _write_png(path: pathlib.Path, mask: np.ndarray) -> None:
  if not cv2.imwrite(str(path), mask):
    raise OSError(f"{path}: could not write PNG")


def _common_fields(pid: str, modality: str, seed: int) -> dict:
  return dict(
      Modality=modality,
      Manufacturer="liverjax synthetic",
      PatientName=f"CHAOS^{modality}_SYN_{pid}",
      PatientID=pid,
      PatientSex="O",
      BodyPartExamined="ABDOMEN",
      StudyInstanceUID=_uid(seed, modality, pid, "study"),
      FrameOfReferenceUID=_uid(seed, modality, pid, "frame"),
      StudyID=pid,
      ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
  )


def _positions(rng, size, spacing, slices, dz):
  """Per-slice ImagePositionPatient (first pixel centre), z decreasing."""
  x0 = -(size / 2 - 0.5) * spacing
  y0 = -(size / 2 - 0.5) * spacing + rng.uniform(-20, 20)
  z0 = round(rng.uniform(-200, 200) * 2) / 2
  return [(x0, y0, z0 - i * dz) for i in range(slices)]


def _write_ct_patient(patient_dir: pathlib.Path, pid: str, seed: int,
                      rng: np.random.Generator, size: int, slices: int) -> None:
  spacing = rng.uniform(0.68, 0.9) * 512 / size
  dz = float(rng.choice([2.0, 2.5, 3.0]))
  ph = phantom.make_phantom(rng, size, slices, size * spacing)
  hu = phantom.render_ct(ph, rng, size)
  stored = np.clip(np.rint(hu + 1000), 0, 65535).astype(np.uint16)
  masks = CT_MASK_VALUES[ph.organs]
  dcm_dir = patient_dir / "DICOM_anon"
  gt_dir = patient_dir / "Ground"
  dcm_dir.mkdir(parents=True)
  gt_dir.mkdir(parents=True)
  fields = _common_fields(pid, "CT", seed)
  fields.update(
      ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
      SeriesInstanceUID=_uid(seed, "CT", pid, "series"),
      SeriesNumber=4, SeriesDescription="ABDOMEN 2.0 B30f",
      KVP="120", ConvolutionKernel="B", PatientPosition="FFS",
      PixelSpacing=[_ds(spacing), _ds(spacing)], SliceThickness=_ds(dz),
      RescaleIntercept="-1000", RescaleSlope="1", RescaleType="HU",
      WindowCenter="50", WindowWidth="400")
  positions = _positions(rng, size, spacing, slices, dz)
  loc0 = round(rng.uniform(0, 100))
  ds = _series_dataset(fields, size, size)
  for i in range(slices):
    f = dict(
        SOPInstanceUID=_uid(seed, "CT", pid, "sop", i),
        InstanceNumber=i + 1,
        ImagePositionPatient=[_ds(v) for v in positions[i]],
        # As in the real sample: SliceLocation grows as z decreases.
        SliceLocation=_ds(loc0 + i * dz))
    _write_slice(ds, dcm_dir / f"i{i:04d},0000b.dcm", stored[i], f)
    _write_png(gt_dir / f"liver_GT_{i:03d}.png", masks[i])


def _window(img: np.ndarray):
  lo, hi = np.percentile(img, [1, 99.5])
  return _ds(round((lo + hi) / 2)), _ds(max(1, round(hi - lo)))


def _write_mr_patient(patient_dir: pathlib.Path, pid: str, seed: int,
                      rng: np.random.Generator, size: int, slices: int) -> None:
  spacing = rng.uniform(1.4, 1.75) * 256 / size
  ph = phantom.make_phantom(rng, size, slices, size * spacing)
  t1_in, t1_out, t2 = phantom.render_mr(ph, rng, size)
  masks = MR_MASK_VALUES[ph.organs]
  s_t2 = int(rng.integers(2, 4))
  s_t1 = int(rng.integers(4, 8))
  common = _common_fields(pid, "MR", seed)
  common.update(MagneticFieldStrength="1.5", PatientPosition="HFS",
                PixelSpacing=[_ds(spacing), _ds(spacing)])
  dz1 = round(rng.uniform(5.5, 9.0), 1)
  dz2 = round(rng.uniform(5.5, 9.0), 1)

  t1_dir = patient_dir / "T1DUAL"
  in_dir = t1_dir / "DICOM_anon" / "InPhase"
  out_dir = t1_dir / "DICOM_anon" / "OutPhase"
  t1_gt = t1_dir / "Ground"
  t2_dir = patient_dir / "T2SPIR"
  t2_dcm = t2_dir / "DICOM_anon"
  t2_gt = t2_dir / "Ground"
  for d in (in_dir, out_dir, t1_gt, t2_dcm, t2_gt):
    d.mkdir(parents=True)

  # T1-DUAL: one dual-echo series, out-of-phase odd, in-phase even numbers.
  t1 = dict(common)
  t1.update(SeriesInstanceUID=_uid(seed, "MR", pid, "t1"), SeriesNumber=s_t1,
            SeriesDescription="T1_FFE_DUAL", ProtocolName="T1DUAL",
            ScanningSequence="GR", SequenceVariant="SP", RepetitionTime=_ds(T1_TR),
            FlipAngle="80", SliceThickness=_ds(dz1),
            SpacingBetweenSlices=_ds(dz1))
  pos = _positions(rng, size, spacing, slices, dz1)
  w_in, w_out = _window(t1_in), _window(t1_out)
  st_in = np.clip(np.rint(t1_in), 0, 65535).astype(np.uint16)
  st_out = np.clip(np.rint(t1_out), 0, 65535).astype(np.uint16)
  t1.update(RescaleIntercept="0", RescaleSlope="1",
            ImageType=["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"])
  ds_in = _series_dataset(dict(t1, EchoTime=_ds(T1_IN_TE), EchoNumbers=2,
                               WindowCenter=w_in[0], WindowWidth=w_in[1]),
                          size, size)
  ds_out = _series_dataset(dict(t1, EchoTime=_ds(T1_OUT_TE), EchoNumbers=1,
                                WindowCenter=w_out[0], WindowWidth=w_out[1]),
                           size, size)
  for i in range(slices):
    where = dict(ImagePositionPatient=[_ds(v) for v in pos[i]],
                 SliceLocation=_ds(pos[i][2]))
    n_in, n_out = 2 * i + 2, 2 * i + 1
    stem = f"IMG-{s_t1:04d}-{n_in:05d}"
    _write_slice(ds_in, in_dir / f"{stem}.dcm", st_in[i],
                 dict(where, SOPInstanceUID=_uid(seed, "MR", pid, "t1in", i),
                      InstanceNumber=n_in))
    _write_png(t1_gt / f"{stem}.png", masks[i])
    _write_slice(ds_out, out_dir / f"IMG-{s_t1:04d}-{n_out:05d}.dcm",
                 st_out[i],
                 dict(where, SOPInstanceUID=_uid(seed, "MR", pid, "t1out", i),
                      InstanceNumber=n_out))

  # T2-SPIR: its own series and slice positions, same anatomy.
  t2f = dict(common)
  w2 = _window(t2)
  t2f.update(SeriesInstanceUID=_uid(seed, "MR", pid, "t2"), SeriesNumber=s_t2,
             SeriesDescription="T2_SPIR", ProtocolName="T2SPIR",
             ScanningSequence="SE", SequenceVariant="SK", EchoTime=_ds(T2_TE),
             EchoNumbers=1, RepetitionTime=_ds(T2_TR), FlipAngle="90",
             SliceThickness=_ds(dz2), SpacingBetweenSlices=_ds(dz2),
             ImageType=["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
             RescaleIntercept="0", RescaleSlope="1", WindowCenter=w2[0],
             WindowWidth=w2[1])
  pos = _positions(rng, size, spacing, slices, dz2)
  st2 = np.clip(np.rint(t2), 0, 65535).astype(np.uint16)
  ds = _series_dataset(t2f, size, size)
  for i in range(slices):
    f = dict(SOPInstanceUID=_uid(seed, "MR", pid, "t2", i),
             InstanceNumber=i + 1,
             ImagePositionPatient=[_ds(v) for v in pos[i]],
             SliceLocation=_ds(pos[i][2]))
    stem = f"IMG-{s_t2:04d}-{i + 1:05d}"
    _write_slice(ds, t2_dcm / f"{stem}.dcm", st2[i], f)
    _write_png(t2_gt / f"{stem}.png", masks[i])


# ------------------------------------------------------------ public API
def patient_ids(modality: str, n: int) -> list[str]:
  """The ids of the first `n` synthetic patients of "CT" or "MR" (CHAOS ids)."""
  ids = list(_CHAOS_CT_IDS if modality == "CT" else _CHAOS_MR_IDS)
  while len(ids) < n:
    ids.append(ids[-1] + 1)
  return [str(i) for i in ids[:n]]


def _params(n_ct, n_mr, size, slices, seed) -> dict:
  return dict(generator="liverjax.data.synthetic", version=GENERATOR_VERSION,
              n_ct=n_ct, n_mr=n_mr, size=size, slices=slices, seed=seed)


LOCK_NAME = ".synthetic_chaos.lock"


def generate_chaos(out_dir, *, n_ct: int = 4, n_mr: int = 4, size: int = 128,
                   slices: int = 24, seed: int = 0) -> pathlib.Path:
  """Writes a synthetic CHAOS training set and returns `out_dir/Train_Sets`.

  Args:
    out_dir: folder to write into (created). An existing `Train_Sets` there is
      replaced only if it was written by this generator (its marker file
      `synthetic_chaos.json`, `marker_path`); otherwise FileExistsError.
    n_ct, n_mr: number of CT and MR patients (different synthetic people).
    size: image rows = columns (>= 32).
    slices: slices per volume (>= 4), index 0 superior.
    seed: everything is a deterministic function of (seed, modality, patient
      index, size, slices): the same arguments give byte-identical files.
  Returns:
    The `Train_Sets` path holding `CT/<id>/...` and `MR/<id>/...`.

  The set and its marker are written into a temporary folder next to the target and
  renamed into place in one step, under the lock file `out_dir/.synthetic_chaos.lock`
  (see `cached_chaos`), so no reader that takes the lock sees a partial set, and a kill
  at any point leaves either no set or a complete one with its marker (the temporary
  folders a kill leaves are removed by the next generation).
  """
  _check_args(n_ct, n_mr, size, slices)
  out_dir = pathlib.Path(out_dir).expanduser()
  with filelock.locked(out_dir / LOCK_NAME):
    return _generate_locked(out_dir, n_ct, n_mr, size, slices, seed)


def _check_args(n_ct, n_mr, size, slices) -> None:
  if size < 32 or slices < 4:
    raise ValueError(f"size {size} must be >= 32 and slices {slices} >= 4")
  if n_ct < 0 or n_mr < 0:
    raise ValueError(f"patient counts must be >= 0, got {n_ct}, {n_mr}")


def _generate_locked(out_dir: pathlib.Path, n_ct, n_mr, size, slices, seed) -> pathlib.Path:
  """generate_chaos's body; the caller holds the lock of `out_dir`."""
  root = out_dir / "Train_Sets"
  if root.exists() and _marker(out_dir) is None:
    raise FileExistsError(
        f"{root}: exists and was not written by the synthetic generator; "
        "refusing to overwrite it")
  out_dir.mkdir(parents=True, exist_ok=True)
  for stale in [*out_dir.glob(".Train_Sets.partial-*"), *out_dir.glob(".Train_Sets.old-*")]:
    shutil.rmtree(stale, ignore_errors=True)  # left by a killed generation (we hold the lock)
  tmp = out_dir / f".Train_Sets.partial-{os.getpid()}"
  params = _params(n_ct, n_mr, size, slices, seed)
  params["patients"] = {"CT": patient_ids("CT", n_ct),
                        "MR": patient_ids("MR", n_mr)}
  try:
    for modality, n, write in (("CT", n_ct, _write_ct_patient),
                               ("MR", n_mr, _write_mr_patient)):
      (tmp / modality).mkdir(parents=True)
      for idx, pid in enumerate(patient_ids(modality, n)):
        rng = np.random.default_rng([seed, 0 if modality == "CT" else 1, idx])
        write(tmp / modality / pid, pid, seed, rng, size, slices)
    (tmp / MARKER_NAME).write_text(json.dumps(params, indent=1))
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  # Swap the new set (with its marker) in with renames; the old one is removed afterwards.
  old = out_dir / f".Train_Sets.old-{os.getpid()}"
  if root.exists():
    os.rename(root, old)
  os.rename(tmp, root)
  if (out_dir / MARKER_NAME).exists():  # an older set's marker beside the folder
    (out_dir / MARKER_NAME).unlink()
  if old.exists():
    shutil.rmtree(old)
  return root


def cached_chaos(out_dir, *, n_ct: int = 4, n_mr: int = 4, size: int = 128,
                 slices: int = 24, seed: int = 0) -> pathlib.Path:
  """Like generate_chaos, but reuses `out_dir` when it already holds a complete
  set generated with the same arguments (per its marker file).

  The check and the generation run under the lock file
  `out_dir/.synthetic_chaos.lock`: a second process asking for the same set
  while the first generates it waits, then finds it finished and reuses it.
  """
  _check_args(n_ct, n_mr, size, slices)
  out_dir = pathlib.Path(out_dir).expanduser()
  with filelock.locked(out_dir / LOCK_NAME):
    marker = _marker(out_dir)
    root = out_dir / "Train_Sets"
    if marker is not None and root.is_dir():
      try:
        old = json.loads(marker.read_text())
      except (OSError, ValueError):
        old = {}
      old.pop("patients", None)
      if old == _params(n_ct, n_mr, size, slices, seed):
        return root
    return _generate_locked(out_dir, n_ct, n_mr, size, slices, seed)


def main(argv):
  del argv
  fl = flags.FLAGS
  start = time.perf_counter()
  root = generate_chaos(fl.out, n_ct=fl.ct, n_mr=fl.mr, size=fl.size,
                        slices=fl.slices, seed=fl.seed)
  elapsed = time.perf_counter() - start
  for modality in ("CT", "MR"):
    for pdir in sorted((root / modality).iterdir(), key=lambda p: int(p.name)):
      n_dcm = sum(1 for _ in pdir.rglob("*.dcm"))
      n_png = sum(1 for _ in pdir.rglob("*.png"))
      print(f"{modality}/{pdir.name}: {n_dcm} DICOM, {n_png} PNG masks")
  print(f"wrote {fl.ct} CT + {fl.mr} MR synthetic patients "
        f"({fl.size}x{fl.size}, {fl.slices} slices, seed {fl.seed}) to {root} "
        f"in {elapsed:.2f} s")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("out", None, "Output folder (Train_Sets is made in it).")
  flags.DEFINE_integer("ct", 4, "Number of CT patients.")
  flags.DEFINE_integer("mr", 4, "Number of MR patients.")
  flags.DEFINE_integer("size", 128, "Image size (rows = columns).")
  flags.DEFINE_integer("slices", 24, "Slices per volume.")
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.mark_flag_as_required("out")
  app.run(main)
