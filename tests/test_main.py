"""The command line: `python -m liverjax.main --config=configs/...` end to end, tiny."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import liverjax
from liverjax import runtime
from tests.conftest import REPO


@pytest.mark.slow
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
  # numpy pipeline, and writes its TensorBoard scalars through tensorboardX.
  without_tf = ("import runpy, sys; sys.modules['tensorflow'] = None; "
                "sys.argv = ['liverjax.main'] + sys.argv[1:]; "
                "runpy.run_module('liverjax.main', run_name='__main__', alter_sys=True)")
  run = subprocess.run([sys.executable, "-c", without_tf, *flags], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "using the synthetic CHAOS dataset" in run.stderr  # says where the data comes from
  assert "input pipeline: numpy" in run.stderr
  assert "step 4/4" in run.stderr
  for split in ("train", "val"):
    assert list((workdir / "tensorboard" / split).glob("events.out.tfevents.*")), split
  results = json.loads((workdir / "metrics.json").read_text())
  assert results["source"] == "mr" and results["step"] == 4
  assert results["liverjax_version"] == liverjax.__version__
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


def test_an_installed_copy_runs_outside_the_repository(tmp_path):
  """The package as pip installs it (a wheel built from pyproject.toml) holds the configs and
  the five console scripts, and its entry points run from another folder: `--config=<name>`
  finds the installed file, and each script prints the version."""
  source = tmp_path / "source"
  shutil.copytree(REPO / "liverjax", source / "liverjax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md", "LICENSE"):
    shutil.copy(REPO / name, source / name)
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                  "--no-build-isolation", "--target", str(tmp_path / "site"), str(source)],
                 cwd=tmp_path, capture_output=True, text=True, timeout=600, check=True)
  installed = tmp_path / "site" / "liverjax" / "configs"
  assert (installed / "mri_to_ct.py").exists() and (installed / "real" / "ct_to_mr.py").exists()
  # Every module is in the wheel. (A subpackage without __init__.py is left out by
  # find_packages; the run below would not notice where an editable install of the
  # repository is on the path, since its finder supplies the missing modules.)
  def modules(root):
    return {p.relative_to(root).as_posix() for p in (root / "liverjax").rglob("*.py")}
  assert modules(tmp_path / "site") == modules(REPO)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
  run = subprocess.run([sys.executable, "-m", "liverjax.main", "--config=mri_to_ct",
                        "--config.train.batch_size=0"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
  # The installed config was found and loaded: the override is checked, in one line.
  assert run.returncode == 2, run.stderr[-3000:]
  assert run.stderr == "liverjax.main: config.train.batch_size=0: expected an integer >= 1\n"
  # The console scripts, as pip wrote them (bin/ of the install), each with --version.
  scripts = sorted(p.name for p in (tmp_path / "site" / "bin").glob("liverjax-*"))
  assert scripts == ["liverjax-compare", "liverjax-predict", "liverjax-study", "liverjax-train",
                     "liverjax-verify"]
  for script in scripts:
    run = subprocess.run([str(tmp_path / "site" / "bin" / script), "--version"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert (run.returncode, run.stdout) == (0, f"liverjax {liverjax.__version__}\n"), (
        script, run.stderr[-2000:])
  # And one runs its program: the same one-line error as `python -m liverjax.main` above.
  run = subprocess.run([str(tmp_path / "site" / "bin" / "liverjax-train"), "--config=mri_to_ct",
                        "--config.train.batch_size=0"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
  assert run.returncode == 2, run.stderr[-3000:]
  assert run.stderr == "liverjax.main: config.train.batch_size=0: expected an integer >= 1\n"


# ---------------------------------------------------------------- run safety (issue #11, 7-8)

def _tiny_flags(tmp_path, workdir, *, steps=4, extra=()):
  """A tiny MR -> CT run of `liverjax.main` (3 + 3 synthetic patients, 32 px)."""
  return [f"--config={REPO / 'configs' / 'mri_to_ct.py'}", f"--workdir={workdir}",
          f"--config.data.cache_dir={tmp_path / 'cache'}",
          "--config.data.synthetic.ct=3", "--config.data.synthetic.mr=3",
          "--config.data.synthetic.size=32", "--config.data.synthetic.slices=8",
          "--config.data.image_size=32", "--config.data.split=(0.34,0.33,0.33)",
          "--config.data.use_tf=False", "--config.model.depth=2",
          "--config.model.base_features=4", "--config.train.batch_size=8",
          f"--config.train.steps={steps}", "--config.train.log_every=1",
          "--config.train.eval_every=2", "--config.eval.figure_slices=1", *extra]


def _env(tmp_path, **more):
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
              PYTHONPATH=str(REPO), **more)  # this checkout's liverjax, whatever the cwd


# Runs liverjax.main without TensorFlow and, when LIVERJAX_TEST_KILL is set, kills
# itself with SIGKILL (no cleanup, as kill -9) at one moment of the run:
#   first_checkpoint  just before the first checkpoint is written;
#   commit:<step>     inside orbax, its checkpoint of <step> written to the temporary
#                     folder, just before that folder is renamed into place;
#   report            after training and evaluation, as the report is written.
_KILLABLE_MAIN = """
import os, runpy, signal, sys
sys.modules["tensorflow"] = None
moment = os.environ.get("LIVERJAX_TEST_KILL", "")
def die(*args, **kwargs):
  os.kill(os.getpid(), signal.SIGKILL)
if moment == "first_checkpoint":
  from liverjax import checkpointing
  checkpointing.save = die
elif moment.startswith("commit:"):
  step, rename = moment.split(":")[1], os.rename
  def killing_rename(src, dst, *args, **kwargs):
    if "tmp" in os.path.basename(str(src)) and os.path.basename(str(dst)) == step:
      die()
    return rename(src, dst, *args, **kwargs)
  os.rename = killing_rename
elif moment == "report":
  from liverjax.reporting import experiment
  experiment.write_experiment_report = die
sys.argv = ["liverjax.main"] + sys.argv[1:]
runpy.run_module("liverjax.main", run_name="__main__", alter_sys=True)
"""


def _run_main(flags, env, kill=""):
  return subprocess.run([sys.executable, "-c", _KILLABLE_MAIN, *flags], cwd=REPO,
                        env=dict(env, LIVERJAX_TEST_KILL=kill), capture_output=True,
                        text=True, timeout=600, check=False)


def _records(workdir):
  return [(r["split"], r["step"]) for r in
          (json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines())]


def _final_results(workdir):
  results = json.loads((workdir / "metrics.json").read_text())
  results.pop("checkpoint")  # the path, which names the workdir
  return results


@pytest.mark.slow
def test_kill_9_at_any_moment_then_rerun_gives_the_same_results(tmp_path):
  """kill -9 before the first checkpoint, inside a checkpoint write, at an arbitrary
  moment of training and while reporting; each time the same command resumes, and
  the end is the uninterrupted run's metrics.json with every record once."""
  env = _env(tmp_path)
  reference = tmp_path / "reference"
  run = _run_main(_tiny_flags(tmp_path, reference, steps=6), env)
  assert run.returncode == 0, run.stderr[-3000:]
  expected = [("train", 1), ("train", 2), ("val", 2), ("train", 3), ("train", 4), ("val", 4),
              ("train", 5), ("train", 6), ("val", 6)]
  assert _records(reference) == expected

  workdir = tmp_path / "killed"
  flags = _tiny_flags(tmp_path, workdir, steps=6)
  run = _run_main(flags, env, kill="first_checkpoint")
  assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
  assert _records(workdir) == expected[:3]  # the dead run's records, no checkpoint
  assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]

  run = _run_main(flags, env, kill="commit:4")
  assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
  assert _records(workdir) == expected[:6]  # started afresh: each step once
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()
                if p.name.isdigit()) == ["2"]  # step 4 never committed

  # A kill from outside, wherever the run is when it has logged step 5.
  proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_MAIN, *flags], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 600
  for line in proc.stderr:
    if "step 5/6" in line or time.monotonic() > deadline:
      break
  proc.kill()
  proc.communicate(timeout=60)

  run = _run_main(flags, env, kill="report")
  assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
  run = _run_main(flags, env)
  assert run.returncode == 0, run.stderr[-3000:]
  assert _records(workdir) == expected
  assert _final_results(workdir) == _final_results(reference)


def _run_all(commands, cwd, env):
  """Runs the commands side by side; returns their CompletedProcess-like results."""
  procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for c in commands]
  out = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=600)
    out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
  return out


@pytest.mark.slow
def test_usage_errors_end_in_one_line_with_exit_code_2(tmp_path):
  """Each input error stops `liverjax.main` before anything is read or compiled: one line
  on stderr naming the flag, field or file, no traceback, no config dump, exit code 2."""
  workdir = tmp_path / "w"
  cases = {
      "--config.train.nope=1": "--config.train.nope=1: the config has no field 'train.nope'",
      "--config=no_such_config.py": "--config=no_such_config.py: no such config file",
      "--config.train.batch_size=0": "config.train.batch_size=0: expected an integer >= 1",
      "--config.train.learning_rate=-0.1": "config.train.learning_rate=-0.1",
      "--config.data.image_size=40": "config.data.image_size=40: must be divisible by 2**"
                                     "model.depth = 16",
      "--config.data.split=(0.0,0.5,0.5)": "config.data.split=(0.0, 0.5, 0.5)",
      "--config.data.source=pet": "config.data.source='pet'",
      "--config.data.mr_sequences=('t1',)": "config.data.mr_sequences=('t1',)",
      "--config.train.steps=ten": "--config.train.steps=ten",
      "stray": "unexpected arguments: ['stray']",
  }
  commands = []
  for arg in cases:
    flags = [f"--config={REPO / 'configs' / 'mri_to_ct.py'}", f"--workdir={workdir}"]
    flags = [arg] + flags[1:] if arg.startswith("--config=") else flags + [arg]
    commands.append([sys.executable, "-m", "liverjax.main", *flags])
  for (arg, expected), run in zip(cases.items(), _run_all(commands, tmp_path, _env(tmp_path))):
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, (arg, run.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("liverjax.main: "), (arg, run.stderr[-2000:])
    assert expected in lines[0], (arg, lines[0])
  assert not workdir.exists()  # nothing was written


def test_run_errors_end_in_one_line_with_exit_code_1(tmp_path):
  """A bad data root and a workdir that cannot be created: one line naming the path
  (after the logged config), exit code 1; LIVERJAX_TRACEBACK=1 keeps the traceback."""
  (tmp_path / "a_file").write_text("")
  env = _env(tmp_path)
  base = [sys.executable, "-c", _KILLABLE_MAIN, f"--config={REPO / 'configs' / 'ct_to_mri.py'}"]
  bad_root = base + [f"--workdir={tmp_path / 'w'}", f"--config.data.root={tmp_path / 'nope'}"]
  bad_workdir = base + [f"--workdir={tmp_path / 'a_file' / 'w'}"]
  runs = _run_all([bad_root, bad_workdir], REPO, env)
  for run, path in zip(runs, [tmp_path / "nope", tmp_path / "a_file" / "w"]):
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"liverjax.main: {path}: ")
  [run] = _run_all([bad_root], REPO, dict(env, LIVERJAX_TRACEBACK="1"))
  assert run.returncode == 1 and "Traceback" in run.stderr and "ChaosError" in run.stderr


def test_a_second_run_on_a_held_workdir_is_refused(tmp_path):
  """While a run holds the workdir, another stops at once with one line naming the
  workdir and the holder (pid, host, command), exit code 1, and touches nothing."""
  workdir = tmp_path / "w"
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\nfrom liverjax import experiment\n"
       f"with experiment.workdir_lock({str(workdir)!r}):\n"
       "  print('held', flush=True)\n  time.sleep(600)\n", "the-holder"],
      cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    [run] = _run_all([[sys.executable, "-c", _KILLABLE_MAIN, *_tiny_flags(tmp_path, workdir)]],
                     REPO, _env(tmp_path))
  finally:
    holder.kill()
    holder.wait(60)
  line = run.stderr.strip().splitlines()[-1]
  assert run.returncode == 1, run.stderr[-3000:]
  assert line.startswith(f"liverjax.main: workdir {workdir} is in use by another run")
  assert f"pid {holder.pid} on host" in line and "the-holder" in line
  assert sorted(p.name for p in workdir.iterdir()) == [".lock"]


@pytest.mark.slow
def test_compilation_cache_is_on_by_default_under_the_cache_dir_and_off_with_the_variable(
    tmp_path):
  """Two tiny runs side by side: without LIVERJAX_COMPILATION_CACHE the compiled programs
  are written under `<data.cache_dir>/jax_compilation_cache` (and the log says where); with
  LIVERJAX_COMPILATION_CACHE=0 that folder is never made."""
  env = {k: v for k, v in _env(tmp_path).items() if k != runtime.COMPILATION_CACHE_ENV}
  on_flags = _tiny_flags(tmp_path / "on", tmp_path / "on" / "w", steps=2)
  off_flags = _tiny_flags(tmp_path / "off", tmp_path / "off" / "w", steps=2)
  procs = [subprocess.Popen([sys.executable, "-c", _KILLABLE_MAIN, *flags], cwd=REPO, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for flags, e in ((on_flags, env),
                            (off_flags, dict(env, **{runtime.COMPILATION_CACHE_ENV: "0"})))]
  outputs = [p.communicate(timeout=600) for p in procs]
  on, off = (subprocess.CompletedProcess(p.args, p.returncode, *o)
             for p, o in zip(procs, outputs))
  assert on.returncode == 0, on.stderr[-3000:]
  assert off.returncode == 0, off.stderr[-3000:]
  cache = tmp_path / "on" / "cache" / runtime.COMPILATION_CACHE_SUBDIR
  entries = [p for p in cache.iterdir() if p.name.endswith("-cache")]
  assert entries, sorted(p.name for p in cache.iterdir())
  assert f"JAX compilation cache: {cache}" in on.stderr
  assert not (tmp_path / "off" / "cache" / runtime.COMPILATION_CACHE_SUBDIR).exists()
  assert "JAX compilation cache: off" in off.stderr
