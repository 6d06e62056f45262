"""Tests for liverjax/data/orientation.py: directions -> display orientation."""
import dataclasses

import numpy as np
import pytest

from liverjax.data import chaos
from liverjax.data import orientation

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def test_standard_axial_dicom_is_the_display_orientation():
  np.testing.assert_allclose(orientation.dicom_directions(AXIAL), orientation.DISPLAY)
  assert orientation.to_display(orientation.dicom_directions(AXIAL)).identity
  assert orientation.to_display(orientation.dicom_directions(None)).identity


def test_ras_nifti_needs_all_three_flips():
  r = orientation.to_display(orientation.nifti_directions(np.diag([1.0, 1.0, 1.0, 1.0])))
  assert r.axes == (2, 1, 0) and r.flip == (True, True, True)
  arr = np.arange(24).reshape(2, 3, 4)
  np.testing.assert_array_equal(orientation.apply(arr, r), arr[::-1, ::-1, ::-1].T)
  assert orientation.apply_spacing((1.0, 2.0, 3.0), r) == (3.0, 2.0, 1.0)


def test_oblique_axes_go_to_the_nearest_patient_axis():
  a = np.deg2rad(20)
  # Rows tilted 20 degrees from x towards y, columns from y towards -x: still axial.
  iop = (np.cos(a), np.sin(a), 0.0, -np.sin(a), np.cos(a), 0.0)
  assert orientation.to_display(orientation.dicom_directions(iop)).identity
  with pytest.raises(ValueError, match="parallel"):
    orientation.dicom_directions((1, 0, 0, 1, 0, 0))


def _volume(image, orient_files=("a", "b", "c")):
  return chaos.Volume(patient_id="1", modality="CT", sequence="ct", image=image,
                      mask=(image > 10).astype(np.uint8), spacing=(5.0, 1.0, 2.0), window=None,
                      image_files=[f"/d/{f}.dcm" for f in orient_files],
                      mask_files=[f"/m/{f}.png" for f in orient_files], problems=[])


def test_reorient_volume_mirrored_rows_and_columns():
  """Row cosine -x, column cosine -y (a series stored upside down and mirrored): the normal
  is still +z, so only the in-plane axes flip back."""
  image = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
  vol = _volume(image)
  out = orientation.reorient_volume(vol, (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
  np.testing.assert_array_equal(out.image, image[:, ::-1, ::-1])
  np.testing.assert_array_equal(out.mask, vol.mask[:, ::-1, ::-1])
  assert out.spacing == (5.0, 1.0, 2.0) and out.image_files == vol.image_files
  assert orientation.reorient_volume(vol, AXIAL) is vol


def test_reorient_volume_feet_first_normal_reverses_slices_and_files():
  """Row cosine -x, column +y: the normal points to the feet, so the reader's slice order
  (decreasing position along the normal) runs feet -> head and must be reversed."""
  image = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
  vol = _volume(image)
  out = orientation.reorient_volume(vol, (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
  np.testing.assert_array_equal(out.image, image[::-1, :, ::-1])
  assert out.image_files == vol.image_files[::-1] and out.mask_files == vol.mask_files[::-1]
  assert dataclasses.asdict(out)["problems"] == []
