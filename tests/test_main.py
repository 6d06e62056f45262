"""The command line: `python -m liverjax.main --config=configs/...` end to end, tiny."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_main_trains_evaluates_and_reevaluates(tmp_path):
  workdir = tmp_path / "run"
  flags = [f"--config={REPO / 'configs' / 'mri_to_ct.py'}", f"--workdir={workdir}",
           f"--config.data.cache_dir={tmp_path / 'cache'}",
           "--config.data.synthetic.ct=3", "--config.data.synthetic.mr=3",
           "--config.data.synthetic.size=32", "--config.data.synthetic.slices=8",
           "--config.data.image_size=32", "--config.data.split=(0.34,0.33,0.33)",
           "--config.model.depth=2", "--config.model.base_features=4",
           "--config.train.batch_size=8", "--config.train.steps=4",
           "--config.train.log_every=2", "--config.train.eval_every=4"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  # As on the GPU hosts: TensorFlow cannot be imported. The run falls back to the
  # numpy pipeline and writes no TensorBoard files.
  without_tf = ("import runpy, sys; sys.modules['tensorflow'] = None; "
                "sys.argv = ['liverjax.main'] + sys.argv[1:]; "
                "runpy.run_module('liverjax.main', run_name='__main__', alter_sys=True)")
  run = subprocess.run([sys.executable, "-c", without_tf, *flags], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "using the synthetic CHAOS dataset" in run.stderr  # says where the data comes from
  assert "input pipeline: numpy" in run.stderr
  assert not (workdir / "tensorboard").exists()
  assert "step 4/4" in run.stderr
  results = json.loads((workdir / "metrics.json").read_text())
  assert results["source"] == "mr" and results["step"] == 4
  assert set(results["summary"]) == {"ct", "mr", "mr/t1_in", "mr/t1_out", "mr/t2"}
  for name in ("metrics.md", "predictions.png", "curves.png", "metrics.jsonl"):
    assert (workdir / name).exists(), name
  (workdir / "metrics.json").unlink()
  # From another folder, the config named as installed (no configs/ folder there).
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  flags[0] = "--config=mri_to_ct"
  env["PYTHONPATH"] = str(REPO)  # this checkout's liverjax, wherever it is installed from
  run = subprocess.run([sys.executable, "-m", "liverjax.main", *flags, "--mode=evaluate"],
                       cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
                       check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  assert not (elsewhere / "workdir").exists()
  assert json.loads((workdir / "metrics.json").read_text())["step"] == 4


def test_entry_points_run_outside_the_repository(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  for module in ("liverjax.study", "liverjax.main"):
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    # absl prints the usage and exits with status 1 on --help.
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "--config" in run.stdout and "--workdir" in run.stdout


def test_main_rejects_a_bad_data_root(tmp_path):
  run = subprocess.run([sys.executable, "-m", "liverjax.main",
                        f"--config={REPO / 'configs' / 'ct_to_mri.py'}",
                        f"--workdir={tmp_path / 'w'}", f"--config.data.root={tmp_path / 'nope'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert run.returncode != 0
  assert str(tmp_path / "nope") in run.stderr
