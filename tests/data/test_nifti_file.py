"""Tests for liverjax/data/nifti_file.py: damaged NIfTI files refused in one line naming the
file, before any array is allocated where the header lies."""
import gzip
import pathlib

import nibabel as nib
import numpy as np
import pytest

from liverjax.data import chaos
from liverjax.data import nifti_file
from tests.data.test_nifti import write_nifti


def _raw_nifti(path: pathlib.Path, shape, data: bytes, affine_rows=None) -> pathlib.Path:
  """An uncompressed .nii written byte by byte: a header declaring `shape` float32, then
  `data` (whatever its length), the sform set to `affine_rows` (3 rows of 4) when given."""
  header = nib.Nifti1Header()
  header.set_data_shape(shape)
  header.set_data_dtype(np.float32)
  header["vox_offset"] = 352
  header["pixdim"][1:4] = 1.0
  if affine_rows is not None:
    header["sform_code"], header["qform_code"] = 1, 0
    for key, row in zip(("srow_x", "srow_y", "srow_z"), affine_rows):
      header[key] = row
  path.write_bytes(header.binaryblock + b"\0" * 4 + data)
  return path


def test_a_header_declaring_more_than_the_file_holds_is_refused_before_reading(tmp_path):
  """A 1024^3 claim in a 4 kB file: refused from the sizes alone (no 4 GB allocation)."""
  huge = _raw_nifti(tmp_path / "huge.nii", (1024, 1024, 1024), b"\0" * 4096)
  with pytest.raises(chaos.ChaosError, match="declares") as err:
    nifti_file.load_image(huge)
  assert str(huge) in str(err.value) and "\n" not in str(err.value)
  gz = tmp_path / "huge.nii.gz"
  gz.write_bytes(gzip.compress(huge.read_bytes()))
  with pytest.raises(chaos.ChaosError, match="compressed file") as err:
    nifti_file.load_image(gz)
  assert str(gz) in str(err.value)
  giant = _raw_nifti(tmp_path / "giant.nii", (32767, 32767, 32767), b"\0" * 64)
  with pytest.raises(chaos.ChaosError, match="declares"):
    nifti_file.load_image(giant)


def test_a_zero_affine_is_refused_naming_the_file(tmp_path):
  zero = _raw_nifti(tmp_path / "zero.nii", (4, 4, 3), np.zeros(48, np.float32).tobytes(),
                    affine_rows=[[0, 0, 0, 0]] * 3)
  with pytest.raises(chaos.ChaosError, match="affine") as err:
    nifti_file.load_image(zero)
  assert str(zero) in str(err.value) and "\n" not in str(err.value)


def test_truncated_gz_data_is_one_line_naming_the_file(tmp_path):
  good = write_nifti(tmp_path / "scan.nii.gz",
                     np.random.default_rng(0).normal(size=(40, 40, 20)).astype(np.float32))
  cut = tmp_path / "cut.nii.gz"
  cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
  img = nifti_file.load_image(cut)  # the header is intact
  with pytest.raises(chaos.ChaosError, match="truncated or damaged") as err:
    nifti_file.read_image_array(img, cut)
  assert str(cut) in str(err.value) and "\n" not in str(err.value)


def test_read_image_array_applies_the_non_finite_rule(tmp_path):
  array = np.arange(60, dtype=np.float32).reshape(5, 4, 3) + 10
  array[1, 1, 1] = np.nan
  path = write_nifti(tmp_path / "nan.nii.gz", array)
  out, problems = nifti_file.read_image_array(nifti_file.load_image(path), path)
  assert np.isfinite(out).all() and out[1, 1, 1] == 10.0
  assert len(problems) == 1 and str(path) in problems[0] and "1 non-finite" in problems[0]
