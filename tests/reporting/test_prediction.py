"""Tests for liverjax/reporting/prediction.py: the mask writers."""
import cv2
import nibabel as nib
import numpy as np

from liverjax.data import chaos_masks
from liverjax.reporting import prediction


def test_write_nifti_keeps_the_affine_shape_and_header_units(tmp_path):
  affine = np.array([[-0.8, 0, 0, 10], [0, 0.8, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]])
  source = nib.Nifti1Image(np.zeros((5, 4, 3), np.int16), affine)
  source.header.set_xyzt_units("mm", "sec")
  source.header.set_slope_inter(2.0, -100.0)  # the image's scaling must not reach the mask
  nib.save(source, str(tmp_path / "image.nii.gz"))
  source = nib.load(str(tmp_path / "image.nii.gz"))  # the affine as stored (float32)
  affine = source.affine
  mask = np.zeros((5, 4, 3), np.uint8)
  mask[1:3, 2, 1] = 1
  path = prediction.write_nifti(tmp_path / "m.nii.gz", mask, affine, source.header)
  img = nib.load(str(path))
  np.testing.assert_array_equal(img.affine, affine)
  assert img.shape == mask.shape and img.get_data_dtype() == np.uint8
  np.testing.assert_array_equal(np.asarray(img.dataobj), mask)
  assert img.header.get_xyzt_units() == ("mm", "sec")
  fresh = nib.load(str(prediction.write_nifti(tmp_path / "f.nii", mask.astype(np.float32),
                                              affine)))
  np.testing.assert_allclose(fresh.affine, affine, atol=1e-6)
  assert int(fresh.header["sform_code"]) == 1


def test_chaos_pngs_read_back_as_the_ground_truth_encoding(tmp_path):
  mask = np.zeros((3, 8, 6), np.uint8)
  mask[1, 2:5, 1:4] = 1
  names = [f"liver_GT_{k:03d}.png" for k in range(3)]
  paths = prediction.write_chaos_pngs(tmp_path / "ct", mask, names,
                                      prediction.CHAOS_LIVER_VALUE["CT"])
  assert [p.name for p in paths] == names
  ct = np.stack([chaos_masks.read_mask_png(p) for p in paths])
  np.testing.assert_array_equal(ct, mask * 255)
  paths = prediction.write_chaos_pngs(tmp_path / "mr", mask, ["a.png", "b.png", "c.png"],
                                      prediction.CHAOS_LIVER_VALUE["MR"])
  np.testing.assert_array_equal(np.stack([chaos_masks.read_mask_png(p) for p in paths]),
                                mask * 63)


def test_overlay_shows_the_slices_with_most_mask(tmp_path):
  mask = np.zeros((6, 20, 30), np.uint8)
  mask[4, 5:15, 5:25] = 1
  mask[2, 5:8, 5:8] = 1
  assert prediction.overlay_slices(mask, n=2) == [2, 4]
  assert prediction.overlay_slices(np.zeros_like(mask), n=3) == [0, 2, 5]
  image = np.random.default_rng(0).normal(size=mask.shape).astype(np.float32)
  path = prediction.write_overlay(tmp_path / "o.png", image, mask, height=40)
  png = cv2.imread(str(path))
  width = round(40 * 30 / 20)
  assert png.shape == (40, 4 * width, 3)  # four slices side by side
  red = (png[..., 2] > png[..., 1] + 40)
  assert red.any()
