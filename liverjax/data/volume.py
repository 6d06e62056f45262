"""The data layer's shared record and error: `Volume` (one scan in memory) and `ChaosError`.

Every reader returns a `Volume` (`liverjax.data.dicom_series`, `liverjax.data.chaos`, and
`liverjax.data.nifti`'s `NiftiVolume`) and raises `ChaosError` on bad input, the message
naming the file and the problem. `liverjax.data.chaos` re-exports both, so
`chaos.Volume` and `chaos.ChaosError` name these same classes.

The rule for non-finite voxels (`finite_image`), the same for every reader (CHAOS DICOM,
NIfTI, labelled or not) and for `liverjax.predict`: NaN and +-Inf voxels are replaced by the
volume's lowest finite value and reported as a problem naming the file and the count; a
volume with more than half of its voxels non-finite (`MAX_NONFINITE_FRACTION`) is refused.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Above this fraction of non-finite voxels a volume is refused (`finite_image`).
MAX_NONFINITE_FRACTION = 0.5


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


def finite_image(image: np.ndarray, where) -> tuple[np.ndarray, str | None]:
  """The non-finite voxel rule (module docstring), applied to one volume.

  Args:
    image: float array, any shape (a whole volume: the replacement is its lowest finite value).
    where: the file or folder the volume was read from, named in the messages.

  Returns:
    (image, problem): `image` itself and None when every voxel is finite; else a float32
    copy with NaN / +-Inf replaced by the lowest finite value, and one line naming `where`,
    the count and the value used.

  Raises:
    ChaosError: naming `where`, when more than MAX_NONFINITE_FRACTION of the voxels (or all)
      are not finite: too little of the scan is left to normalise or predict on.
  """
  image = np.asarray(image)
  finite = np.isfinite(image)
  if finite.all():
    return image, None
  bad, total = int(image.size - np.count_nonzero(finite)), int(image.size)
  if bad > MAX_NONFINITE_FRACTION * total:
    raise ChaosError(f"{where}: {bad} of {total} voxels ({100.0 * bad / total:.0f} %) are not "
                     f"finite (NaN or Inf); a volume with more than "
                     f"{100 * MAX_NONFINITE_FRACTION:.0f} % non-finite voxels is refused")
  low = float(image[finite].min())
  out = np.where(finite, image, np.float32(low)).astype(np.float32, copy=False)
  return out, (f"{where}: {bad} non-finite voxels (NaN or Inf) of {total} replaced by the "
               f"volume's lowest finite value {low:g}")
