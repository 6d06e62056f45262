"""Tests for liverjax/experiment.py's workdir lock: one run per workdir."""
import os
import signal
import subprocess
import sys

import pytest

from liverjax import experiment
from tests.conftest import REPO

_HOLD = ("import sys, time\nfrom liverjax import experiment\n"
         "with experiment.workdir_lock(sys.argv[1]):\n"
         "  print('held', flush=True)\n  time.sleep(600)\n")


def _holder(workdir):
  p = subprocess.Popen([sys.executable, "-c", _HOLD, str(workdir)], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                       text=True)
  assert p.stdout.readline().strip() == "held"
  return p


def test_a_held_workdir_is_refused_naming_the_holder_until_it_dies(tmp_path):
  workdir = tmp_path / "w"
  holder = _holder(workdir)
  try:
    with pytest.raises(experiment.WorkdirLocked) as e:
      with experiment.workdir_lock(workdir):
        pass
    message = str(e.value)
    assert message.startswith(f"workdir {workdir} is in use by another run (pid {holder.pid} "
                              f"on host ")
    assert str(workdir) in message.split(": -c ")[1]  # its command line
    assert f"lock file {workdir / '.lock'}" in message
    # The U-Net and CycleGAN runs take it first, before reading any data.
    with pytest.raises(experiment.WorkdirLocked):
      experiment.run_segmentation(None, workdir)
    with pytest.raises(experiment.WorkdirLocked):
      experiment.run_cyclegan(None, workdir)
  finally:
    holder.send_signal(signal.SIGKILL)  # as kill -9: no clean-up in the holder
    holder.wait(60)
  # The kernel released the dead holder's lock: the workdir is free again.
  with experiment.workdir_lock(workdir) as path:
    assert path == workdir / ".lock"
    assert f"pid {os.getpid()} on host" in path.read_text()
    with experiment.workdir_lock(workdir):  # the same process again (the study's runs)
      pass


def test_lock_files_per_process_of_a_job(tmp_path):
  assert experiment.lock_path(tmp_path, 0) == tmp_path / ".lock"
  assert experiment.lock_path(tmp_path, 3) == tmp_path / ".lock.3"
