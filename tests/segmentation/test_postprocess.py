"""Tests for liverjax/segmentation/postprocess.py."""
import numpy as np
import pytest

from liverjax.segmentation import postprocess


def test_keeps_largest_component():
  m = np.zeros((6, 10, 10), np.uint8)
  m[1:5, 2:7, 2:7] = 1  # 100 voxels
  m[0, 9, 9] = 1  # stray voxel
  m[4:6, 0:2, 8:10] = 255  # stray 8-voxel blob, not touching the big one
  out = postprocess.largest_component(m)
  assert out.dtype == np.uint8 and out.shape == m.shape
  expected = np.zeros_like(m)
  expected[1:5, 2:7, 2:7] = 1
  np.testing.assert_array_equal(out, expected)


def test_empty_stays_empty():
  out = postprocess.largest_component(np.zeros((3, 4, 4), bool))
  assert out.shape == (3, 4, 4) and not out.any()


def test_ties_keep_first_in_raster_order():
  m = np.zeros((2, 6, 6), np.uint8)
  m[1, 4:6, 4:6] = 1
  m[0, 0:2, 0:2] = 1
  out = postprocess.largest_component(m)
  assert out[0, 0, 0] == 1 and out.sum() == 4


def test_connectivity_diagonal_neighbours():
  m = np.zeros((3, 5, 5), np.uint8)
  m[0, 0, 0] = m[1, 1, 1] = m[2, 2, 2] = 1  # corner-touching chain
  m[0, 4, 3] = m[0, 4, 4] = 1  # a face-connected pair elsewhere
  assert postprocess.largest_component(m, connectivity=26).sum() == 3
  out6 = postprocess.largest_component(m, connectivity=6)
  assert out6.sum() == 2 and out6[0, 4, 3] == 1
  with pytest.raises(ValueError, match='postprocess.py'):
    postprocess.largest_component(m, connectivity=4)
  with pytest.raises(ValueError, match='postprocess.py'):
    postprocess.largest_component(m[0])


def test_liver_plausibility_volume_and_side():
  """The check shared by self-training's pseudo-label filter and predict's warnings."""
  body = np.zeros((4, 10, 10), bool)
  body[:, :, 1:9] = True  # centre column 4.5
  liver = np.zeros((4, 10, 10), np.uint8)
  liver[:, 2:8, 1:4] = 1  # 72 voxels on the patient's right (low columns)
  ml, right, reason = postprocess.liver_plausibility(liver, body, (10.0, 2.0, 2.0), 1.0, 5.0)
  assert (ml, right, reason) == (2.88, 1.0, "")
  _, _, reason = postprocess.liver_plausibility(liver, body, (10.0, 2.0, 2.0), 4.0, 5.0)
  assert reason == "predicted liver 3 mL, outside the plausible 4-5 mL"
  _, right, reason = postprocess.liver_plausibility(liver[..., ::-1], body, (10.0, 2.0, 2.0),
                                                    1.0, 5.0)
  assert right == 0.0 and "(100 %) on the patient's left" in reason
