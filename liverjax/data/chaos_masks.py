"""The CHAOS Ground masks: reading the PNGs, their encodings, and pairing each
slice of a series with its mask.

numpy + cv2 only (no TensorFlow, no JAX). The slices come ordered by
`liverjax.data.dicom_series`; `liverjax.data.chaos.read_series` pairs them here.

CT mask pairing. `liver_GT_NNN.png` pairs with the slice of RANK NNN, the rank
being the slice's index in the position order of the series as it was
acquired (NNN = 000 is the head end, the slice of largest z). Verified on the
real CHAOS CT sample (../shared/data/chaos_ct_sample): z decreases as the file
index goes up, liver_GT_000 pairs with i0000 (z = 1690.5 mm, InstanceNumber 1),
and the mean HU inside the mask is ~soft tissue only with this pairing (see
tests/data/test_chaos_masks.py). What is provable:
  * The series is complete - no file of the folder lost (unreadable, or
    without a position / series UID; a README.txt does not count, see
    `dicom_series._SLICE_SUFFIXES`), no gap in the slice positions when they lie on a regular
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
encoding could train on wrong labels, and dropping is never silent.

Masks are returned as raw gray values (CT 0/255; MR 0/63/126/189/252); 1-bit
PNGs are expanded to 0/255.
"""
from __future__ import annotations

import pathlib
import re

import cv2
import numpy as np

from liverjax.data import dicom_series
from liverjax.data.volume import ChaosError

_CT_MASK_RE = re.compile(r"^liver_GT_(\d+)\.png$", re.IGNORECASE)
_GRID_TOL = 0.1  # a gap is a whole number of slice steps within this fraction of a step
# The CHAOS mask encodings: CT liver 255; MR liver 63, kidneys 126 / 189, spleen 252.
CT_MASK_VALUES = (0, 255)
MR_MASK_BANDS = ((0, 0), (55, 70), (110, 135), (175, 200), (240, 255))


# ----------------------------------------------------------------------------- mask files


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


def mask_encoding_problem(mask: np.ndarray, modality: str) -> str | None:
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


# ----------------------------------------------------------------------------- pairing


def check_instance_order(ordered: list[dicom_series.Slice], image_dir: pathlib.Path,
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


def _ct_ranks(ordered: list[dicom_series.Slice], values: list[float], kind: str,
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
  matches = [dicom_series.CT_NAME_RE.match(s.path.name) for s in ordered]
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


def pair_ct(ordered, values, kind, lost, image_dir, mask_dir,
            problems) -> list[pathlib.Path | str]:
  """The liver_GT mask of each ordered CT slice, by rank (module docstring).

  Args:
    ordered, values, kind, lost: from `dicom_series.ordered_slices`.
    image_dir, mask_dir: the series' DICOM and Ground folders.
    problems: appended to (extra masks, unexpected files, the evidence of the ranks).

  Returns:
    Per slice, the mask path, or a message naming the slice and its missing mask.

  Raises:
    ChaosError: naming the mask folder: no mask, or the ranks cannot be proven.
  """
  masks = {}
  for f in dicom_series.list_files(mask_dir):
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


def _mask_index(mask_dir: pathlib.Path) -> dict[str, pathlib.Path]:
  return {f.stem.lower(): f for f in dicom_series.list_files(mask_dir)
          if f.suffix.lower() == ".png"}


def pair_by_stem(ordered, mask_dir, problems) -> list[pathlib.Path | str]:
  """The Ground PNG with each slice file's stem (MR T2SPIR, T1 InPhase).

  Returns:
    Per ordered slice, the mask path, or a message naming the slice and its missing
    mask; masks with no slice are appended to `problems`.
  """
  index = _mask_index(mask_dir)
  out = [index.get(s.path.stem.lower())
         or f"{s.path}: missing mask {mask_dir / (s.path.stem + '.png')}" for s in ordered]
  used = {s.path.stem.lower() for s in ordered}
  for stem, f in sorted(index.items()):
    if stem not in used:
      problems.append(f"{f}: mask with no image slice in {ordered[0].path.parent}")
  return out


def pair_outphase(ordered, image_dir, mask_dir, problems) -> list[pathlib.Path | str]:
  """The mask of each T1 OutPhase slice's InPhase partner (module docstring).

  Returns:
    Per ordered slice, the mask path, or a message naming the slice and the missing
    mask of its partner; a partner found by position against the image number is
    appended to `problems`.
  """
  index = _mask_index(mask_dir)
  in_dir = image_dir.parent / "InPhase"
  in_positions = []  # (position, stem)
  if in_dir.is_dir():
    for f in dicom_series.list_files(in_dir):
      try:
        meta = dicom_series.metadata(dicom_series.read_dataset(f, stop_before_pixels=True), f)
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
                 if np.linalg.norm(p - pos) <= dicom_series.POSITION_TOL_MM]
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
