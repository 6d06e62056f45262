"""The data layer's shared record and error: `Volume` (one scan in memory) and `ChaosError`.

Every reader returns a `Volume` (`liverjax.data.dicom_series`, `liverjax.data.chaos`, and
`liverjax.data.nifti`'s `NiftiVolume`) and raises `ChaosError` on bad input, the message
naming the file and the problem. `liverjax.data.chaos` re-exports both, so
`chaos.Volume` and `chaos.ChaosError` name these same classes.
"""
from __future__ import annotations

import dataclasses

import numpy as np


class ChaosError(ValueError):
  """Bad input; the message names the file and the problem.

  Raised by `chaos.read_series`, `problems` also lists what was found in the series
  before it was refused (each naming its file).
  """
  problems: list[str] = []


@dataclasses.dataclass
class Volume:
  """One series read into memory, slices in the order of `liverjax.data.dicom_series`."""
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
