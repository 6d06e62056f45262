"""Multi-process data-parallel training: 2 local processes x 4 CPU devices == 1 process x 8."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import multiprocess_worker

TIMEOUT_S = 240


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_eight_devices(tmp_path):
  """jax.distributed over loopback (gloo): the same losses as the single-process 8-device mesh."""
  if jax.device_count() != 8:
    pytest.skip("needs the 8 simulated CPU devices of tests/conftest.py")
  port, out = _free_port(), tmp_path / "losses.json"
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS")}
  env["PYTHONPATH"] = str(multiprocess_worker.REPO)
  procs = [subprocess.Popen(
      [sys.executable, str(multiprocess_worker.REPO / "tests" / "multiprocess_worker.py"),
       f"--process_id={i}", "--num_processes=2", f"--port={port}", "--local_devices=4",
       f"--out={out}"], env=env, cwd=multiprocess_worker.REPO,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  single = multiprocess_worker.train_losses()  # meanwhile, here: 1 process x 8 devices
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail(f"multi-process workers did not finish in {TIMEOUT_S} s")
  for p, log in zip(procs, logs):
    assert p.returncode == 0, f"worker exited with {p.returncode}:\n{log[-3000:]}"
  result = json.loads(out.read_text())
  assert result["devices"] == 8
  assert len(single) == len(result["losses"]) == multiprocess_worker.STEPS
  np.testing.assert_allclose(result["losses"], single, rtol=0, atol=1e-4)
  assert single[-1] != single[0]  # the steps trained
