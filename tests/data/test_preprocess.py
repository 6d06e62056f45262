"""Tests for liverjax/data/preprocess.py."""
import dataclasses

import cv2
import numpy as np
import pytest

from liverjax.data import chaos
from liverjax.data import nifti
from liverjax.data import preprocess


def test_window_ct_maps_the_window_to_unit_range():
  hu = np.array([-1000.0, -160.0, 40.0, 140.0, 240.0, 3000.0])
  out = preprocess.window_ct(hu, center=40.0, width=400.0)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 0.75, 1.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(preprocess.window_ct(np.array([50.0]), 50.0, 100.0), [0.5])
  with pytest.raises(ValueError):
    preprocess.window_ct(hu, 40.0, 0.0)


def test_normalize_mr_uses_robust_percentiles():
  rng = np.random.default_rng(0)
  img = rng.uniform(100.0, 200.0, size=(4, 32, 32)).astype(np.float32)
  img[0, 0, 0] = 1e6  # one hot pixel must not squash the range
  out = preprocess.normalize_mr(img, (0.5, 99.5))
  assert out.dtype == np.float32 and out.shape == img.shape
  assert out.min() == 0.0 and out.max() == 1.0
  assert 0.45 < float(np.median(out)) < 0.55
  lo, hi = np.percentile(img, (0.5, 99.5))
  assert hi < 300
  np.testing.assert_allclose(out[1, 2, 3], np.clip((img[1, 2, 3] - lo) / (hi - lo), 0, 1),
                             rtol=1e-5)
  np.testing.assert_array_equal(preprocess.normalize_mr(np.full((2, 4, 4), 7.0)), 0.0)


def test_standardize_volume_z_scores_the_body():
  rng = np.random.default_rng(1)
  img = np.zeros((3, 40, 40), np.float32)  # background 0
  img[:, 10:30, 10:30] = rng.normal(500.0, 20.0, size=(3, 20, 20))
  out = preprocess.standardize_volume(img, clip=3.0)
  assert out.dtype == np.float32 and out.shape == img.shape
  assert out.min() >= 0.0 and out.max() <= 1.0
  body = out[:, 10:30, 10:30]
  # body statistics: mean 0.5, std 1/(2*clip) in [0,1] units
  assert abs(float(body.mean()) - 0.5) < 0.02
  assert abs(float(body.std()) - 1.0 / 6.0) < 0.02
  np.testing.assert_array_equal(out[:, :5, :5], 0.0)  # background is -25 std: clipped
  assert preprocess.body_mask(img)[:, 10:30, 10:30].all()
  assert not preprocess.body_mask(img)[:, :10].any()
  np.testing.assert_array_equal(preprocess.standardize_volume(np.ones((2, 5, 5))), 0.5)


def test_binarize_mask_ct_and_mr_levels():
  ct = np.array([0, 1, 127, 128, 255], np.uint8)
  np.testing.assert_array_equal(preprocess.binarize_mask(ct, "CT"), [0, 0, 0, 1, 1])
  mr = np.array([0, 54, 55, 63, 70, 71, 126, 189, 252], np.uint8)
  out = preprocess.binarize_mask(mr, "MR")
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, [0, 0, 1, 1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(preprocess.binarize_mask(mr, "mr"), out)
  with pytest.raises(ValueError):
    preprocess.binarize_mask(mr, "PET")


@pytest.mark.parametrize("shape,size", [((3, 64, 64), 32), ((2, 20, 20), 48),
                                        ((2, 64, 24), 32)])
def test_resize_volume_shapes_dtypes_binary_mask(shape, size):
  rng = np.random.default_rng(2)
  img = rng.uniform(0, 1, size=shape).astype(np.float64)
  mask = (rng.uniform(size=shape) > 0.7).astype(np.uint8)
  out_img, out_mask = preprocess.resize_volume(img, mask, size)
  assert out_img.shape == (shape[0], size, size) and out_img.dtype == np.float32
  assert out_mask.shape == (shape[0], size, size) and out_mask.dtype == np.uint8
  assert set(np.unique(out_mask)) <= {0, 1}
  assert out_img.min() >= 0.0 and out_img.max() <= 1.0  # no overshoot


def test_resize_volume_keeps_mask_and_image_registered():
  img = np.zeros((1, 64, 64), np.float32)
  mask = np.zeros((1, 64, 64), np.uint8)
  img[0, 16:48, 8:40] = 1.0
  mask[0, 16:48, 8:40] = 1
  small_img, small_mask = preprocess.resize_volume(img, mask, 32)
  expected = np.zeros((32, 32), np.uint8)
  expected[8:24, 4:20] = 1
  np.testing.assert_array_equal(small_mask[0], expected)  # not shifted by half a pixel
  np.testing.assert_array_equal((small_img[0] > 0.5).astype(np.uint8), expected)
  np.testing.assert_allclose(small_img.mean(), img.mean(), rtol=1e-5)  # INTER_AREA: mean kept
  big_img, big_mask = preprocess.resize_volume(img, mask, 128)
  assert big_mask.sum() == 4 * mask.sum()
  assert np.mean((big_img[0] > 0.5) == (big_mask[0] == 1)) > 0.999
  # Non-integer factors: the nearest-neighbour mask must match the interpolated
  # image of the same blobs (plain INTER_NEAREST is half a pixel off: ~0.89 / 0.95).
  rng = np.random.default_rng(0)
  blobs = (cv2.GaussianBlur(rng.normal(size=(64, 64)).astype(np.float32), (0, 0), 2) > 0)
  blobs = blobs.astype(np.uint8)[None]
  for size in (40, 100):
    r_img, r_mask = preprocess.resize_volume(blobs.astype(np.float32), blobs, size)
    assert np.mean((r_img > 0.5) == (r_mask == 1)) > 0.96, size
  # raw gray labels survive nearest-neighbour resizing
  gray = np.zeros((1, 16, 16), np.uint8)
  gray[0, :8] = 63
  gray[0, 8:] = 252
  _, g = preprocess.resize_volume(np.zeros((1, 16, 16)), gray, 7)
  assert set(np.unique(g)) == {63, 252}


def _volume(modality, image, mask, window=None):
  return chaos.Volume(patient_id="1", modality=modality, sequence="ct" if modality == "CT"
                      else "t2", image=image, mask=mask, spacing=(2.5, 0.5, 0.75),
                      window=window, image_files=[], mask_files=[], problems=[])


def test_prepare_volume_ct_and_mr():
  rng = np.random.default_rng(3)
  hu = rng.uniform(-1000, 1000, size=(2, 40, 40)).astype(np.float32)
  mask = np.zeros((2, 40, 40), np.uint8)
  mask[:, 10:30, 10:30] = 255
  p = preprocess.prepare_volume(_volume("CT", hu, mask, window=(50.0, 100.0)), image_size=20)
  assert isinstance(p, preprocess.PreparedVolume)
  assert p.image.shape == (2, 20, 20) and p.image.dtype == np.float32
  assert p.mask.shape == (2, 20, 20) and p.mask.dtype == np.uint8
  assert p.image.min() >= 0 and p.image.max() <= 1
  assert set(np.unique(p.mask)) == {0, 1} and p.mask[:, 5:15, 5:15].all()
  assert p.spacing == pytest.approx((2.5, 1.0, 1.5))
  # ct_window_from_dicom: the narrow DICOM window saturates far more pixels
  d = preprocess.prepare_volume(_volume("CT", hu, mask, window=(50.0, 100.0)),
                                image_size=40, ct_window_from_dicom=True)
  np.testing.assert_allclose(d.image, preprocess.window_ct(hu, 50.0, 100.0), atol=1e-6)
  w = preprocess.prepare_volume(_volume("CT", hu, mask), image_size=40,
                                ct_window_from_dicom=True)  # no DICOM window: ct_window
  np.testing.assert_allclose(w.image, preprocess.window_ct(hu, 40.0, 400.0), atol=1e-6)

  mr = rng.uniform(0, 3000, size=(2, 40, 40)).astype(np.float32)
  mr_mask = np.zeros((2, 40, 40), np.uint8)
  mr_mask[:, :10] = 63
  mr_mask[:, 10:20] = 126
  mr_mask[:, 20:30] = 252
  q = preprocess.prepare_volume(_volume("MR", mr, mr_mask), image_size=40)
  np.testing.assert_allclose(q.image, preprocess.normalize_mr(mr), atol=1e-6)
  np.testing.assert_array_equal(q.mask, (mr_mask == 63).astype(np.uint8))
  z = preprocess.prepare_volume(_volume("MR", mr, mr_mask), image_size=40,
                                normalization="zscore")
  np.testing.assert_allclose(z.image, preprocess.standardize_volume(mr), atol=1e-6)
  with pytest.raises(ValueError):
    preprocess.prepare_volume(_volume("MR", mr, mr_mask), image_size=8, normalization="x")


def test_prepare_real_ct_sample(ct_sample_root):
  vol = chaos.read_series(chaos.discover(ct_sample_root)[0])
  p = preprocess.prepare_volume(vol, image_size=128)
  assert p.image.shape == (78, 128, 128) and p.mask.shape == (78, 128, 128)
  assert set(np.unique(p.mask)) == {0, 1}
  # the liver volume is preserved by the 4x shrink within 2%
  assert abs(p.mask.sum() * 16 / (vol.mask > 127).sum() - 1) < 0.02
  assert p.spacing == pytest.approx((2.0, 0.7265625 * 4, 0.7265625 * 4))
  # in the abdominal window (40, 400) the enhanced liver (~140 HU) sits near 0.75
  assert 0.65 < float(p.image[p.mask == 1].mean()) < 0.85
  z = preprocess.prepare_volume(vol, image_size=64, normalization="zscore")
  assert z.image.min() >= 0 and z.image.max() <= 1


def test_prepare_volume_carries_the_organ_map_resized_like_the_mask():
  image = np.random.default_rng(0).uniform(-200, 300, (2, 40, 40)).astype(np.float32)
  organs = np.zeros((2, 40, 40), np.uint8)
  organs[:, 4:20, 4:20] = 1  # liver
  organs[:, 24:36, 20:36] = 2  # spleen
  vol = nifti.NiftiVolume(patient_id="1", modality="CT", sequence="ct", image=image,
                          mask=(organs == 1).astype(np.uint8), spacing=(2.5, 1.0, 1.0),
                          window=None, image_files=[], mask_files=[], problems=[],
                          organs=organs)
  p = preprocess.prepare_volume(vol, image_size=20)
  assert p.organs.shape == (2, 20, 20) and p.organs.dtype == np.uint8
  assert set(np.unique(p.organs)) == {0, 1, 2}  # nearest: no new values
  np.testing.assert_array_equal(p.organs == 1, p.mask == 1)  # registered with the mask
  assert preprocess.prepare_volume(_volume("CT", image, organs), image_size=20).organs is None


def _disc_volume(size_px: int, spacing_mm: float, radius_mm: float, modality="CT"):
  """A 2-slice scan with a centred liver disc of `radius_mm`, on a size_px grid of spacing_mm."""
  yy, xx = np.mgrid[:size_px, :size_px]
  c = (size_px - 1) / 2
  disc = ((yy - c) ** 2 + (xx - c) ** 2) * spacing_mm ** 2 <= radius_mm ** 2
  hu = np.where(disc, 100.0, -1000.0)[None].repeat(2, 0)
  mask = (disc * 255).astype(np.uint8)[None].repeat(2, 0)
  return chaos.Volume(patient_id="p", modality=modality, sequence="ct", image=hu, mask=mask,
                      spacing=(5.0, spacing_mm, spacing_mm), window=None,
                      image_files=[], mask_files=[], problems=[])


def test_field_of_view_gives_organs_the_same_pixel_size_across_scanners():
  # The same 80 mm disc, scanned with a 256 mm and a 460 mm field of view (512 px at 0.5 mm /
  # 256 px at 1.8 mm): resized whole to 64 px its area differs 3.2x; with a 360 mm field of view
  # both have pixels of 360 / 64 mm, and the disc covers pi r^2 of them, centred.
  small, large = _disc_volume(512, 0.5, 80.0), _disc_volume(256, 1.8, 80.0)
  whole = [preprocess.prepare_volume(v, image_size=64).mask[0].sum() for v in (small, large)]
  assert whole[0] / whole[1] > 2.5
  expected = np.pi * (80.0 / (360.0 / 64)) ** 2
  for v in (small, large):
    p = preprocess.prepare_volume(v, image_size=64, field_of_view=360.0)
    assert p.image.shape == p.mask.shape == (2, 64, 64)
    area = p.mask[0].sum()
    assert abs(area - expected) / expected < 0.06, (area, expected)
    ys, xs = np.nonzero(p.mask[0])
    assert abs(ys.mean() - 31.5) < 0.75 and abs(xs.mean() - 31.5) < 0.75
    # Pixels of 360 / 64 mm, to the rounding of the resized slice to whole pixels (46 px here).
    assert p.spacing[1:] == pytest.approx((360.0 / 64, 360.0 / 64), rel=0.02)
  # The 256 mm scan is padded (its border is air, 0); the 460 mm one cropped.
  padded = preprocess.prepare_volume(small, image_size=64, field_of_view=360.0)
  assert padded.image[:, :4].max() == 0.0 and padded.image[:, :, -4:].max() == 0.0


def test_liver_cut_is_the_fraction_of_the_liver_the_crop_removes():
  # A disc of radius 120 mm through a 250 mm field of view: inside, nothing cut. Through 160 mm:
  # the 160 mm square keeps the disc minus four circular segments (their area fraction below).
  v = _disc_volume(256, 1.0, 120.0)
  assert preprocess.prepare_volume(v, image_size=64).liver_cut == 0.0
  assert preprocess.prepare_volume(v, image_size=64, field_of_view=250.0).liver_cut == 0.0
  r, half = 120.0, 80.0
  segment = r * r * np.arccos(half / r) - half * np.sqrt(r * r - half * half)
  expected = 4 * segment / (np.pi * r * r)
  cut = preprocess.prepare_volume(v, image_size=64, field_of_view=160.0).liver_cut
  assert cut == pytest.approx(expected, abs=0.03), (cut, expected)
  # No liver, nothing to cut.
  empty = dataclasses.replace(v, mask=np.zeros_like(v.mask))
  assert preprocess.prepare_volume(empty, image_size=64, field_of_view=160.0).liver_cut == 0.0


def test_field_of_view_window_is_where_crop_or_pad_takes_the_grid_from():
  # 400 mm of 4 mm pixels through 320 mm at 64 px: resized to 80 px, of which 8..72 are kept,
  # i.e. native pixels 10..90. 300 mm of 3 mm pixels fits (padded): None.
  assert preprocess.field_of_view_window((100, 100), (4.0, 4.0), 64, 320.0) == (
      (10.0, 90.0), (10.0, 90.0))
  assert preprocess.field_of_view_window((100, 100), (3.0, 4.0), 64, 320.0) == (
      None, (10.0, 90.0))
  # The window is what crop_or_pad keeps: mark native columns, resize, crop, compare.
  h, w, size = 90, 130, 32
  spacing, fov = (2.0, 2.5), 200.0
  gh, gw = preprocess.field_of_view_shape((h, w), spacing, size, fov)
  cols = np.tile(np.arange(1, w + 1, dtype=np.uint8), (1, h, 1))  # column i marked i + 1
  kept = preprocess.crop_or_pad(preprocess.resize_labels(cols, (gh, gw)), size)
  seen = kept[kept > 0] - 1  # the native columns that survived (rows were padded with 0)
  window = preprocess.field_of_view_window((h, w), spacing, size, fov)
  assert window[0] is None  # 180 mm of rows fit in 200 mm
  start, stop = window[1]
  step = w / gw  # one resized pixel in native columns: nearest-resizing samples within it
  assert start <= seen.min() < start + step and stop - step <= seen.max() < stop


def test_crop_or_pad_and_its_inverse_keep_the_centre():
  rng = np.random.default_rng(0)
  for h, w in ((50, 70), (64, 64), (81, 40)):
    v = rng.random((2, h, w)).astype(np.float32)
    out = preprocess.crop_or_pad(v, 64)
    assert out.shape == (2, 64, 64)
    back = preprocess.uncrop_or_pad(out, (h, w), -20.0)
    assert back.shape == (2, h, w)
    kept = back != -20.0  # the overlap round-trips exactly; what was cropped gets the fill
    np.testing.assert_array_equal(back[kept], v[kept])
    assert kept.sum() == 2 * min(h, 64) * min(w, 64)
    assert out.sum() == pytest.approx(v[kept].sum(), rel=1e-5)  # padding adds zeros only
  assert preprocess.field_of_view_shape((512, 256), (0.5, 1.0), 64, 256.0) == (64, 64)
  with pytest.raises(ValueError, match="field_of_view"):
    preprocess.field_of_view_shape((64, 64), (1.0, 1.0), 64, 0.0)
  with pytest.raises(ValueError, match="spacing"):
    preprocess.field_of_view_shape((64, 64), (0.0, 1.0), 64, 300.0)
