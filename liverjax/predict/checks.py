"""Plausibility warnings for one predicted scan: lines for its `problems`, never refusals.

A mask can be well formed and still wrong (a CT-trained model on a T1 scan marked 356 mL of
the abdominal wall as liver). Each scan's record gets a line when:
  * the predicted liver's volume is outside a plausible adult range, or most of it lies on
    the patient's left (`segmentation.postprocess.liver_plausibility`, the check
    self-training filters its pseudo-labels with);
  * the scan is an MR sequence the checkpoint was not trained (or, for a CT-trained model,
    evaluated) on, when its header or layout tells the sequence (`Scan.header_sequence`).
"""
from __future__ import annotations

import numpy as np

from liverjax.data import preprocess
from liverjax.predict import model as model_lib
from liverjax.predict import scans
from liverjax.segmentation import postprocess


def liver_problem(scan: scans.Scan, mask: np.ndarray) -> str | None:
  """A line when the predicted liver is implausible (volume or side), else None.

  Args:
    scan: the scan (its image in the display orientation, spacing in mm).
    mask: uint8 [Z,H,W] 0/1 on the scan's grid, display orientation.
  """
  body = preprocess.body_mask(scan.volume.image)
  _, _, reason = postprocess.liver_plausibility(mask, body, scan.volume.spacing)
  if not reason:
    return None
  note = (" (a scan that covers only part of the liver gives a small volume too)"
          if "outside" in reason else "")
  return f"{scan.ref.path}: implausible: {reason}{note}; check the mask before using it"


def _covers(known: tuple[str, ...], sequence: str) -> bool:
  return sequence in known or (sequence == "t1" and any(s.startswith("t1") for s in known))


def sequence_problem(model: model_lib.Model, scan: scans.Scan) -> str | None:
  """A line when the scan is an MR sequence the checkpoint has not seen, else None (CT, or
  an MR scan whose sequence its header does not tell, or one it has seen).

  The checkpoint's MR sequences are its `data.mr_sequences`: trained on them when its source
  is MR, evaluated (and its test-time options chosen) on them when it is CT.
  """
  if scan.volume.modality != "MR" or scan.header_sequence is None:
    return None
  sequence, evidence = scan.header_sequence
  known = tuple(model.config.data.mr_sequences)
  if _covers(known, sequence):
    return None
  how = ("trained on MR" if str(model.config.data.source).lower() == "mr"
         else "trained on CT and evaluated on MR")
  return (f"{scan.ref.path}: MR sequence {sequence} by {evidence}; the checkpoint was {how} "
          f"{', '.join(known)} only (data.mr_sequences): the mask may be poor")


def plausibility_problems(model: model_lib.Model, scan: scans.Scan,
                          mask: np.ndarray) -> list[str]:
  """Every warning line of this module for one predicted scan (possibly none)."""
  return [p for p in (liver_problem(scan, mask), sequence_problem(model, scan)) if p]
