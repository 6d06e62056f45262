"""Tests for liverjax/predict/__main__.py: `python -m liverjax.predict`."""
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
