"""Tests for liverjax/predict/outputs.py: the mask on the input's own voxel grid, the
field-of-view edge check."""
import nibabel as nib
import numpy as np

from liverjax import predict
from liverjax.data import orientation


def test_nifti_mask_is_mapped_back_to_the_input_voxel_order(model, tmp_path):
  """An oblique-free but permuted and flipped NIfTI: the written mask, brought to the
  display orientation, is exactly the mask predicted on the display volume."""
  rng = np.random.default_rng(0)
  display = np.full((6, 40, 36), -1000.0, np.float32)
  display[:, 5:35, 4:32] = rng.normal(40, 30, (6, 30, 28))
  display[1:5, 10:25, 5:18] = 120.0
  # Source array axes (i, j, k) = display (W, Z, H), with W and Z reversed.
  r = orientation.Reorientation(axes=(1, 2, 0), flip=(True, False, True))
  source = np.ascontiguousarray(orientation.from_display(display, r))
  affine = np.eye(4)
  affine[:3, 3] = (-20.0, 30.0, 10.0)
  for t, (s, flip) in enumerate(zip(r.axes, r.flip)):  # source axis s shows display axis t
    lps = orientation.DISPLAY[t] * (-1.0 if flip else 1.0)
    affine[:3, s] = np.diag([-1.0, -1.0, 1.0]) @ lps * (2.5, 0.8, 0.9)[t]
  # The affine says r: reading the file brings it to the display orientation with r.
  assert orientation.to_display(orientation.nifti_directions(affine)) == r
  path = tmp_path / "case_0000.nii.gz"
  nib.save(nib.Nifti1Image(source, affine), str(path))
  (record,) = predict.predict_paths(model, [path], tmp_path / "out", keep_largest=False,
                                    modality="CT")
  written = nib.load(str(tmp_path / "out" / "case" / "mask.nii.gz"))
  assert written.shape == source.shape
  np.testing.assert_allclose(written.affine, affine, atol=1e-6)
  scan = predict.read_scan(predict.find_scans(path)[0], "CT")
  np.testing.assert_array_equal(scan.volume.image, display)
  expected = predict.predict_volume(model, scan.volume, keep_largest=False)
  np.testing.assert_array_equal(orientation.apply(np.asarray(written.dataobj), r), expected)
  assert record["slices"] == 6


def test_field_of_view_edge_problem_names_a_liver_at_the_crop_edge():
  # A 400 mm scan (100 px of 4 mm) seen through a 320 mm field of view at 64 px: the model sees
  # columns within +-160 mm of the centre; the band checked is the outer 10 mm of that.
  mask = np.zeros((3, 100, 100), np.uint8)
  mask[1, 40:60, 45:55] = 1  # central liver: nothing to say
  assert predict.field_of_view_edge_problem(mask, (4.0, 4.0), 320.0, 64, "scan") is None
  mask[1, 40:60, 10:15] = 1  # 158-138 mm left of the centre: at the edge of the crop
  line = predict.field_of_view_edge_problem(mask, (4.0, 4.0), 320.0, 64, "scan_7")
  assert line is not None and "scan_7" in line and "320 mm" in line and "400 x 400 mm" in line
  # The same mask on a 300 mm scan (3 mm pixels) was padded, not cut; whole slices are never cut.
  assert predict.field_of_view_edge_problem(mask, (3.0, 3.0), 320.0, 64, "scan") is None
  assert predict.field_of_view_edge_problem(mask, (4.0, 4.0), None, 64, "scan") is None
  # Only the cut side counts: 400 mm wide, 300 mm tall, liver at the top edge -> nothing.
  top = np.zeros((3, 100, 100), np.uint8)
  top[1, 0:5, 45:55] = 1
  assert predict.field_of_view_edge_problem(top, (3.0, 4.0), 320.0, 64, "scan") is None
  assert predict.field_of_view_edge_problem(top, (4.0, 3.0), 320.0, 64, "scan") is not None
