"""Tests for liverjax/data/verify.py."""
import os
import pathlib
import subprocess
import sys

import numpy as np

from liverjax.data import chaos_masks
from liverjax.data import verify
from tests.data.test_chaos import build_dataset, write_mask

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run_cli(root):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "liverjax.data.verify", f"--root={root}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_good_dataset_has_no_problems(tmp_path):
  build_dataset(tmp_path, n_ct=2, n_mr=1)
  report = verify.check_dataset(tmp_path)
  assert report.usable and report.problems == []
  counts = report.counts()
  assert counts[("CT", "ct")] == dict(patients=2, series_skipped=0, slices=8, liver_slices=8)
  for seq in ("t1_in", "t1_out", "t2"):
    assert counts[("MR", seq)] == dict(patients=1, series_skipped=0, slices=3, liver_slices=3)
  result = _run_cli(tmp_path)
  assert result.returncode == 0, result.stderr
  assert "no problems found" in result.stdout


def test_broken_dataset_lists_each_problem_with_its_path(tmp_path):
  root = build_dataset(tmp_path, n_ct=2, n_mr=1)
  (root / "MR/1/T2SPIR/Ground/IMG-0002-00006.png").unlink()  # missing mask
  write_mask(root / "MR/1/T2SPIR/Ground/IMG-0002-00077.png", np.zeros((64, 64)))  # extra
  write_mask(root / "CT/1/Ground/liver_GT_001.png", np.zeros((10, 10)))  # mis-sized
  (root / "CT/1/DICOM_anon/junk.dcm").write_text("not dicom")  # unreadable
  for f in (root / "CT/2/DICOM_anon").iterdir():  # a whole series gone
    f.unlink()
  report = verify.check_dataset(tmp_path)
  assert report.usable  # CT 1 and MR 1 still have slices
  text = "\n".join(report.problems)
  assert str(root / "MR/1/T2SPIR/DICOM_anon/IMG-0002-00006.dcm") + ": missing mask" in text
  assert str(root / "MR/1/T2SPIR/Ground/IMG-0002-00077.png") + ": mask with no image" in text
  assert str(root / "CT/1/Ground/liver_GT_001.png") + ": mask size (10, 10) differs" in text
  assert str(root / "CT/1/DICOM_anon/junk.dcm") + ": not a DICOM file" in text
  assert str(root / "CT/2/DICOM_anon") + ": empty folder" in text
  # junk.dcm could be a lost slice: the CT pairing is proven by the positions (a note).
  assert report.problem_counts() == {"missing mask": 1, "extra mask": 1, "size mismatch": 1,
                                     "unreadable file": 1, "series skipped": 1, "pairing": 1}
  counts = report.counts()
  assert counts[("CT", "ct")] == dict(patients=1, series_skipped=1, slices=3, liver_slices=3)
  assert counts[("MR", "t2")]["slices"] == 2
  result = _run_cli(tmp_path)
  assert result.returncode == 1, result.stderr  # usable, but files were dropped
  assert "6 problem(s)" in result.stdout and "junk.dcm: not a DICOM file" in result.stdout
  assert "CT/2 ct: SKIPPED" in result.stdout and "CT/1 ct: kept, 3 slices" in result.stdout


def test_unusable_dataset_exits_non_zero(tmp_path):
  root = build_dataset(tmp_path, n_ct=1, n_mr=0)
  for f in (root / "CT/1/Ground").iterdir():
    f.unlink()
  report = verify.check_dataset(root)
  assert not report.usable
  assert any("CT/1/Ground" in p for p in report.problems)
  result = _run_cli(root)
  assert result.returncode == 2
  assert "DATASET UNUSABLE" in result.stdout
  missing = verify.check_dataset(tmp_path / "nowhere")
  assert not missing.usable and "nowhere: no such folder" in missing.problems[0]


def test_real_ct_sample_report(ct_sample_root):
  report = verify.check_dataset(ct_sample_root)
  assert report.usable and report.problems == []
  assert report.counts() == {("CT", "ct"): dict(patients=1, series_skipped=0, slices=78,
                                                liver_slices=71)}


def test_damaged_real_sample_lists_each_problem_and_exits_one(ct_sample_root, tmp_path):
  from tests.data.test_chaos import _copy_sample  # pylint: disable=g-import-not-at-top
  pdir, _ = _copy_sample(ct_sample_root, tmp_path / "ok", n=10)
  dup = pdir / "DICOM_anon" / "i0004,0000b (1).dcm"
  dup.write_bytes((pdir / "DICOM_anon" / "i0004,0000b.dcm").read_bytes())
  trunc = pdir / "DICOM_anon" / "i0006,0000b.dcm"
  trunc.write_bytes(trunc.read_bytes()[:200])
  zero_one = pdir / "Ground" / "liver_GT_008.png"
  write_mask(zero_one, chaos_masks.read_mask_png(zero_one) > 0)  # 8-bit 0/1
  refused, _ = _copy_sample(ct_sample_root, tmp_path / "bad", n=10,
                            names=[f"s{(k * 3) % 10}.dcm" for k in range(10)])
  import pydicom  # pylint: disable=g-import-not-at-top
  for f in (refused / "DICOM_anon").iterdir():  # no InstanceNumber, names say nothing
    ds = pydicom.dcmread(f)
    del ds.InstanceNumber
    ds.save_as(f)
  (refused / "DICOM_anon" / "s7.dcm").write_bytes(b"")  # slice 9, the feet end: unplaceable
  link = refused.parent / "1"
  link.symlink_to(pdir)  # the damaged-but-usable patient, as CT/1 here
  dup, trunc, zero_one = (link / f.relative_to(pdir) for f in (dup, trunc, zero_one))
  report = verify.check_dataset(tmp_path / "bad")
  text = "\n".join(report.problems)
  assert f"{refused / 'DICOM_anon' / 's7.dcm'}:" in text
  assert "cannot prove which mask belongs to which slice" in text and "patient refused" in text
  assert f"{dup}: duplicate of i0004,0000b.dcm" in text
  assert f"{trunc}: no SeriesInstanceUID" in text
  assert f"{zero_one}: mask values [0, 1] are not the CHAOS CT encoding" in text
  assert report.counts()[("CT", "ct")] == dict(patients=1, series_skipped=1, slices=8,
                                                liver_slices=2)
  result = _run_cli(tmp_path / "bad")
  assert result.returncode == 1, result.stdout + result.stderr
  assert "CT/0 ct: SKIPPED" in result.stdout
  assert f"CHAOS dataset: {(tmp_path / 'bad').resolve()}" in result.stdout
  # dropped: the copy, the truncated file and its mask, the 0/1 mask and its slice
  assert "CT/1 ct: kept, 8 slices, 5 file(s) dropped" in result.stdout
  assert "some files were dropped" in result.stdout


def test_nifti_dataset_is_verified_case_by_case(tmp_path):
  """A good NIfTI dataset was called 'DATASET UNUSABLE'; each case is now kept or skipped
  with its reason, as training reads it."""
  from tests.data.test_nifti import write_msd  # pylint: disable=g-import-not-at-top
  root = write_msd(tmp_path / "ds", cases=("a", "b"))
  report = verify.check_dataset(root)
  assert report.kind == "NIfTI" and report.usable and report.exit_code() == 0
  assert [(s.patient_id, s.slices) for s in report.series] == [("a", 4), ("b", 4)]
  result = _run_cli(root)
  assert result.returncode == 0, result.stderr
  assert "NIfTI dataset" in result.stdout and "UNUSABLE" not in result.stdout
  (root / "labelsTr" / "b.nii.gz").unlink()
  result = _run_cli(root)
  assert result.returncode == 1, result.stdout
  assert "CT/b ct: SKIPPED" in result.stdout
  assert f"case skipped: {root / 'labelsTr' / 'b.nii.gz'}: label file missing" in result.stdout


def test_plain_nifti_folder_takes_modality_and_liver_label_flags(tmp_path):
  from tests.data.test_nifti import tiny_label  # pylint: disable=g-import-not-at-top
  from tests.data.test_nifti import write_nifti  # pylint: disable=g-import-not-at-top
  write_nifti(tmp_path / "images" / "p.nii.gz", np.ones((6, 5, 4), np.int16))
  write_nifti(tmp_path / "labels" / "p.nii.gz", tiny_label())
  report = verify.check_dataset(tmp_path, modality="CT")
  assert not report.usable and "liver_label" in report.series[0].error
  assert verify.check_dataset(tmp_path, modality="CT", liver_label=6).exit_code() == 0
