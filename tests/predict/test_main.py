"""Tests for liverjax/predict/__main__.py: `python -m liverjax.predict`."""
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np

from tests.conftest import REPO


def test_command_line_ends_with_one_line_naming_the_bad_file(trained, tmp_path):
  workdir, _ = trained
  four_d = tmp_path / "four_d.nii.gz"
  nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), str(four_d))
  run = subprocess.run([sys.executable, "-m", "liverjax.predict", f"--workdir={workdir}",
                        f"--input={four_d}", f"--out={tmp_path / 'out'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 1
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith("liverjax.predict: ") and str(four_d) in last and "3D" in last


def _predict(workdir, *args):
  return subprocess.run([sys.executable, "-m", "liverjax.predict", f"--workdir={workdir}",
                         *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def _one_line_end(run, *names) -> str:
  """The last stderr line, checked: the program's one line naming every `names`, and no
  traceback anywhere."""
  last = run.stderr.strip().splitlines()[-1]
  assert run.returncode == 1, run.stderr[-3000:]
  assert last.startswith("liverjax.predict: ") and "Traceback" not in run.stderr, run.stderr
  for name in names:
    assert str(name) in last, (name, last)
  return last


def test_bad_scans_are_listed_in_one_line_after_the_good_ones_are_written(trained, tmp_path):
  """A truncated .gz, a zero affine and a 1024^3 header among good scans (one with a comma in
  its path, which is not split): the good ones are written, the run ends with exit code 1
  and one line naming each bad file."""
  from tests.data.test_nifti_file import _raw_nifti  # pylint: disable=g-import-not-at-top
  workdir, _ = trained
  good = tmp_path / "in" / "patient 7, arterial.nii.gz"
  good.parent.mkdir()
  array = np.random.default_rng(0).uniform(-100, 200, (32, 32, 6)).astype(np.float32)
  nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 4.0, 1.0])), str(good))
  cut = tmp_path / "in" / "cut.nii.gz"
  cut.write_bytes(good.read_bytes()[:1500])
  zero = _raw_nifti(tmp_path / "in" / "zero.nii", (4, 4, 3), bytes(192),
                    affine_rows=[[0, 0, 0, 0]] * 3)
  huge = _raw_nifti(tmp_path / "in" / "huge.nii", (1024, 1024, 1024), bytes(64))
  out = tmp_path / "out"
  run = _predict(workdir, f"--input={good}", f"--input={cut}", f"--input={zero}",
                 f"--input={huge}", f"--out={out}", "--modality=CT")
  last = _one_line_end(run, cut, zero, huge)
  assert "3 of 4 scans failed" in last
  assert (out / "patient 7, arterial" / "mask.nii.gz").is_file()


def test_a_damaged_checkpoint_and_an_unwritable_out_are_one_line(trained, tmp_path):
  workdir, root = trained
  damaged = tmp_path / "damaged"
  shutil.copytree(workdir, damaged)
  (damaged / "checkpoints" / "3" / "state" / "_METADATA").unlink()
  scan = root / "CT" / "1"
  _one_line_end(_predict(damaged, f"--input={scan}", f"--out={tmp_path / 'o1'}"),
                damaged / "checkpoints" / "3")
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  _one_line_end(_predict(workdir, f"--input={scan}", f"--out={blocker / 'out'}"), blocker)
  full = tmp_path / "full"
  full.mkdir()
  (full / "x").write_text("")
  last = _one_line_end(_predict(workdir, f"--input={scan}", f"--out={full}"), full)
  assert "--overwrite" in last
