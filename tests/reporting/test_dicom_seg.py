"""Tests for liverjax/reporting/dicom_seg.py: the SEG names the software and the model."""
import highdicom as hd
import numpy as np

import liverjax
from liverjax.data import chaos
from liverjax.data import synthetic
from liverjax.reporting import dicom_seg


def _ct_series(tmp_path):
  root = synthetic.generate_chaos(tmp_path / "chaos", n_ct=1, n_mr=0, size=32, slices=4)
  (ref,) = chaos.discover(root, ("ct",))
  return sorted(ref.image_dir.glob("*.dcm"))


def test_software_versions_is_the_liverjax_version_and_the_model_is_named_apart(tmp_path):
  files = _ct_series(tmp_path)
  mask = np.zeros((len(files), 32, 32), np.uint8)
  mask[1:3, 10:20, 8:18] = 1
  path = dicom_seg.write_dicom_seg(tmp_path / "seg.dcm", mask, files,
                                   model_version="checkpoint step 400")
  seg = hd.seg.segread(str(path))
  assert seg.SoftwareVersions == liverjax.__version__
  assert seg.SeriesDescription == "liverjax U-Net liver, checkpoint step 400"
  algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
  assert algorithm.AlgorithmVersion == "checkpoint step 400"
  # Without a model version: the software version alone, nowhere "step".
  seg = hd.seg.segread(str(dicom_seg.write_dicom_seg(tmp_path / "plain.dcm", mask, files)))
  assert seg.SoftwareVersions == liverjax.__version__
  assert seg.SeriesDescription == "liverjax U-Net liver"
  assert (seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
          .AlgorithmVersion == liverjax.__version__)
