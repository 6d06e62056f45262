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


# ----------------------------------------------------------------------------- bad scans (#26)


def _nifti(path, array, affine=None):
  path.parent.mkdir(parents=True, exist_ok=True)
  nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine),
           str(path))
  return path


def test_non_finite_voxels_follow_the_readers_rule(tmp_path):
  """A NaN voxel used to zero the whole MR scan (the percentile scaling): now it is replaced
  by the lowest finite value and the file and count are named, as the training reader does."""
  array = np.random.default_rng(0).uniform(100, 900, (20, 20, 6)).astype(np.float32)
  array[3, 3, 3] = np.nan
  path = _nifti(tmp_path / "mr_nan.nii.gz", array)
  scan = predict.read_scan(predict.find_scans(path)[0], "MR")
  assert np.isfinite(scan.volume.image).all()
  assert [p for p in scan.problems if str(path) in p and "1 non-finite voxels" in p]


def test_a_scan_in_memory_with_nan_is_prepared_by_the_same_rule(model):
  volume = chaos.Volume("p", "MR", "t2", np.random.default_rng(1).uniform(
      100, 900, (4, 32, 32)).astype(np.float32), np.zeros((4, 32, 32), np.uint8),
                        (3.0, 1.5, 1.5), None, [], [], [])
  clean = predict.prepare(model, volume)
  volume.image[0, :4, :4] = np.nan
  prepared = predict.prepare(model, volume)
  assert np.isfinite(prepared).all() and prepared.max() > 0.5
  assert np.abs(prepared - clean)[1:].max() < 0.05  # the slices without NaN barely move


@pytest.mark.parametrize("damage", ["truncated", "zero_affine", "huge_header"])
def test_damaged_nifti_is_one_line_naming_the_file(tmp_path, damage):
  from tests.data.test_nifti_file import _raw_nifti  # pylint: disable=g-import-not-at-top
  if damage == "truncated":
    good = _nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).normal(
        size=(40, 40, 20)).astype(np.float32))
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(good.read_bytes()[:2000])
  elif damage == "zero_affine":
    path = _raw_nifti(tmp_path / "zero.nii", (4, 4, 3), np.zeros(48, np.float32).tobytes(),
                      affine_rows=[[0, 0, 0, 0]] * 3)
  else:
    path = _raw_nifti(tmp_path / "huge.nii", (1024, 1024, 1024), b"\0" * 64)
  with pytest.raises(chaos.ChaosError) as e:
    predict.read_scan(predict.find_scans(path)[0], "CT")
  assert_one_line(e.value, path)


def test_the_mr_sequence_the_header_tells_is_kept(tmp_path):
  from liverjax.data import dicom_series  # pylint: disable=g-import-not-at-top
  img = nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.diag([1.5, 1.5, 3.0, 1.0]))
  img.header["descrip"] = b"T1 VIBE opposed phase"
  nib.save(img, str(tmp_path / "t1.nii.gz"))
  scan = predict.read_scan(predict.find_scans(tmp_path / "t1.nii.gz")[0], "MR")
  assert scan.header_sequence[0] == "t1_out" and "T1 VIBE" in scan.header_sequence[1]
  plain = _nifti(tmp_path / "plain.nii.gz", np.ones((8, 8, 4), np.float32))
  assert predict.read_scan(predict.find_scans(plain)[0], "MR").header_sequence is None
  assert dicom_series.sequence_from_header("", 90.0, 4000.0)[0] == "t2"
  assert dicom_series.sequence_from_header("", 4.6, 150.0)[0] == "t1"
  assert dicom_series.sequence_from_header("T2 SPIR")[0] == "t2"
  assert dicom_series.sequence_from_header("abdomen", 30.0, 1000.0)[0] is None
