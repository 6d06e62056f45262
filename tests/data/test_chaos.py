"""Tests for liverjax/data/chaos.py: the CHAOS layout, series read with their masks, splits.

The builders here make the CHAOS-layout folders of test_dicom_series.py,
test_chaos_masks.py and test_verify.py too."""
import pathlib
import shutil

import cv2
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
import pytest

from liverjax.data import chaos

# ----------------------------------------------------------------------------- builders
# Small CHAOS-layout folders made from pydicom's bundled files.


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


def test_find_root_accepts_the_sample_folders(ct_sample_root):
  expected = (ct_sample_root / "Train_Sets").resolve()
  assert chaos.find_root(ct_sample_root) == expected
  assert chaos.find_root(ct_sample_root / "Train_Sets") == expected


# ----------------------------------------------------------------------------- layout, series


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
