"""Tests for liverjax/data/synthetic.py: layout, DICOM headers, masks, the contrasts as
written, the cache and the command line."""
import os
import pathlib
import re
import subprocess
import sys

import cv2
import numpy as np
import pydicom
from pydicom import uid as dcm_uid
import pytest
from scipy import ndimage

from liverjax.data import synthetic

SIZE, SLICES, N_CT, N_MR = 64, 8, 2, 2
MR_VALUES = {0, 63, 126, 189, 252}


def _generate(base: pathlib.Path, seed: int = 0) -> pathlib.Path:
  return synthetic.generate_chaos(base, n_ct=N_CT, n_mr=N_MR, size=SIZE,
                                  slices=SLICES, seed=seed)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return _generate(tmp_path_factory.mktemp("syn0"))


def _files(folder: pathlib.Path, ext: str) -> list[str]:
  return sorted(p.name for p in folder.iterdir() if p.name.endswith(ext))


def _hu(path: pathlib.Path) -> np.ndarray:
  ds = pydicom.dcmread(path)
  return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(
      ds.RescaleIntercept)


def _mask(path: pathlib.Path) -> np.ndarray:
  m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
  assert m is not None and m.dtype == np.uint8 and m.ndim == 2, path
  return m


def _ct_volume(root, pid):
  d = root / "CT" / pid
  img = np.stack([_hu(d / "DICOM_anon" / f"i{i:04d},0000b.dcm")
                  for i in range(SLICES)])
  mask = np.stack([_mask(d / "Ground" / f"liver_GT_{i:03d}.png")
                   for i in range(SLICES)])
  return img, mask


def _mr_volumes(root, pid):
  """(t1_in, t1_out, t1 mask, t2, t2 mask), in file order."""
  d = root / "MR" / pid
  ins = sorted((d / "T1DUAL/DICOM_anon/InPhase").glob("*.dcm"))
  outs = sorted((d / "T1DUAL/DICOM_anon/OutPhase").glob("*.dcm"))
  t2s = sorted((d / "T2SPIR/DICOM_anon").glob("*.dcm"))
  read = lambda fs: np.stack([_hu(f) for f in fs])
  m1 = np.stack([_mask(d / "T1DUAL/Ground" / (f.stem + ".png")) for f in ins])
  m2 = np.stack([_mask(d / "T2SPIR/Ground" / (f.stem + ".png")) for f in t2s])
  return read(ins), read(outs), m1, read(t2s), m2


def test_layout_is_exactly_chaos(root):
  assert root.name == "Train_Sets"
  ct_ids = sorted(p.name for p in (root / "CT").iterdir())
  mr_ids = sorted(p.name for p in (root / "MR").iterdir())
  assert ct_ids == sorted(synthetic.patient_ids("CT", N_CT))
  assert mr_ids == sorted(synthetic.patient_ids("MR", N_MR))
  assert all(i.isdigit() for i in ct_ids + mr_ids)
  for pid in ct_ids:
    d = root / "CT" / pid
    assert sorted(p.name for p in d.iterdir()) == ["DICOM_anon", "Ground"]
    assert _files(d / "DICOM_anon", "") == [
        f"i{i:04d},0000b.dcm" for i in range(SLICES)]
    assert _files(d / "Ground", "") == [
        f"liver_GT_{i:03d}.png" for i in range(SLICES)]
  for pid in mr_ids:
    d = root / "MR" / pid
    assert sorted(p.name for p in d.iterdir()) == ["T1DUAL", "T2SPIR"]
    ins = _files(d / "T1DUAL/DICOM_anon/InPhase", "")
    outs = _files(d / "T1DUAL/DICOM_anon/OutPhase", "")
    assert len(ins) == len(outs) == SLICES
    pat = re.compile(r"^IMG-(\d{4})-(\d{5})\.dcm$")
    in_nums = [pat.match(f) for f in ins]
    out_nums = [pat.match(f) for f in outs]
    assert all(in_nums) and all(out_nums)
    assert all(int(m.group(2)) % 2 == 0 for m in in_nums)
    assert sorted(int(m.group(2)) - 1 for m in in_nums) == sorted(
        int(m.group(2)) for m in out_nums)
    assert {m.group(1) for m in in_nums} == {m.group(1) for m in out_nums}
    assert _files(d / "T1DUAL/Ground", "") == [f[:-4] + ".png" for f in ins]
    t2 = _files(d / "T2SPIR/DICOM_anon", "")
    assert len(t2) == SLICES and all(pat.match(f) for f in t2)
    assert _files(d / "T2SPIR/Ground", "") == [f[:-4] + ".png" for f in t2]
  assert synthetic.marker_path(root.parent).is_file()
  assert not list(root.parent.glob(".Train_Sets.partial*"))


def _check_common_header(ds, pid, modality):
  assert ds.file_meta.TransferSyntaxUID == dcm_uid.ExplicitVRLittleEndian
  assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
  assert ds.Modality == modality and ds.PatientID == pid
  assert (ds.Rows, ds.Columns) == (SIZE, SIZE)
  assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
  assert ds.SamplesPerPixel == 1 and ds.PhotometricInterpretation == "MONOCHROME2"
  assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
  assert ds.pixel_array.shape == (SIZE, SIZE)
  assert ds.pixel_array.dtype == np.uint16
  assert float(ds.WindowWidth) > 0 and ds.SeriesDescription


def test_ct_headers(root):
  for pid in synthetic.patient_ids("CT", N_CT):
    files = sorted((root / "CT" / pid / "DICOM_anon").glob("*.dcm"))
    dss = [pydicom.dcmread(f) for f in files]
    zs = []
    for i, ds in enumerate(dss):
      _check_common_header(ds, pid, "CT")
      assert ds.SOPClassUID == dcm_uid.CTImageStorage
      assert float(ds.RescaleIntercept) == -1000 and float(ds.RescaleSlope) == 1
      assert int(ds.InstanceNumber) == i + 1
      sx, sy = (float(v) for v in ds.PixelSpacing)
      assert sx == sy and 0.68 * 512 / SIZE <= sx <= 0.9 * 512 / SIZE
      assert 2.0 <= float(ds.SliceThickness) <= 3.0
      assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (50, 400)
      zs.append(float(ds.ImagePositionPatient[2]))
    # z decreases as the file index goes up, by SliceThickness; SliceLocation
    # grows (as in the real sample).
    np.testing.assert_allclose(np.diff(zs), -float(dss[0].SliceThickness),
                               atol=1e-3)
    locs = [float(ds.SliceLocation) for ds in dss]
    assert np.all(np.diff(locs) > 0)
    assert len({ds.SOPInstanceUID for ds in dss}) == SLICES
    assert len({ds.SeriesInstanceUID for ds in dss}) == 1


def test_mr_headers(root):
  for pid in synthetic.patient_ids("MR", N_MR):
    d = root / "MR" / pid
    ins = sorted((d / "T1DUAL/DICOM_anon/InPhase").glob("*.dcm"))
    t2s = sorted((d / "T2SPIR/DICOM_anon").glob("*.dcm"))
    uids = set()
    for f in ins:
      a = pydicom.dcmread(f)
      num = int(f.stem.split("-")[2])
      series = int(f.stem.split("-")[1])
      b = pydicom.dcmread(d / "T1DUAL/DICOM_anon/OutPhase" /
                         f"IMG-{series:04d}-{num - 1:05d}.dcm")
      for ds in (a, b):
        _check_common_header(ds, pid, "MR")
        assert ds.SOPClassUID == dcm_uid.MRImageStorage
        assert int(ds.SeriesNumber) == series
        sx, sy = (float(v) for v in ds.PixelSpacing)
        assert sx == sy and 1.4 * 256 / SIZE <= sx <= 1.75 * 256 / SIZE
        assert 5.5 <= float(ds.SliceThickness) <= 9.0
        assert float(ds.RepetitionTime) > 0
        uids.add(ds.SOPInstanceUID)
      assert int(a.InstanceNumber) == num and int(b.InstanceNumber) == num - 1
      assert float(a.EchoTime) == pytest.approx(4.6, abs=0.3)
      assert float(b.EchoTime) == pytest.approx(2.3, abs=0.2)
      assert [float(v) for v in a.ImagePositionPatient] == [
          float(v) for v in b.ImagePositionPatient]
    assert len(uids) == 2 * SLICES
    zs = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in ins]
    assert np.all(np.diff(zs) < 0)
    t2z = []
    for i, f in enumerate(t2s):
      ds = pydicom.dcmread(f)
      _check_common_header(ds, pid, "MR")
      assert int(ds.InstanceNumber) == i + 1
      assert float(ds.EchoTime) > 20
      t2z.append(float(ds.ImagePositionPatient[2]))
    np.testing.assert_allclose(np.diff(t2z), -float(ds.SliceThickness),
                               atol=1e-3)


def test_mask_values_are_chaos_sets(root):
  liver_slices = 0
  for pid in synthetic.patient_ids("CT", N_CT):
    _, mask = _ct_volume(root, pid)
    assert set(np.unique(mask)) <= {0, 255}
    liver_slices += int((mask == 255).any(axis=(1, 2)).sum())
  assert liver_slices >= N_CT * SLICES // 2
  seen = set()
  for pid in synthetic.patient_ids("MR", N_MR):
    _, _, m1, _, m2 = _mr_volumes(root, pid)
    for m in (m1, m2):
      assert set(np.unique(m)) <= MR_VALUES
      seen |= set(np.unique(m).tolist())
  assert seen == MR_VALUES  # liver, both kidneys and spleen all appear


def test_ct_intensities_in_hu(root):
  for pid in synthetic.patient_ids("CT", N_CT):
    img, mask = _ct_volume(root, pid)
    assert 40 <= img[mask == 255].mean() <= 70
    assert np.median(img[:, :4, :4]) < -950  # air in the corners
    body = img > -500
    assert np.percentile(img[body], 99.5) > 300  # bone
    fat = (img[body] > -150) & (img[body] < -50)
    assert fat.mean() > 0.05  # fat is a visible fraction of the body


def test_mr_contrasts(root):
  for pid in synthetic.patient_ids("MR", N_MR):
    t1_in, t1_out, m1, t2, m2 = _mr_volumes(root, pid)
    liver, spleen = m1 == 63, m1 == 252
    assert t1_in[liver].mean() > 1.05 * t1_in[spleen].mean()
    assert t2[m2 == 63].mean() < 0.8 * t2[m2 == 252].mean()
    assert t1_in.min() >= 0 and t2.min() >= 0
    # The same anatomy, other contrasts: the sequences are not rescaled copies.
    assert np.corrcoef(t1_in.ravel(), t2.ravel())[0, 1] < 0.8


def test_out_of_phase_dark_rims_at_fat_boundaries(root):
  for pid in synthetic.patient_ids("MR", N_MR):
    t1_in, t1_out, m1, _, _ = _mr_volumes(root, pid)
    liver = m1 == 63
    inner = ndimage.binary_erosion(liver, np.ones((1, 5, 5)))
    ring = ndimage.binary_dilation(liver, np.ones((1, 3, 3))) & ~ndimage.binary_erosion(
        liver, np.ones((1, 3, 3)))
    ratio = t1_out / (t1_in + 1)
    assert ratio[ring].mean() < 0.8 * ratio[inner].mean()


def test_liver_on_the_image_left(root):
  cols = np.arange(SIZE)[None, None, :]
  centroid = lambda m: (cols * m).sum() / m.sum()
  for pid in synthetic.patient_ids("CT", N_CT):
    _, mask = _ct_volume(root, pid)
    assert centroid(mask == 255) < SIZE / 2
  for pid in synthetic.patient_ids("MR", N_MR):
    _, _, m1, _, _ = _mr_volumes(root, pid)
    assert centroid(m1 == 63) < SIZE / 2  # liver: patient's right
    assert centroid(m1 == 126) < SIZE / 2  # right kidney
    assert centroid(m1 == 189) > SIZE / 2  # left kidney
    assert centroid(m1 == 252) > SIZE / 2  # spleen


def _pixel_bytes(root: pathlib.Path) -> dict[str, bytes]:
  out = {}
  for f in sorted(root.rglob("*")):
    if f.suffix == ".dcm":
      out[str(f.relative_to(root))] = pydicom.dcmread(f).PixelData
    elif f.suffix == ".png":
      out[str(f.relative_to(root))] = f.read_bytes()
  return out


def test_deterministic_from_seed(root, tmp_path):
  again = _generate(tmp_path / "same", seed=0)
  a, b = _pixel_bytes(root), _pixel_bytes(again)
  assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
  # Whole files too (no clock-dependent header fields).
  for f in sorted(root.rglob("*.dcm"))[:20]:
    assert f.read_bytes() == (again / f.relative_to(root)).read_bytes()
  # Another seed: every slice differs (MR series numbers, hence file names,
  # may differ too: compare slice by slice in file order per series folder).
  other_root = _generate(tmp_path / "other", seed=1)
  for series in sorted({f.parent for f in root.rglob("*.dcm")}):
    mine = sorted(series.glob("*.dcm"))
    theirs = sorted((other_root / series.relative_to(root)).glob("*.dcm"))
    assert len(mine) == len(theirs) == SLICES
    for f, g in zip(mine, theirs):
      assert pydicom.dcmread(f).PixelData != pydicom.dcmread(g).PixelData


def test_ct_and_mr_patients_differ(root):
  ct_img, ct_mask = _ct_volume(root, synthetic.patient_ids("CT", 1)[0])
  _, _, m1, _, _ = _mr_volumes(root, synthetic.patient_ids("MR", 1)[0])
  assert not np.array_equal(ct_mask > 0, m1 == 63)


def test_overwrite_rules(tmp_path):
  foreign = tmp_path / "foreign"
  (foreign / "Train_Sets" / "CT").mkdir(parents=True)
  with pytest.raises(FileExistsError, match="Train_Sets"):
    synthetic.generate_chaos(foreign, n_ct=1, n_mr=0, size=32, slices=4)
  assert (foreign / "Train_Sets" / "CT").is_dir()
  own = tmp_path / "own"
  synthetic.generate_chaos(own, n_ct=2, n_mr=0, size=32, slices=4)
  root = synthetic.generate_chaos(own, n_ct=1, n_mr=1, size=32, slices=4)
  assert sorted(p.name for p in (root / "CT").iterdir()) == ["1"]
  assert (root / "MR").is_dir()
  # cached_chaos reuses a matching set and regenerates a different one.
  marker = synthetic.marker_path(own)
  stamp = marker.stat().st_mtime_ns
  assert synthetic.cached_chaos(own, n_ct=1, n_mr=1, size=32, slices=4) == root
  assert marker.stat().st_mtime_ns == stamp
  synthetic.cached_chaos(own, n_ct=1, n_mr=1, size=32, slices=5)
  f = next((root / "CT" / "1" / "DICOM_anon").glob("*.dcm"))
  assert len(list(f.parent.iterdir())) == 5
  with pytest.raises(ValueError):
    synthetic.generate_chaos(tmp_path / "bad", size=8)


def test_cli(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "liverjax.data.synthetic", f"--out={tmp_path}",
       "--ct=1", "--mr=1", "--size=32", "--slices=4"],
      capture_output=True, text=True, check=True,
      cwd=pathlib.Path(__file__).resolve().parents[2])
  assert "CT/1: 4 DICOM, 4 PNG" in out.stdout
  assert "MR/1: 12 DICOM, 8 PNG" in out.stdout
  assert re.search(r"in \d+\.\d+ s", out.stdout)
  assert (tmp_path / "Train_Sets" / "MR" / "1" / "T2SPIR" / "Ground").is_dir()


def test_round_trip_through_the_reader(root):
  chaos = pytest.importorskip("liverjax.data.chaos")
  volumes, problems = chaos.load_volumes(root)
  assert problems == []
  got = {(v.modality, v.patient_id, v.sequence): v for v in volumes}
  want = {("CT", p, "ct") for p in synthetic.patient_ids("CT", N_CT)}
  want |= {("MR", p, s) for p in synthetic.patient_ids("MR", N_MR)
           for s in ("t1_in", "t1_out", "t2")}
  assert set(got) == want
  for v in volumes:
    assert v.image.shape == v.mask.shape == (SLICES, SIZE, SIZE)
    assert v.image.dtype == np.float32 and v.mask.dtype == np.uint8
    z, y, x = v.spacing
    assert y == x and (2.0 <= z <= 3.0 if v.modality == "CT" else 5.5 <= z <= 9.0)
  for pid in synthetic.patient_ids("MR", N_MR):
    t1_in, t1_out = got[("MR", pid, "t1_in")], got[("MR", pid, "t1_out")]
    np.testing.assert_array_equal(t1_in.mask, t1_out.mask)
    assert (t1_in.mask == 63).any()
    assert not np.array_equal(t1_in.image, t1_out.image)
  for pid in synthetic.patient_ids("CT", N_CT):
    v = got[("CT", pid, "ct")]
    img, mask = _ct_volume(root, pid)
    np.testing.assert_array_equal(v.mask, mask)  # slice 0 = file 0 (head end)
    np.testing.assert_allclose(v.image, img)
    assert 40 <= v.image[v.mask > 0].mean() <= 70


def _race_first(out, b_done, results):
  """Generates the set, then reads it once the second process is done."""
  from liverjax.data import chaos  # pylint: disable=g-import-not-at-top
  root = synthetic.cached_chaos(out, n_ct=3, n_mr=3, size=32, slices=8)
  ino = root.stat().st_ino
  b_done.wait(120)
  vols, _ = chaos.load_volumes(root)
  results.put(("first", ino, len(vols), sum(v.image.shape[0] for v in vols)))


def _race_second(out, go, b_done, results):
  """Asks for the same set while the first process is generating it."""
  from liverjax.data import chaos  # pylint: disable=g-import-not-at-top
  go.wait(120)
  root = synthetic.cached_chaos(out, n_ct=3, n_mr=3, size=32, slices=8)
  vols, _ = chaos.load_volumes(root)
  results.put(("second", root.stat().st_ino, len(vols), sum(v.image.shape[0] for v in vols)))
  b_done.set()


def test_two_processes_on_a_fresh_cache_generate_once(tmp_path):
  import multiprocessing  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  out = tmp_path / "syn"
  ctx = multiprocessing.get_context("spawn")
  go, b_done, results = ctx.Event(), ctx.Event(), ctx.Queue()
  second = ctx.Process(target=_race_second, args=(out, go, b_done, results))
  second.start()
  time.sleep(2.0)  # let the second process import and wait
  first = ctx.Process(target=_race_first, args=(out, b_done, results))
  first.start()
  deadline = time.time() + 60
  while not (out.is_dir() and any(p.name.startswith(".Train_Sets.partial")
                                  for p in out.iterdir())):
    assert time.time() < deadline, "the first process never started generating"
    time.sleep(0.002)
  go.set()  # the first is mid-generation: the second asks for the same set now
  got = dict((r[0], r[1:]) for r in (results.get(timeout=120) for _ in range(2)))
  for p in (first, second):
    p.join(60)
    assert p.exitcode == 0
  # Both read every volume of one and the same generated folder (never replaced).
  assert got["first"] == got["second"] == ((out / "Train_Sets").stat().st_ino, 12, 96)


def test_a_kill_right_after_the_set_is_renamed_into_place_leaves_a_usable_set(tmp_path,
                                                                            monkeypatch):
  """The marker moves with the set in one rename: a process killed just after it leaves a
  set that the next run reuses (before, the set without its marker was refused for good)."""
  real_rename = os.rename

  def rename_then_die(src, dst):
    real_rename(src, dst)
    if pathlib.Path(dst).name == "Train_Sets":
      raise KeyboardInterrupt  # the process ends here

  monkeypatch.setattr(synthetic.os, "rename", rename_then_die)
  with pytest.raises(KeyboardInterrupt):
    synthetic.cached_chaos(tmp_path, n_ct=1, n_mr=0, size=32, slices=4)
  monkeypatch.setattr(synthetic.os, "rename", real_rename)
  root = synthetic.cached_chaos(tmp_path, n_ct=1, n_mr=0, size=32, slices=4)
  assert (root / "CT" / "1" / "DICOM_anon").is_dir()
  assert not list(tmp_path.glob(".Train_Sets.*"))
