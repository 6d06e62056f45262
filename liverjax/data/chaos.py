"""Reader for the CHAOS challenge data (CT and MR, DICOM slices + PNG masks).

numpy + pydicom + cv2 only (no TensorFlow, no JAX).

Layout (`root` is the folder holding `CT/` and/or `MR/`; `find_root` also accepts
`CHAOS_Train_Sets/` or `Train_Sets/` above it):

  CT/<id>/DICOM_anon/*.dcm                  CT/<id>/Ground/liver_GT_NNN.png
  MR/<id>/T1DUAL/DICOM_anon/InPhase/*.dcm   MR/<id>/T1DUAL/Ground/<InPhase stem>.png
  MR/<id>/T1DUAL/DICOM_anon/OutPhase/*.dcm  (masks: those of the InPhase partner)
  MR/<id>/T2SPIR/DICOM_anon/*.dcm           MR/<id>/T2SPIR/Ground/<stem>.png

Our sequence names: "ct" (CT), "t1_in", "t1_out", "t2" (MR).

A series is read by `read_series`: the slices of its folder as
`liverjax.data.dicom_series` reads and orders them (one series per folder, slice
order, duplicates), each paired with its Ground mask as `liverjax.data.chaos_masks`
says (CT by rank, MR by file stem / InPhase partner; the mask encodings). A series
whose kept masks all hold no liver is reported and skipped (every CHAOS series
shows the liver; training on it would teach "no liver").

Bad input raises `ChaosError` naming the file and the problem. `read_series`
drops unusable slices (unreadable pixels, missing / unreadable / mis-sized /
mis-encoded mask, a size that differs from the rest of the series, the cases
of `dicom_series` and `chaos_masks`) and lists them in `Volume.problems` (the unused files in
`Volume.dropped_files`); files that are not DICOM at all are listed too. It
raises only when the series has no usable slice, its CT masks cannot be proven
to pair, all its masks are empty, or more than half of its voxels are non-finite
(fewer are replaced by the lowest finite value and reported: `volume.finite_image`);
the error's `problems` keeps what was found before.
`load_volumes` reports (absl logging + return value) and skips bad series.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from typing import Iterable, Sequence

from absl import logging
import numpy as np

from liverjax.data import chaos_masks
from liverjax.data import dicom_series
from liverjax.data import orientation
from liverjax.data import volume as volume_lib
# The data layer's shared error and record, re-exported: `chaos.ChaosError`, `chaos.Volume`.
from liverjax.data.volume import ChaosError
from liverjax.data.volume import Volume

SEQUENCES = ("ct", "t1_in", "t1_out", "t2")
# sequence -> (modality, image folder below the patient, mask folder below the patient)
_SEQUENCE_DIRS = {
    "ct": ("CT", ("DICOM_anon",), ("Ground",)),
    "t1_in": ("MR", ("T1DUAL", "DICOM_anon", "InPhase"), ("T1DUAL", "Ground")),
    "t1_out": ("MR", ("T1DUAL", "DICOM_anon", "OutPhase"), ("T1DUAL", "Ground")),
    "t2": ("MR", ("T2SPIR", "DICOM_anon"), ("T2SPIR", "Ground")),
}
_LIVER_BAND = {"CT": (128, 255), "MR": (55, 70)}


@dataclasses.dataclass
class SeriesRef:
  """One image series of one patient found on disk, not read yet."""
  patient_id: str
  modality: str  # "CT" | "MR"
  sequence: str  # one of SEQUENCES
  image_dir: pathlib.Path
  mask_dir: pathlib.Path


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


# ----------------------------------------------------------------------------- series


def read_series(ref: SeriesRef) -> Volume:
  """Reads one series and its masks.

  Args:
    ref: from `discover` (or built by hand).

  Returns:
    A Volume with the usable slices in position order (`dicom_series`);
    `problems` lists the slices dropped and the files skipped, each naming its file.

  Raises:
    ChaosError: naming the folder, when the image folder is missing or empty,
      the mask folder is missing, no slice is readable/usable, or the CT masks
      cannot be proven to pair (see `chaos_masks`), or every mask is
      empty; its `problems` lists what was found before.
  """
  problems: list[str] = []
  try:
    return _read_series(ref, problems)
  except ChaosError as e:
    e.problems = list(problems)
    raise


def _read_series(ref: SeriesRef, problems: list[str]) -> Volume:
  image_dir, mask_dir = pathlib.Path(ref.image_dir), pathlib.Path(ref.mask_dir)
  label = f"{ref.modality} patient {ref.patient_id} {ref.sequence}"
  if not image_dir.is_dir():
    raise ChaosError(f"{image_dir}: image folder missing ({label})")
  if not mask_dir.is_dir():
    raise ChaosError(f"{mask_dir}: mask folder missing ({label})")
  files, ordered, values, kind, lost = dicom_series.ordered_slices(image_dir, label, problems)
  if ref.sequence == "ct" or ref.modality == "CT":
    chaos_masks.check_instance_order(ordered, image_dir, problems)
    mask_paths = chaos_masks.pair_ct(ordered, values, kind, lost,
                                     image_dir, mask_dir, problems)
  elif ref.sequence == "t1_out":
    mask_paths = chaos_masks.pair_outphase(ordered, image_dir, mask_dir, problems)
  else:
    mask_paths = chaos_masks.pair_by_stem(ordered, mask_dir, problems)

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
      mask = chaos_masks.read_mask_png(m)
    except ChaosError as e:
      problems.append(f"{e}; slice {s.path.name} dropped")
      continue
    if mask.shape != s.pixels.shape:
      problems.append(f"{m}: mask size {mask.shape} differs from image size "
                      f"{s.pixels.shape} of {s.path.name}; slice dropped")
      continue
    bad = chaos_masks.mask_encoding_problem(mask, ref.modality)
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
  z_spacing, z_note = dicom_series.series_z_spacing(kept)
  px, px_note = dicom_series.series_pixel_spacing(kept)
  problems += [f"{image_dir}: {note}" for note in (z_note, px_note) if note]
  image, finite_note = volume_lib.finite_image(
      np.stack(images).astype(np.float32, copy=False), image_dir)
  problems += [finite_note] if finite_note else []
  volume = Volume(
      patient_id=ref.patient_id, modality=ref.modality, sequence=ref.sequence,
      image=image,
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
  masks = dicom_series.list_files(mask_dir) if mask_dir is not None else []
  return sorted(str(f) for f in list(files) + masks if str(f) not in used)


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


def read_each(items, read, *, where, what: str, done=None) -> tuple[list, list[str]]:
  """Reads every item with `read`; one that fails is reported and skipped, never fatal.

  Args:
    items: what to read (series references, NIfTI cases, ...).
    read: item -> a volume with a `problems` list (reader notes, each naming a file).
    where: item -> the file or folder named when an unexpected error skips it.
    what: the word for an item in the messages ("series", "case").
    done: None, or item -> None, called once each item is read or skipped (progress
      lines: `liverjax.progress`).

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
    else:
      for p in vol.problems:
        logging.warning("%s", p)
      problems.extend(vol.problems)
      volumes.append(vol)
    if done is not None:
      done(item)
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
