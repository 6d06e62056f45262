"""Tests for liverjax/predict/scans.py: bad inputs end in one line naming the file."""
import nibabel as nib
import numpy as np
import pytest

from liverjax import predict
from liverjax.data import chaos
from tests.predict.conftest import assert_one_line


def test_bad_inputs_raise_one_line_naming_the_file(tmp_path):
  empty = tmp_path / "no_dicom"
  empty.mkdir()
  (empty / "notes.txt").write_text("not a DICOM file")
  with pytest.raises(chaos.ChaosError) as e:
    predict.read_scan(predict.find_scans(empty)[0])
  assert_one_line(e.value, empty)
  four_d = tmp_path / "four_d.nii.gz"
  nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), str(four_d))
  with pytest.raises(chaos.ChaosError, match="expected a 3D volume") as e:
    predict.read_scan(predict.find_scans(four_d)[0])
  assert_one_line(e.value, four_d)
  with pytest.raises(predict.PredictError) as e:
    predict.find_scans(tmp_path / "missing.nii.gz")
  assert_one_line(e.value, tmp_path / "missing.nii.gz")
