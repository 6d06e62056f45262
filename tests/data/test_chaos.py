"""Tests for liverjax/data/chaos.py: real CHAOS CT sample, pydicom's files, built layouts."""
import logging
import pathlib
import shutil

import cv2
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
import pytest

from liverjax.data import chaos

# ----------------------------------------------------------------------------- builders
# Small CHAOS-layout folders made from pydicom's bundled files (also used by test_verify.py).


def write_slice(path, src="CT_small.dcm", *, position=None, instance=None,
                slice_location=None, fill=None, drop=()):
  """Copies a pydicom test file to `path` with new position / number / pixels.

  fill: a constant raw pixel value (identifies the slice after reading).
  drop: DICOM keywords to delete (e.g. "ImagePositionPatient").
  """
  ds = pydicom.dcmread(get_testdata_file(src))
  if position is not None:
    ds.ImagePositionPatient = [float(v) for v in position]
  if instance is not None:
    ds.InstanceNumber = int(instance)
  if slice_location is not None:
    ds.SliceLocation = float(slice_location)
  if fill is not None:
    arr = np.full((ds.Rows, ds.Columns), fill, dtype=ds.pixel_array.dtype)
    ds.PixelData = arr.tobytes()
  for kw in drop:
    if kw in ds:
      delattr(ds, kw)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  ds.save_as(str(path), enforce_file_format=True)
  return path


def write_mask(path, mask, bilevel=False):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  params = [cv2.IMWRITE_PNG_BILEVEL, 1] if bilevel else []
  assert cv2.imwrite(str(path), np.asarray(mask, np.uint8), params)
  return path


def ct_mask(k, size=128):
  """A CT mask whose liver rows identify slice k: rows 10k..10k+5 are 255."""
  m = np.zeros((size, size), np.uint8)
  m[10 * k:10 * k + 6, 20:100] = 255
  return m


def build_ct_patient(root, pid, n=4, z0=100.0, dz=2.5, file_order=None, bilevel=True):
  """CT/<pid>/ with n slices; slice index k (0 = largest z) has raw fill 100*(k+1).

  file_order: file_order[k] is the file number of slice k (default: scrambled);
  InstanceNumber is deliberately scrambled too, so only the position orders.
  """
  file_order = file_order or [(k + 1) % n for k in range(n)]
  pdir = pathlib.Path(root) / "CT" / str(pid)
  for k in range(n):
    write_slice(pdir / "DICOM_anon" / f"i{file_order[k]:04d},0000b.dcm",
                position=(-50.0, -50.0, z0 - dz * k), instance=(k + 2) % n + 1,
                fill=100 * (k + 1))
    write_mask(pdir / "Ground" / f"liver_GT_{k:03d}.png", ct_mask(k), bilevel=bilevel)
  return pdir


def mr_mask(k, size=64):
  """An MR mask: liver (63) rows 4k..4k+3, a kidney (126) block, spleen (252) block."""
  m = np.zeros((size, size), np.uint8)
  m[4 * k:4 * k + 4, 10:30] = 63
  m[50:55, 40:45] = 126
  m[56:60, 40:45] = 252
  return m


def build_mr_patient(root, pid, n=3, z0=30.0, dz=6.0):
  """MR/<pid>/ with T2SPIR and T1DUAL (InPhase even numbers, OutPhase one below).

  Slice k (0 = largest z) of each sequence: T2 file IMG-0002-{k*5+1}, InPhase
  IMG-0004-{2*(n-k)} (numbers run opposite to z), OutPhase one number below.
  Raw fills: T2 1000+k, InPhase 2000+k, OutPhase 3000+k.
  """
  pdir = pathlib.Path(root) / "MR" / str(pid)
  for k in range(n):
    pos = (-80.0, -90.0, z0 - dz * k)
    t2 = f"IMG-0002-{k * 5 + 1:05d}"
    write_slice(pdir / "T2SPIR" / "DICOM_anon" / f"{t2}.dcm", "MR_small.dcm",
                position=pos, instance=k + 1, fill=1000 + k)
    write_mask(pdir / "T2SPIR" / "Ground" / f"{t2}.png", mr_mask(k))
    num_in = 2 * (n - k)
    write_slice(pdir / "T1DUAL" / "DICOM_anon" / "InPhase" / f"IMG-0004-{num_in:05d}.dcm",
                "MR_small.dcm", position=pos, instance=num_in, fill=2000 + k)
    write_slice(pdir / "T1DUAL" / "DICOM_anon" / "OutPhase" / f"IMG-0004-{num_in - 1:05d}.dcm",
                "MR_small.dcm", position=pos, instance=num_in - 1, fill=3000 + k)
    write_mask(pdir / "T1DUAL" / "Ground" / f"IMG-0004-{num_in:05d}.png", mr_mask(k))
  return pdir


def build_dataset(root, n_ct=2, n_mr=1):
  root = pathlib.Path(root) / "CHAOS_Train_Sets" / "Train_Sets"
  for p in range(n_ct):
    build_ct_patient(root, p + 1)
  for p in range(n_mr):
    build_mr_patient(root, p + 1)
  return root


def _ref(root, modality, pid, sequence):
  return next(r for r in chaos.discover(root) if r.modality == modality
              and r.patient_id == str(pid) and r.sequence == sequence)


# ----------------------------------------------------------------------------- real CHAOS CT


def test_real_ct_sample_loads_every_slice_with_its_mask(ct_sample_root):
  vols, problems = chaos.load_volumes(ct_sample_root)
  assert problems == []
  assert len(vols) == 1
  v = vols[0]
  assert (v.modality, v.sequence, v.patient_id) == ("CT", "ct", "0")
  assert v.image.shape == (78, 512, 512) and v.image.dtype == np.float32
  assert v.mask.shape == (78, 512, 512) and v.mask.dtype == np.uint8
  assert set(np.unique(v.mask)) == {0, 255}  # 1-bit PNGs expanded to 0/255
  assert int(v.mask.reshape(78, -1).any(axis=1).sum()) == 71
  np.testing.assert_allclose(v.spacing, (2.0, 0.7265625, 0.7265625), rtol=1e-6)
  assert v.window == (50.0, 400.0)
  assert v.image.min() == -1000.0  # RescaleIntercept -1000 applied: air
  # z decreases as the file index goes up, so position order == file order here,
  # and liver_GT_NNN pairs with iNNNN.
  assert [pathlib.Path(f).name for f in v.image_files] == [
      f"i{k:04d},0000b.dcm" for k in range(78)]
  assert [pathlib.Path(f).name for f in v.mask_files] == [
      f"liver_GT_{k:03d}.png" for k in range(78)]


def test_real_ct_sample_masks_fall_on_the_liver(ct_sample_root):
  v = chaos.read_series(chaos.discover(ct_sample_root)[0])
  liver = v.mask > 127

  def stats(m):
    x = v.image[m]
    return float(x.mean()), float(x.std())

  mean, std = stats(liver)
  # Contrast-enhanced CT (ContrastBolusAgent = CONTRAST): liver ~141 HU, homogeneous.
  assert 110.0 < mean < 170.0, mean
  assert std < 50.0, std
  # Any other pairing or flip puts the masks on fat / air / bone.
  wrong = {
      "reversed z": liver[::-1],
      "shift +2": np.roll(liver, 2, axis=0),
      "shift -2": np.roll(liver, -2, axis=0),
      "flip up-down": liver[:, ::-1],
      "flip left-right": liver[:, :, ::-1],
  }
  for name, m in wrong.items():
    w_mean, w_std = stats(m)
    assert w_std > 2 * std, (name, w_std, std)
  assert not 110.0 < stats(liver[::-1])[0] < 170.0


def test_real_ct_sample_read_single_files(ct_sample_root):
  ct = ct_sample_root / "Train_Sets" / "CT" / "0"
  mask = chaos.read_mask_png(ct / "Ground" / "liver_GT_040.png")
  assert mask.dtype == np.uint8 and mask.shape == (512, 512)
  assert set(np.unique(mask)) == {0, 255}
  pixels, meta = chaos.read_dicom_slice(ct / "DICOM_anon" / "i0000,0000b.dcm")
  raw = pydicom.dcmread(ct / "DICOM_anon" / "i0000,0000b.dcm").pixel_array
  np.testing.assert_array_equal(pixels, raw.astype(np.float32) - 1000.0)
  assert meta["z"] == pytest.approx(1690.5)
  assert meta["instance_number"] == 1
  assert meta["pixel_spacing"] == pytest.approx((0.7265625, 0.7265625))


def test_find_root_accepts_the_sample_folders(ct_sample_root):
  expected = (ct_sample_root / "Train_Sets").resolve()
  assert chaos.find_root(ct_sample_root) == expected
  assert chaos.find_root(ct_sample_root / "Train_Sets") == expected


# ----------------------------------------------------------------------------- pydicom's files


def test_read_ct_small_applies_rescale():
  path = get_testdata_file("CT_small.dcm")
  pixels, meta = chaos.read_dicom_slice(path)
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
  ref, ref_meta = chaos.read_dicom_slice(get_testdata_file("MR_small.dcm"))
  pixels, meta = chaos.read_dicom_slice(get_testdata_file(name))
  assert pixels.dtype == np.float32 and pixels.shape == (64, 64)
  np.testing.assert_array_equal(pixels, ref)
  assert meta["echo_time"] == ref_meta["echo_time"] == pytest.approx(240.0)
  assert meta["window"] == ref_meta["window"]
  assert ref.max() > 0


def test_truncated_dicom_raises_naming_the_file():
  path = get_testdata_file("MR_truncated.dcm")
  with pytest.raises(chaos.ChaosError, match="MR_truncated.dcm.*pixel data"):
    chaos.read_dicom_slice(path)


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
    chaos.read_dicom_slice(path)


def test_non_image_dicom_files_raise_naming_the_file(tmp_path):
  with pytest.raises(chaos.ChaosError, match=r"SC_rgb_jpeg_dcmd\.dcm.*single-frame grayscale"):
    chaos.read_dicom_slice(get_testdata_file("SC_rgb_jpeg_dcmd.dcm"))  # RGB
  with pytest.raises(chaos.ChaosError, match=r"rtplan\.dcm.*pixel data"):
    chaos.read_dicom_slice(get_testdata_file("rtplan.dcm"))  # no image at all
  text = tmp_path / "notes.dcm"
  text.write_text("this is not a DICOM file\n" * 20)
  with pytest.raises(chaos.ChaosError, match=r"notes\.dcm: not a DICOM file"):
    chaos.read_dicom_slice(text)
  empty = tmp_path / "empty.dcm"
  empty.write_bytes(b"")
  with pytest.raises(chaos.ChaosError, match=r"empty\.dcm"):
    chaos.read_dicom_slice(empty)
  with pytest.raises(chaos.ChaosError, match=r"missing\.dcm"):
    chaos.read_dicom_slice(tmp_path / "missing.dcm")


def test_read_mask_png_bit_depths_and_errors(tmp_path):
  m = np.zeros((20, 30), np.uint8)
  m[5:10, 3:9] = 255
  one_bit = write_mask(tmp_path / "bilevel.png", m, bilevel=True)
  assert open(one_bit, "rb").read()[24] == 1  # really a 1-bit PNG
  np.testing.assert_array_equal(chaos.read_mask_png(one_bit), m)
  gray = mr_mask(1)
  np.testing.assert_array_equal(chaos.read_mask_png(write_mask(tmp_path / "g.png", gray)), gray)
  rgb = np.repeat(gray[..., None], 3, axis=2)
  np.testing.assert_array_equal(chaos.read_mask_png(write_mask(tmp_path / "rgb.png", rgb)), gray)
  (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(chaos.ChaosError, match=r"bad\.png: not a readable PNG"):
    chaos.read_mask_png(tmp_path / "bad.png")
  with pytest.raises(chaos.ChaosError, match=r"nothere\.png"):
    chaos.read_mask_png(tmp_path / "nothere.png")
  colour = rgb.copy()
  colour[0, 0] = (1, 2, 3)
  with pytest.raises(chaos.ChaosError, match=r"colour\.png: colour mask"):
    chaos.read_mask_png(write_mask(tmp_path / "colour.png", colour))


# ----------------------------------------------------------------------------- layout, order, pairing


def test_find_root_and_discover(tmp_path):
  root = build_dataset(tmp_path, n_ct=2, n_mr=1)
  (root / "CT" / "10").mkdir()  # natural order: 1, 2, 10
  for p in (tmp_path, tmp_path / "CHAOS_Train_Sets", root):
    assert chaos.find_root(p) == root.resolve()
  refs = chaos.discover(tmp_path)
  assert [(r.modality, r.patient_id, r.sequence) for r in refs] == [
      ("CT", "1", "ct"), ("CT", "2", "ct"), ("CT", "10", "ct"),
      ("MR", "1", "t1_in"), ("MR", "1", "t1_out"), ("MR", "1", "t2")]
  t1_out = refs[4]
  assert t1_out.image_dir == root.resolve() / "MR/1/T1DUAL/DICOM_anon/OutPhase"
  assert t1_out.mask_dir == root.resolve() / "MR/1/T1DUAL/Ground"
  assert [r.sequence for r in chaos.discover(tmp_path, ("t2",))] == ["t2"]
  with pytest.raises(chaos.ChaosError, match="unknown sequence"):
    chaos.discover(tmp_path, ("flair",))
  (tmp_path / "nothing").mkdir()
  with pytest.raises(chaos.ChaosError, match=r"nothing: no CT/ or MR/"):
    chaos.find_root(tmp_path / "nothing")
  with pytest.raises(chaos.ChaosError, match=r"absent: no such folder"):
    chaos.find_root(tmp_path / "absent")


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


def test_mr_t2_and_t1_pairing(tmp_path):
  n = 3
  build_mr_patient(tmp_path, 7, n=n, dz=6.0)
  vols, problems = chaos.load_volumes(tmp_path)
  assert problems == []
  by_seq = {v.sequence: v for v in vols}
  assert set(by_seq) == {"t1_in", "t1_out", "t2"}
  for seq, base in (("t2", 1000), ("t1_in", 2000), ("t1_out", 3000)):
    v = by_seq[seq]
    assert v.modality == "MR" and v.patient_id == "7"
    assert v.image.shape == (n, 64, 64) and v.mask.shape == (n, 64, 64)
    np.testing.assert_array_equal(v.image[:, 0, 0], base + np.arange(n))  # position order
    for k in range(n):
      np.testing.assert_array_equal(v.mask[k], mr_mask(k))  # raw gray values kept
    assert v.spacing == pytest.approx((6.0, 0.3125, 0.3125))
  # T2 / InPhase: same stem. OutPhase: the InPhase partner (image number + 1).
  for v in by_seq.values():
    for img, msk in zip(v.image_files, v.mask_files):
      stem = pathlib.Path(img).stem
      if v.sequence == "t1_out":
        prefix, num = stem.rsplit("-", 1)
        stem = f"{prefix}-{int(num) + 1:05d}"
      assert pathlib.Path(msk).stem == stem
  assert by_seq["t1_out"].mask_files == by_seq["t1_in"].mask_files


def test_outphase_partner_by_position_beats_image_number(tmp_path):
  build_mr_patient(tmp_path, 1, n=3, z0=30.0, dz=6.0)
  out_dir = tmp_path / "MR/1/T1DUAL/DICOM_anon/OutPhase"
  # IMG-0004-00003's number partner is InPhase 00004 (z=24); put it at z=18 (InPhase 00002).
  write_slice(out_dir / "IMG-0004-00003.dcm", "MR_small.dcm", position=(-80.0, -90.0, 18.0),
              fill=3999)
  write_slice(out_dir / "IMG-0004-00001.dcm", "MR_small.dcm", position=(-80.0, -90.0, 24.0),
              fill=3998)
  v = chaos.read_series(_ref(tmp_path, "MR", 1, "t1_out"))
  pairs = {pathlib.Path(i).stem: pathlib.Path(m).stem
           for i, m in zip(v.image_files, v.mask_files)}
  assert pairs == {"IMG-0004-00005": "IMG-0004-00006", "IMG-0004-00001": "IMG-0004-00004",
                   "IMG-0004-00003": "IMG-0004-00002"}
  assert any("IMG-0004-00003.dcm" in p and "using the position" in p for p in v.problems)


def test_outphase_without_positions_uses_image_number_plus_one(tmp_path):
  build_mr_patient(tmp_path, 1, n=3)
  out_dir = tmp_path / "MR/1/T1DUAL/DICOM_anon/OutPhase"
  for k, f in enumerate(sorted(out_dir.iterdir())):
    write_slice(f, "MR_small.dcm", instance=k + 1, fill=5 + k,
                drop=("ImagePositionPatient", "SliceLocation"))
  v = chaos.read_series(_ref(tmp_path, "MR", 1, "t1_out"))
  assert [(pathlib.Path(i).stem, pathlib.Path(m).stem) for i, m in
          zip(v.image_files, v.mask_files)] == [
              ("IMG-0004-00001", "IMG-0004-00002"), ("IMG-0004-00003", "IMG-0004-00004"),
              ("IMG-0004-00005", "IMG-0004-00006")]


def test_missing_and_extra_masks_are_reported(tmp_path):
  build_mr_patient(tmp_path, 1, n=3)
  build_ct_patient(tmp_path, 1, n=4)
  (tmp_path / "MR/1/T2SPIR/Ground/IMG-0002-00006.png").unlink()  # slice k=1
  write_mask(tmp_path / "MR/1/T2SPIR/Ground/IMG-0002-00099.png", mr_mask(0))
  (tmp_path / "CT/1/Ground/liver_GT_002.png").unlink()
  t2 = chaos.read_series(_ref(tmp_path, "MR", 1, "t2"))
  assert t2.image.shape[0] == 2
  np.testing.assert_array_equal(t2.image[:, 0, 0], [1000, 1002])
  assert any("IMG-0002-00006.dcm: missing mask" in p for p in t2.problems)
  assert any("IMG-0002-00099.png: mask with no image slice" in p for p in t2.problems)
  ct = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  assert ct.image.shape[0] == 3
  np.testing.assert_array_equal(ct.image[:, 0, 0], np.array([100, 200, 400]) - 1024.0)
  for i, k in enumerate((0, 1, 3)):  # the remaining slices keep their own masks
    np.testing.assert_array_equal(ct.mask[i], ct_mask(k))
  assert any("missing mask" in p and "liver_GT_002.png" in p for p in ct.problems)


def test_ct_mask_count_mismatch_skips_the_series_only(tmp_path, caplog):
  build_ct_patient(tmp_path, 1, n=4)
  build_ct_patient(tmp_path, 2, n=3)
  write_mask(tmp_path / "CT/1/Ground/liver_GT_007.png", ct_mask(0))
  with pytest.raises(chaos.ChaosError, match=r"CT/1/Ground: 5 liver_GT_NNN.png masks.*4 DICOM"):
    chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  with caplog.at_level(logging.WARNING):
    vols, problems = chaos.load_volumes(tmp_path)
  assert [v.patient_id for v in vols] == ["2"] and vols[0].image.shape[0] == 3
  assert len(problems) == 1 and "CT/1/Ground" in problems[0]
  assert "CT/1/Ground" in caplog.text  # logged too


def test_mis_sized_mask_drops_the_slice(tmp_path):
  build_ct_patient(tmp_path, 1, n=3)
  write_mask(tmp_path / "CT/1/Ground/liver_GT_001.png", np.zeros((64, 128), np.uint8))
  v = chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  assert v.image.shape == (2, 128, 128)
  np.testing.assert_array_equal(v.mask[1], ct_mask(2))
  assert any("liver_GT_001.png: mask size (64, 128) differs from image size (128, 128)" in p
             for p in v.problems)


def test_empty_and_missing_folders(tmp_path):
  build_ct_patient(tmp_path, 1, n=2)
  (tmp_path / "CT/2/DICOM_anon").mkdir(parents=True)
  (tmp_path / "CT/2/Ground").mkdir(parents=True)
  (tmp_path / "CT/3").mkdir(parents=True)
  with pytest.raises(chaos.ChaosError, match=r"CT/2/DICOM_anon: empty folder"):
    chaos.read_series(_ref(tmp_path, "CT", 2, "ct"))
  with pytest.raises(chaos.ChaosError, match=r"CT/3/DICOM_anon: image folder missing"):
    chaos.read_series(_ref(tmp_path, "CT", 3, "ct"))
  vols, problems = chaos.load_volumes(tmp_path)
  assert [v.patient_id for v in vols] == ["1"]
  assert len(problems) == 2
  assert "CT/2/DICOM_anon: empty folder" in problems[0]
  assert "CT/3/DICOM_anon: image folder missing" in problems[1]


def test_bad_files_in_a_series_are_skipped_and_the_rest_loads(tmp_path):
  build_ct_patient(tmp_path, 1, n=4)
  build_mr_patient(tmp_path, 1, n=3)
  ct_dir = tmp_path / "CT/1/DICOM_anon"
  (ct_dir / "README.txt").write_text("not a DICOM file\n")
  # Truncate the slice at k=2 (header intact, pixel data short): dropped with its mask.
  trunc = ct_dir / "i0003,0000b.dcm"  # slice k=2 (default file order: k -> (k+1) % n)
  assert pydicom.dcmread(trunc, stop_before_pixels=True).ImagePositionPatient[2] == 95.0
  data = trunc.read_bytes()
  trunc.write_bytes(data[:-2000])
  # An RGB image in the T2 series.
  shutil.copy(get_testdata_file("SC_rgb_small_odd.dcm"),
              tmp_path / "MR/1/T2SPIR/DICOM_anon/IMG-0002-00050.dcm")
  vols, problems = chaos.load_volumes(tmp_path)
  by_seq = {v.sequence: v for v in vols}
  assert set(by_seq) == {"ct", "t1_in", "t1_out", "t2"}
  ct = by_seq["ct"]
  np.testing.assert_array_equal(ct.image[:, 0, 0], np.array([100, 200, 400]) - 1024.0)
  for i, k in enumerate((0, 1, 3)):
    np.testing.assert_array_equal(ct.mask[i], ct_mask(k))
  assert "liver_GT_002.png" not in " ".join(ct.mask_files)
  assert any("README.txt: not a DICOM file" in p for p in problems)
  assert any(trunc.name in p and "pixel data" in p and "liver_GT_002.png" in p
             for p in problems)
  assert by_seq["t2"].image.shape[0] == 3
  assert any("IMG-0002-00050.dcm" in p for p in problems)


def test_series_with_no_usable_slice_raises(tmp_path):
  d = tmp_path / "MR/1/T2SPIR"
  (d / "Ground").mkdir(parents=True)
  (d / "DICOM_anon").mkdir(parents=True)
  (d / "DICOM_anon" / "IMG-0002-00001.dcm").write_text("junk")
  shutil.copy(get_testdata_file("MR_small.dcm"), d / "DICOM_anon" / "IMG-0002-00002.dcm")
  with pytest.raises(chaos.ChaosError, match=r"T2SPIR/DICOM_anon: no usable slice"):
    chaos.read_series(_ref(tmp_path, "MR", 1, "t2"))
  vols, problems = chaos.load_volumes(tmp_path, sequences=("t2",))
  assert vols == [] and "no usable slice" in problems[-1]
  assert len(problems) == 3  # and what was found before: the junk file, the missing mask
  assert "IMG-0002-00001.dcm: not a DICOM file" in problems[0]


# ----------------------------------------------------------------------------- splits


def test_split_patients_properties():
  ids = [str(i) for i in range(1, 21)]
  s = chaos.split_patients(ids, (0.6, 0.2, 0.2), seed=0)
  assert set(s) == {"train", "val", "test"}
  assert [len(s[k]) for k in ("train", "val", "test")] == [12, 4, 4]
  assert sorted(sum(s.values(), []), key=int) == ids  # disjoint and complete
  assert chaos.split_patients(list(reversed(ids)), seed=0) == s  # order-independent
  assert chaos.split_patients(ids, seed=1) != s
  for n in (3, 4, 5):
    small = chaos.split_patients([f"p{i}" for i in range(n)])
    assert all(small[k] for k in small), small
    assert sum(len(v) for v in small.values()) == n
  assert chaos.split_patients(["a", "b"]) == chaos.split_patients(["b", "a"])
  assert sum(len(v) for v in chaos.split_patients(["a", "b"]).values()) == 2
  no_test = chaos.split_patients(ids, (0.8, 0.2, 0.0))
  assert no_test["test"] == [] and len(no_test["train"]) == 16
  with pytest.raises(ValueError):
    chaos.split_patients(ids, (0.5, -0.1, 0.6))


def test_ct_instance_numbers_against_position_are_flagged(tmp_path):
  n = 4
  pdir = pathlib.Path(tmp_path) / "CT" / "7"
  for k in range(n):  # k = 0 is the head end; InstanceNumber runs feet -> head
    write_slice(pdir / "DICOM_anon" / f"i{k:04d},0000b.dcm",
                position=(-50.0, -50.0, 100.0 - 2.5 * k), instance=n - k, fill=100 * (k + 1))
    write_mask(pdir / "Ground" / f"liver_GT_{k:03d}.png", ct_mask(k))
  vol = chaos.read_series(chaos.discover(tmp_path, ("ct",))[0])
  assert vol.image.shape[0] == n  # still loads, paired in position order
  assert any("InstanceNumber decreases" in p for p in vol.problems)
  # The usual order (InstanceNumber following the position order) says nothing.
  for k in range(n):
    write_slice(pdir / "DICOM_anon" / f"i{k:04d},0000b.dcm",
                position=(-50.0, -50.0, 100.0 - 2.5 * k), instance=k + 1, fill=100 * (k + 1))
  vol = chaos.read_series(chaos.discover(tmp_path, ("ct",))[0])
  assert not any("InstanceNumber" in p for p in vol.problems)


# ----------------------------------------------------------------------------- damaged series (issue #11)


def _copy_sample(ct_sample_root, dest, n=12, names=None):
  """CT/0 of `dest` with the first n slices (and masks) of the real CHAOS sample.

  names: optional new file names per slice index (e.g. non-index names).
  Returns (patient dir, {new file name: original slice index}).
  """
  src = ct_sample_root / "Train_Sets" / "CT" / "0"
  pdir = pathlib.Path(dest) / "CT" / "0"
  (pdir / "DICOM_anon").mkdir(parents=True)
  (pdir / "Ground").mkdir(parents=True)
  index = {}
  for k in range(n):
    name = names[k] if names else f"i{k:04d},0000b.dcm"
    shutil.copy(src / "DICOM_anon" / f"i{k:04d},0000b.dcm", pdir / "DICOM_anon" / name)
    shutil.copy(src / "Ground" / f"liver_GT_{k:03d}.png", pdir / "Ground")
    index[name] = k
  return pdir, index


def _assert_own_masks(vol, index):
  """Every kept slice is paired with the mask of its own original index."""
  for img, msk in zip(vol.image_files, vol.mask_files):
    k = index[pathlib.Path(img).name]
    assert pathlib.Path(msk).name == f"liver_GT_{k:03d}.png", (img, msk)


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


@pytest.mark.parametrize("broken", [6, 0])  # inside the volume; the head end
def test_real_sample_truncated_file_with_non_index_names(ct_sample_root, tmp_path, broken):
  names = [f"slice_{(k * 7) % 12:02d}x.dcm" for k in range(12)]  # names say nothing
  pdir, index = _copy_sample(ct_sample_root, tmp_path, names=names)
  bad = pdir / "DICOM_anon" / names[broken]
  bad.write_bytes(bad.read_bytes()[:200])  # a header, no position, no pixels
  vol = chaos.read_series(chaos.discover(tmp_path)[0])
  assert vol.image.shape[0] == 11
  _assert_own_masks(vol, index)
  assert any(str(bad) in p and "skipped" in p for p in vol.problems)
  how = "slice positions" if broken == 6 else "InstanceNumber"  # an end: only the numbers tell
  assert any(f"paired with their liver_GT masks by" in p and how in p for p in vol.problems)
  assert not any("ordered by file name" in p for p in vol.problems)
  assert str(pdir / "Ground" / f"liver_GT_{broken:03d}.png") in vol.dropped_files


def test_real_sample_zero_byte_slice_and_extra_mask_keep_the_patient(ct_sample_root, tmp_path):
  pdir, index = _copy_sample(ct_sample_root, tmp_path)
  zero = pdir / "DICOM_anon" / "i0004,0000b.dcm"
  zero.write_bytes(b"")
  extra = pdir / "Ground" / "liver_GT_012.png"
  shutil.copy(pdir / "Ground" / "liver_GT_011.png", extra)
  vols, problems = chaos.load_volumes(tmp_path)
  assert len(vols) == 1 and vols[0].image.shape[0] == 11
  _assert_own_masks(vols[0], index)
  assert any(str(zero) in p for p in problems)
  assert any(str(extra) in p and "mask with no image slice" in p for p in problems)


def test_real_sample_masks_in_a_wrong_encoding_are_reported(ct_sample_root, tmp_path):
  pdir, _ = _copy_sample(ct_sample_root, tmp_path)
  ground = pdir / "Ground"
  m = chaos.read_mask_png(ground / "liver_GT_009.png")
  assert m.max() == 255
  write_mask(ground / "liver_GT_009.png", (m > 0) * 100)  # 8-bit 0/100
  vol = chaos.read_series(chaos.discover(tmp_path)[0])
  assert vol.image.shape[0] == 11  # that slice dropped; the 1-bit PNGs still read
  assert any("liver_GT_009.png: mask values [0, 100] are not the CHAOS CT encoding" in p
             for p in vol.problems)
  for f in ground.iterdir():  # every mask an 8-bit 0/1 PNG
    write_mask(f, chaos.read_mask_png(f) > 0)
  vols, problems = chaos.load_volumes(tmp_path)  # liver slices dropped, the rest empty
  assert vols == []
  assert any("liver_GT_007.png: mask values [0, 1] are not the CHAOS CT encoding" in p
             for p in problems)
  assert "masks of all 7 usable slices" in problems[-1] and "series skipped" in problems[-1]
  for f in ground.iterdir():  # every mask empty
    write_mask(f, np.zeros((512, 512)))
  with pytest.raises(chaos.ChaosError, match=r"Ground: the masks of all 12 usable slices.*empty"):
    chaos.read_series(chaos.discover(tmp_path)[0])


def test_lost_end_slice_without_evidence_refuses_the_patient(tmp_path):
  # Names and InstanceNumbers scrambled against the positions: no evidence but the positions.
  build_ct_patient(tmp_path, 1, n=5, file_order=[2, 0, 4, 1, 3])
  ddir = tmp_path / "CT/1/DICOM_anon"
  end = next(f for f in ddir.iterdir()
             if pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2] == 90.0)
  end.write_bytes(b"")  # the feet-end slice (k = 4) is lost
  with pytest.raises(chaos.ChaosError, match=r"cannot prove which mask belongs.*patient refused"):
    chaos.read_series(_ref(tmp_path, "CT", 1, "ct"))
  # Lost inside the volume instead: the positions' gap says where; the others pair.
  build_ct_patient(tmp_path / "b", 1, n=5)
  ddir = tmp_path / "b/CT/1/DICOM_anon"
  mid = next(f for f in ddir.iterdir()
             if pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2] == 95.0)
  write_slice(mid, drop=("ImagePositionPatient", "SliceLocation"), fill=1)
  v = chaos.read_series(_ref(tmp_path / "b", "CT", 1, "ct"))
  np.testing.assert_array_equal(v.image[:, 0, 0], np.array([100, 200, 400, 500]) - 1024.0)
  for i, k in enumerate((0, 1, 3, 4)):
    np.testing.assert_array_equal(v.mask[i], ct_mask(k))
  assert any(str(mid) in p and "no position" in p for p in v.problems)


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


def test_mr_mask_values_outside_the_chaos_bands_drop_the_slice(tmp_path):
  build_mr_patient(tmp_path, 1, n=3)
  bad = tmp_path / "MR/1/T2SPIR/Ground/IMG-0002-00006.png"
  write_mask(bad, (mr_mask(1) > 0) * 30)
  v = chaos.read_series(_ref(tmp_path, "MR", 1, "t2"))
  assert v.image.shape[0] == 2
  assert any(str(bad) in p and "outside the CHAOS MR encoding" in p for p in v.problems)


# ----------------------------------------------------------------------------- no masks


def test_read_image_series_orders_by_position_without_masks(tmp_path):
  file_order = [3, 0, 4, 1, 2]
  pdir = build_ct_patient(tmp_path, 1, n=5, file_order=file_order)
  (pdir / "DICOM_anon" / "README.txt").write_text("not a slice")
  v, metas = chaos.read_image_series(pdir / "DICOM_anon")
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
    chaos.read_image_series(tmp_path)
  assert str(tmp_path) in str(e.value)
  (tmp_path / "sub").mkdir()
  with pytest.raises(chaos.ChaosError, match="empty folder"):
    chaos.read_image_series(tmp_path / "sub")
