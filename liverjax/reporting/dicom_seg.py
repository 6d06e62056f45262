"""DICOM-SEG writer for predicted liver masks (highdicom).

highdicom is a declared dependency, imported here only: `liverjax.predict`
imports this module inside a module-level try, so prediction still runs (and
writes NIfTI / PNG) on a host without highdicom, and says so in one line when
DICOM-SEG output is asked for there.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

import liverjax

ALGORITHM_NAME = "liverjax U-Net"
# Type 2 Patient / Study attributes highdicom copies from the sources: present (empty
# where the source lacks them, as anonymised data often does).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
          "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
# highdicom logs every module it copies at INFO.
logging.getLogger("highdicom").setLevel(logging.WARNING)


def write_dicom_seg(path: str | pathlib.Path, mask: np.ndarray,
                    source_files: Sequence[str | pathlib.Path], *,
                    model_version: str = "", series_number: int = 100
                    ) -> pathlib.Path:
  """Writes a binary liver DICOM Segmentation referencing its source series.

  Args:
    path: the .dcm file to write (its folder is created).
    mask: uint8/bool [N,H,W], slice n on the source image `source_files[n]`
      (rows and columns as in that file's pixel array); non-zero = liver.
    source_files: the N DICOM files of one series the mask was predicted on.
    model_version: which trained model made the mask (e.g. "checkpoint step 400"): the
      algorithm version (AlgorithmIdentificationSequence) and the end of the
      SeriesDescription; "" for the software version alone.
    series_number: SeriesNumber of the new segmentation series.

  Returns:
    The path written. SoftwareVersions is liverjax's version (`liverjax.__version__`);
    the SEG's ReferencedSeriesSequence lists every source SOPInstanceUID; frames
    without liver are omitted (all frames are kept for an empty mask, so the object is
    never empty).

  Raises:
    ValueError: naming `path`, when the mask shape does not match the sources.
  """
  path = pathlib.Path(path)
  sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in source_files]
  for ds in sources:
    for keyword in _TYPE2:
      if keyword not in ds:
        setattr(ds, keyword, "")
  mask = np.asarray(mask) != 0
  if mask.ndim != 3 or mask.shape[0] != len(sources) or mask.shape[1:] != (
      int(sources[0].Rows), int(sources[0].Columns)):
    raise ValueError(f"{path}: mask of shape {mask.shape} for {len(sources)} source images "
                     f"of {sources[0].Rows}x{sources[0].Columns}")
  algorithm = hd.AlgorithmIdentificationSequence(
      name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence,
      version=model_version or liverjax.__version__)
  liver = hd.seg.SegmentDescription(
      segment_number=1, segment_label="Liver",
      segmented_property_category=codes.SCT.Organ, segmented_property_type=codes.SCT.Liver,
      algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
      algorithm_identification=algorithm)
  seg = hd.seg.Segmentation(
      source_images=sources, pixel_array=mask.astype(np.uint8),
      segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
      segment_descriptions=[liver], series_instance_uid=hd.UID(),
      series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
      manufacturer="liverjax", manufacturer_model_name=ALGORITHM_NAME,
      software_versions=liverjax.__version__, device_serial_number="0",
      series_description=", ".join([f"{ALGORITHM_NAME} liver"] + [model_version] * bool(
          model_version))[:64],  # a DICOM LO value: 64 characters at most
      omit_empty_frames=bool(mask.any()))
  path.parent.mkdir(parents=True, exist_ok=True)
  seg.save_as(str(path))
  return path
