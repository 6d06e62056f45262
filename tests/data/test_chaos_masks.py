"""Tests for liverjax/data/chaos_masks.py: Ground PNGs, their encodings, and the pairing of
each slice with its mask (read through `chaos.read_series` / `chaos.load_volumes`)."""
import logging
import pathlib
import shutil

import numpy as np
import pydicom
import pytest

from liverjax.data import chaos
from liverjax.data import chaos_masks
from tests.data.test_chaos import _assert_own_masks
from tests.data.test_chaos import _copy_sample
from tests.data.test_chaos import _ref
from tests.data.test_chaos import build_ct_patient
from tests.data.test_chaos import build_mr_patient
from tests.data.test_chaos import ct_mask
from tests.data.test_chaos import mr_mask
from tests.data.test_chaos import write_mask
from tests.data.test_chaos import write_slice


# ----------------------------------------------------------------------------- real CHAOS CT


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


def test_real_ct_sample_read_one_mask(ct_sample_root):
  ct = ct_sample_root / "Train_Sets" / "CT" / "0"
  mask = chaos_masks.read_mask_png(ct / "Ground" / "liver_GT_040.png")
  assert mask.dtype == np.uint8 and mask.shape == (512, 512)
  assert set(np.unique(mask)) == {0, 255}


# ----------------------------------------------------------------------------- mask files


def test_read_mask_png_bit_depths_and_errors(tmp_path):
  m = np.zeros((20, 30), np.uint8)
  m[5:10, 3:9] = 255
  one_bit = write_mask(tmp_path / "bilevel.png", m, bilevel=True)
  assert open(one_bit, "rb").read()[24] == 1  # really a 1-bit PNG
  np.testing.assert_array_equal(chaos_masks.read_mask_png(one_bit), m)
  gray = mr_mask(1)
  np.testing.assert_array_equal(chaos_masks.read_mask_png(write_mask(tmp_path / "g.png", gray)), gray)
  rgb = np.repeat(gray[..., None], 3, axis=2)
  np.testing.assert_array_equal(chaos_masks.read_mask_png(write_mask(tmp_path / "rgb.png", rgb)), gray)
  (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(chaos.ChaosError, match=r"bad\.png: not a readable PNG"):
    chaos_masks.read_mask_png(tmp_path / "bad.png")
  with pytest.raises(chaos.ChaosError, match=r"nothere\.png"):
    chaos_masks.read_mask_png(tmp_path / "nothere.png")
  colour = rgb.copy()
  colour[0, 0] = (1, 2, 3)
  with pytest.raises(chaos.ChaosError, match=r"colour\.png: colour mask"):
    chaos_masks.read_mask_png(write_mask(tmp_path / "colour.png", colour))


# ----------------------------------------------------------------------------- pairing


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
  m = chaos_masks.read_mask_png(ground / "liver_GT_009.png")
  assert m.max() == 255
  write_mask(ground / "liver_GT_009.png", (m > 0) * 100)  # 8-bit 0/100
  vol = chaos.read_series(chaos.discover(tmp_path)[0])
  assert vol.image.shape[0] == 11  # that slice dropped; the 1-bit PNGs still read
  assert any("liver_GT_009.png: mask values [0, 100] are not the CHAOS CT encoding" in p
             for p in vol.problems)
  for f in ground.iterdir():  # every mask an 8-bit 0/1 PNG
    write_mask(f, chaos_masks.read_mask_png(f) > 0)
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


def test_mr_mask_values_outside_the_chaos_bands_drop_the_slice(tmp_path):
  build_mr_patient(tmp_path, 1, n=3)
  bad = tmp_path / "MR/1/T2SPIR/Ground/IMG-0002-00006.png"
  write_mask(bad, (mr_mask(1) > 0) * 30)
  v = chaos.read_series(_ref(tmp_path, "MR", 1, "t2"))
  assert v.image.shape[0] == 2
  assert any(str(bad) in p and "outside the CHAOS MR encoding" in p for p in v.problems)
