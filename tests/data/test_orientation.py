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


@pytest.mark.parametrize("axes", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1),
                                  (2, 1, 0)])
def test_from_display_inverts_apply(axes):
  arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
  for flips in np.ndindex(2, 2, 2):
    r = orientation.Reorientation(axes, tuple(bool(f) for f in flips))
    np.testing.assert_array_equal(orientation.from_display(orientation.apply(arr, r), r), arr)
    extra = np.stack([arr, -arr], axis=-1)  # a trailing channel axis is kept last
    shown = np.stack([orientation.apply(arr, r), orientation.apply(-arr, r)], axis=-1)
    np.testing.assert_array_equal(orientation.from_display(shown, r), extra)


def test_dicom_affine_places_every_slice_and_reads_back_as_display():
  positions = [(-50.0, -60.0, 100.0 - 2.5 * k) for k in range(4)]  # head first, as read
  affine, note = orientation.dicom_affine(positions, AXIAL, (0.7, 0.8))
  assert note is None
  for k, p in enumerate(positions):  # voxel (0, 0, k) sits at slice k's position (RAS)
    np.testing.assert_allclose(affine @ [0, 0, k, 1], [50.0, 60.0, p[2], 1.0])
  np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [0.8, 0.7, 2.5])
  # Stored [column, row, slice], the display orientation is the reader's [slice, row, column].
  r = orientation.to_display(orientation.nifti_directions(affine))
  arr = np.arange(24).reshape(4, 3, 2)  # [slice, row, column]
  np.testing.assert_array_equal(orientation.apply(arr.transpose(2, 1, 0), r), arr)
  _, note = orientation.dicom_affine(positions[:2] + positions[3:], AXIAL, (0.7, 0.8))
  assert "not evenly spaced" in note  # a missing slice: 2.5 then 5 mm, not a 3.75 mm grid
