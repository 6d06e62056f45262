"""Tests for liverjax/data/volume.py: the rule for non-finite voxels (`finite_image`)."""
import numpy as np
import pytest

from liverjax.data import volume


def test_finite_volume_is_returned_as_it_is():
  image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  out, problem = volume.finite_image(image, "scan.nii.gz")
  assert out is image and problem is None


def test_nan_and_inf_become_the_lowest_finite_value_and_are_named():
  image = np.linspace(-100, 300, 60, dtype=np.float32).reshape(3, 4, 5)
  image[0, 0, :3] = [np.nan, np.inf, -np.inf]
  out, problem = volume.finite_image(image, "/data/ct_7.nii.gz")
  assert np.isfinite(out).all() and out.dtype == np.float32
  np.testing.assert_array_equal(out[0, 0, :3], [image[0, 0, 3]] * 3)  # -100 is gone: the
  np.testing.assert_array_equal(out[0, 0, 3:], image[0, 0, 3:])  # lowest finite left
  assert "/data/ct_7.nii.gz" in problem and "3 non-finite voxels" in problem
  assert "\n" not in problem
  assert np.isnan(image[0, 0, 0])  # the input is not modified


def test_a_volume_mostly_non_finite_is_refused_naming_the_file():
  image = np.full((2, 2, 2), np.nan, np.float32)
  image[0, 0, 0] = 1.0
  with pytest.raises(volume.ChaosError, match="7 of 8 voxels") as err:
    volume.finite_image(image, "/data/nan.nii.gz")
  assert "/data/nan.nii.gz" in str(err.value)
  with pytest.raises(volume.ChaosError):
    volume.finite_image(np.full((2, 2), np.nan, np.float32), "all_nan")
