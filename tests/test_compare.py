"""`python -m liverjax.compare`: the printed comparison, --out, and its one-line errors."""
import json
import subprocess
import sys

from liverjax import cli
from tests.conftest import REPO
from tests.reporting.test_compare import _run_dir


def _compare(*args):
  return subprocess.run([sys.executable, "-m", "liverjax.compare", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_compare_prints_the_table_writes_out_and_pools_folds(tmp_path):
  for s in (0, 1):
    _run_dir(tmp_path, f"t{s}", {"p1": 0.6 + 0.1 * s, "p2": 0.4}, seed=s)
    _run_dir(tmp_path, f"f{s}_0", {"p1": 0.9}, seed=s)
    _run_dir(tmp_path, f"f{s}_1", {"p2": 0.7 + 0.1 * s}, seed=s)
  (tmp_path / "f0_0.log").write_text("a log beside the fold's workdir is not a workdir")
  result = _compare(f"--arm=teacher={tmp_path}/t0,{tmp_path}/t1",
                    f"--arm=in-domain={tmp_path}/f0_*,{tmp_path}/f1_*", "--exclude=p2",
                    f"--out={tmp_path}/cmp")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "| in-domain | 2 (0, 1) | 0.800 / 0.850 | 0.825 ± 0.025 | 0.900 |" in result.stdout
  assert "+0.300 (+0.300 / +0.300) | 2 of 2 |" in result.stdout
  assert (tmp_path / "cmp" / "compare.md").read_text() == result.stdout
  saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
  assert saved["volumes"] == ["MR p1 t2", "MR p2 t2"]
  assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
  # "+" pools named workdirs as a glob pools folds: the same comparison.
  plus = _compare(f"--arm=teacher={tmp_path}/t0,{tmp_path}/t1",
                  f"--arm=in-domain={tmp_path}/f0_0+{tmp_path}/f0_1,{tmp_path}/f1_*",
                  "--exclude=p2")
  assert plus.returncode == 0 and plus.stdout == result.stdout
  missing = _compare(f"--arm=a={tmp_path}/t0+{tmp_path}/nothing_*")
  assert missing.returncode == cli.FAILED and "nothing_*: no workdir matches" in missing.stderr


def test_a_run_not_yet_evaluated_is_named_and_the_exit_code_says_so(tmp_path):
  _run_dir(tmp_path, "a0", {"p1": 0.5})
  _run_dir(tmp_path, "b0", {"p1": 0.7})
  (tmp_path / "b1").mkdir()  # training, no metrics.json yet
  result = _compare(f"--arm=a={tmp_path}/a0,{tmp_path}/a0", f"--arm=b={tmp_path}/b0,{tmp_path}/b1")
  assert result.returncode == cli.FAILED
  assert "| b | 1 of 2 (?) | 0.700 / — |" in result.stdout
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("liverjax.compare: 1 run(s) not read") and "b1: no metrics" in lines[-1]


def test_usage_errors_are_one_line(tmp_path):
  _run_dir(tmp_path, "ct", {"p1": 0.5}, modality="CT")
  _run_dir(tmp_path, "mr", {"p1": 0.5})
  for args, message in [(["--arm=nothing"], "expected NAME=RUN,RUN"),
                        ([], "give at least one --arm"),
                        ([f"--arm=x={tmp_path}/ct,{tmp_path}/mr"], "--modality=CT or MR")]:
    result = _compare(*args)
    assert result.returncode == cli.USAGE, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("liverjax.compare: ")
    assert message in result.stderr
