"""The benchmark scripts run, at tiny sizes (their figures are not checked: timings are not tests).

On 2026-11-28 two of them were found broken where nothing ran them (`benchmark_augment.py`
refused its own MR source and could not start from the repository root;
`benchmark_cyclegan.py --preset` ignored `--dtype`). Each test here runs one script as a user would, from the repository root,
and checks that it ends well and prints its figure lines with positive numbers.
"""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_script(*args: str, timeout: int = 240) -> str:
  """Runs `python scripts/<args>` from the repository root on one CPU device; returns stdout.

  Fails the test with the script's last output when it exits non-zero."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout, check=False)
  if proc.returncode != 0:
    pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                f"{proc.stderr[-3000:]}")
  return proc.stdout


def positive(pattern: str, text: str) -> float:
  """The number that `pattern`'s group 1 captures in `text`; fails unless found and > 0."""
  match = re.search(pattern, text)
  assert match, f"no line matching {pattern!r} in:\n{text}"
  value = float(match.group(1))
  assert value > 0, match.group(0)
  return value


def test_benchmark_train_prints_step_augmentation_and_eval_rates():
  out = run_script("scripts/benchmark_train.py", "--size=16", "--batch=2", "--depth=2",
                   "--features=4", "--augment=domain", "--steps=1", "--warmup=0")
  positive(r"train step: [\d.]+ ms/step, ([\d.]+) slices/s", out)
  positive(r"augmentation alone: [\d.]+ ms/batch, ([\d.]+) slices/s", out)
  positive(r"eval step: +[\d.]+ ms/batch, ([\d.]+) slices/s", out)


def test_benchmark_vs_monai_alone_counts_the_steps_flops():
  out = run_script("scripts/benchmark_vs_monai.py", "--sizes=16", "--batch=2", "--no_monai",
                   "--rounds=1", "--steps=1", "--warmup=1")
  positive(r"liverjax +([\d.]+) slices/s", out)
  flops = positive(r"([\d.]+) GFLOP/step", out)
  # The step's count scales with the pixels: 16.67 GFLOP at 64 px, batch 16 (docs/results.md,
  # "Speed on CPU and GPU", 2026-11-28), so ~0.13 at 16 px, batch 2; a count without the
  # convolutions is far below.
  assert 0.1 < flops < 0.16, out
  assert "MONAI skipped: --no_monai" in out


def test_benchmark_augment_runs_the_domain_transform_of_every_source():
  out = run_script("scripts/benchmark_augment.py", "--size", "16", "--batch", "2",
                   "--iters", "1", "--only", "domain_transform")
  for source in ("ct", "t1", "t2"):
    positive(rf"domain_transform_batch\(source={source}, prob=1\)\s+[\d.]+\s+[\d.]+\s+([\d.]+)",
             out)


def test_benchmark_cyclegan_preset_takes_an_explicit_dtype():
  out = run_script("scripts/benchmark_cyclegan.py", "--preset=cpu", "--dtype=bfloat16",
                   "--steps=1", "--warmup=1")
  assert "preset cpu" in out and "dtype bfloat16" in out, out
  positive(r"([\d.]+) steps/s", out)
