"""Tests for liverjax/data/dicom_series.py: headers, rescale to HU, series UIDs, slice order,
duplicates; read through `chaos.read_series` where masks pin each slice."""
import pathlib
import shutil

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
import pytest

from liverjax.data import chaos
from liverjax.data import dicom_series
from tests.data.test_chaos import _assert_own_masks
from tests.data.test_chaos import _copy_sample
from tests.data.test_chaos import _ref
from tests.data.test_chaos import build_ct_patient
from tests.data.test_chaos import ct_mask
from tests.data.test_chaos import write_mask
from tests.data.test_chaos import write_slice


# ----------------------------------------------------------------------------- real CHAOS CT


def test_real_ct_sample_read_one_slice(ct_sample_root):
  ct = ct_sample_root / "Train_Sets" / "CT" / "0"
  pixels, meta = dicom_series.read_dicom_slice(ct / "DICOM_anon" / "i0000,0000b.dcm")
  raw = pydicom.dcmread(ct / "DICOM_anon" / "i0000,0000b.dcm").pixel_array
  np.testing.assert_array_equal(pixels, raw.astype(np.float32) - 1000.0)
  assert meta["z"] == pytest.approx(1690.5)
  assert meta["instance_number"] == 1
  assert meta["pixel_spacing"] == pytest.approx((0.7265625, 0.7265625))


# ----------------------------------------------------------------------------- pydicom's files


def test_read_ct_small_applies_rescale():
  path = get_testdata_file("CT_small.dcm")
  pixels, meta = dicom_series.read_dicom_slice(path)
  ds = pydicom.dcmread(path)
  assert pixels.dtype == np.float32 and pixels.shape == (128, 128)
  expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(
      ds.RescaleIntercept)
  np.testing.assert_array_equal(pixels, expected)
  assert float(ds.RescaleIntercept) == -1024.0
  assert meta["modality"] == "CT"
  assert meta["position"] == pytest.approx((-158.135803, -179.035797, -75.699997))
  assert meta["z"] == pytest.approx(-75.699997)  # axial: normal is +z
  assert meta["pixel_spacing"] == pytest.approx((0.661468, 0.661468))
  assert meta["slice_thickness"] == pytest.approx(5.0)


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "MR_small_RLE.dcm"])
def test_read_mr_encodings_give_the_same_pixels(name):
  ref, ref_meta = dicom_series.read_dicom_slice(get_testdata_file("MR_small.dcm"))
  pixels, meta = dicom_series.read_dicom_slice(get_testdata_file(name))
  assert pixels.dtype == np.float32 and pixels.shape == (64, 64)
  np.testing.assert_array_equal(pixels, ref)
  assert meta["echo_time"] == ref_meta["echo_time"] == pytest.approx(240.0)
  assert meta["window"] == ref_meta["window"]
  assert ref.max() > 0


def test_truncated_dicom_raises_naming_the_file():
  path = get_testdata_file("MR_truncated.dcm")
  with pytest.raises(chaos.ChaosError, match="MR_truncated.dcm.*pixel data"):
    dicom_series.read_dicom_slice(path)


def test_compressed_without_decoder_raises_naming_the_file():
  path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
  try:
    pydicom.dcmread(path).pixel_array
  except Exception:  # pylint: disable=broad-except
    pass
  else:
    pytest.skip("a JPEG-LS decoder is installed here")
  with pytest.raises(chaos.ChaosError,
                     match=r"MR_small_jpeg_ls_lossless\.dcm: cannot decode compressed.*JPEG-LS"):
    dicom_series.read_dicom_slice(path)


def test_non_image_dicom_files_raise_naming_the_file(tmp_path):
  with pytest.raises(chaos.ChaosError, match=r"SC_rgb_jpeg_dcmd\.dcm.*single-frame grayscale"):
    dicom_series.read_dicom_slice(get_testdata_file("SC_rgb_jpeg_dcmd.dcm"))  # RGB
  with pytest.raises(chaos.ChaosError, match=r"rtplan\.dcm.*pixel data"):
    dicom_series.read_dicom_slice(get_testdata_file("rtplan.dcm"))  # no image at all
  text = tmp_path / "notes.dcm"
  text.write_text("this is not a DICOM file\n" * 20)
  with pytest.raises(chaos.ChaosError, match=r"notes\.dcm: not a DICOM file"):
    dicom_series.read_dicom_slice(text)
  empty = tmp_path / "empty.dcm"
  empty.write_bytes(b"")
  with pytest.raises(chaos.ChaosError, match=r"empty\.dcm"):
    dicom_series.read_dicom_slice(empty)
  with pytest.raises(chaos.ChaosError, match=r"missing\.dcm"):
    dicom_series.read_dicom_slice(tmp_path / "missing.dcm")


# ----------------------------------------------------------------------------- slice order


def test_ct_slices_ordered_by_position_not_file_name(tmp_path):
  n = 5
  file_order = [3, 0, 4, 1, 2]  # file number of slice k (k = 0: largest z)
  build_ct_patient(tmp_path, 1, n=n, dz=2.5, file_order=file_order)
  v = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  assert v.problems == []
  raw_fill = np.array([100 * (k + 1) for k in range(n)], np.float32)
  np.testing.assert_array_equal(v.image[:, 0, 0], raw_fill - 1024.0)  # HU, position order
  assert [pathlib.Path(f).name for f in v.image_files] == [
      f"i{file_order[k]:04d},0000b.dcm" for k in range(n)]
  for k in range(n):  # liver_GT_k pairs with the k-th slice by position
    np.testing.assert_array_equal(v.mask[k], ct_mask(k))
  assert v.spacing == pytest.approx((2.5, 0.661468, 0.661468))  # not SliceThickness 5.0


def test_missing_pixel_spacing_is_reported_not_silent(tmp_path):
  # Without PixelSpacing the in-plane spacing falls back to 1.0 mm; the volume says so, since
  # surface distances and data.field_of_view rely on it.
  pdir = pathlib.Path(tmp_path) / "CT" / "1"
  for k in range(3):
    write_slice(pdir / "DICOM_anon" / f"i{k:04d},0000b.dcm", position=(-50.0, -50.0, 100.0 - 2.5 * k),
                instance=k + 1, fill=100 * (k + 1), drop=("PixelSpacing",))
    write_mask(pdir / "Ground" / f"liver_GT_{k:03d}.png", ct_mask(k))
  v = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  assert v.spacing[1:] == (1.0, 1.0)
  assert any("no PixelSpacing" in p and "1.0 mm" in p for p in v.problems), v.problems


def test_ordering_fallbacks_slice_location_then_instance_number(tmp_path):
  d = tmp_path / "CT" / "1"
  # No ImagePositionPatient: increasing SliceLocation (names and numbers disagree).
  for k, (name, loc, inst) in enumerate([("c", 10.0, 3), ("a", 20.0, 1), ("b", 30.0, 2)]):
    write_slice(d / "DICOM_anon" / f"{name}.dcm", slice_location=loc, instance=inst,
                fill=100 * (k + 1), drop=("ImagePositionPatient",))
    write_mask(d / "Ground" / f"liver_GT_{k:03d}.png", ct_mask(k))
  v = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  assert [pathlib.Path(f).stem for f in v.image_files] == ["c", "a", "b"]
  assert v.spacing[0] == pytest.approx(5.0)  # no positions: SliceThickness
  # Neither: InstanceNumber.
  shutil.rmtree(d / "DICOM_anon")
  for k, (name, inst) in enumerate([("c", 1), ("a", 2), ("b", 3)]):
    write_slice(d / "DICOM_anon" / f"{name}.dcm", instance=inst, fill=100 * (k + 1),
                drop=("ImagePositionPatient", "SliceLocation"))
  v = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  assert [pathlib.Path(f).stem for f in v.image_files] == ["c", "a", "b"]
  np.testing.assert_array_equal(v.image[:, 0, 0], np.array([100, 200, 300]) - 1024.0)


# ----------------------------------------------------------------------------- series UIDs and duplicates (issue #11)


def test_real_sample_duplicate_file_is_dropped_not_shifting_masks(ct_sample_root, tmp_path):
  pdir, index = _copy_sample(ct_sample_root, tmp_path)
  dup = pdir / "DICOM_anon" / "i0005,0000b (1).dcm"
  shutil.copy(pdir / "DICOM_anon" / "i0005,0000b.dcm", dup)
  index[dup.name] = 5
  vol = chaos.read_series(chaos.discover(tmp_path)[0])
  assert vol.image.shape[0] == 12
  _assert_own_masks(vol, index)
  assert any(str(dup) in p and "duplicate of i0005,0000b.dcm" in p for p in vol.problems)
  assert vol.dropped_files == [str(dup)]


def test_real_sample_slice_of_another_series_is_skipped(ct_sample_root, tmp_path):
  pdir, index = _copy_sample(ct_sample_root, tmp_path)
  ds = pydicom.dcmread(pdir / "DICOM_anon" / "i0003,0000b.dcm")
  ds.SeriesInstanceUID = "1.2.3.4.5"
  ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) - 1.0  # mid-volume
  foreign = pdir / "DICOM_anon" / "i0003,0001b.dcm"
  ds.save_as(foreign)
  vol = chaos.read_series(chaos.discover(tmp_path)[0])
  assert vol.image.shape[0] == 12
  _assert_own_masks(vol, index)
  assert any(str(foreign) in p and "another series (1.2.3.4.5)" in p for p in vol.problems)


def test_same_position_different_pixels_drops_that_slice_only(tmp_path):
  build_ct_patient(tmp_path, 1, n=4)
  other = write_slice(tmp_path / "CT/1/DICOM_anon/extra.dcm", position=(-50.0, -50.0, 97.5),
                      fill=999)  # the position of slice k = 1
  v = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  np.testing.assert_array_equal(v.image[:, 0, 0], np.array([100, 300, 400]) - 1024.0)
  for i, k in enumerate((0, 2, 3)):
    np.testing.assert_array_equal(v.mask[i], ct_mask(k))
  assert any("extra.dcm" in p and "differ in their pixels" in p for p in v.problems)
  assert str(other) in v.dropped_files


# ----------------------------------------------------------------------------- no masks


def test_read_image_series_orders_by_position_without_masks(tmp_path):
  file_order = [3, 0, 4, 1, 2]
  pdir = build_ct_patient(tmp_path, 1, n=5, file_order=file_order)
  (pdir / "DICOM_anon" / "README.txt").write_text("not a slice")
  v, metas = dicom_series.read_image_series(pdir / "DICOM_anon")
  np.testing.assert_array_equal(v.image[:, 0, 0],
                                np.array([100 * (k + 1) for k in range(5)]) - 1024.0)
  assert v.modality == "CT" and v.sequence == "ct" and v.patient_id == "DICOM_anon"
  assert [m["position"][2] for m in metas] == [100.0 - 2.5 * k for k in range(5)]
  assert v.mask.shape == v.image.shape and not v.mask.any()
  assert v.dropped_files == [str(pdir / "DICOM_anon" / "README.txt")]
  reference = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  np.testing.assert_array_equal(v.image, reference.image)


def test_read_image_series_refuses_a_folder_without_dicom(tmp_path):
  (tmp_path / "notes.txt").write_text("hello")
  with pytest.raises(chaos.ChaosError, match="no readable DICOM slice") as e:
    dicom_series.read_image_series(tmp_path)
  assert str(tmp_path) in str(e.value)
  (tmp_path / "sub").mkdir()
  with pytest.raises(chaos.ChaosError, match="empty folder"):
    dicom_series.read_image_series(tmp_path / "sub")


def test_non_finite_pixels_of_a_dicom_series_follow_the_rule(tmp_path, monkeypatch):
  """Float pixel data can hold NaN: a series is read finite, the folder and count named, by
  both the CHAOS reader (with masks) and the series reader `predict` uses."""
  pdir = build_ct_patient(tmp_path, 1, n=3)
  real_pixels = dicom_series._pixels  # pylint: disable=protected-access

  def with_nan(ds, path, meta):
    out = real_pixels(ds, path, meta)
    out[0, :5] = np.nan
    return out

  monkeypatch.setattr(dicom_series, "_pixels", with_nan)
  volume = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  assert np.isfinite(volume.image).all()
  assert [p for p in volume.problems if "15 non-finite voxels" in p and str(pdir) in p]
  volume, _ = dicom_series.read_image_series(pdir / "DICOM_anon")
  assert np.isfinite(volume.image).all()
  assert [p for p in volume.problems if "15 non-finite voxels" in p]
