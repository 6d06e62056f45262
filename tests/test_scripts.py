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


def test_benchmark_vs_monai_inference_mode_times_the_forward_pass():
  out = run_script("scripts/benchmark_vs_monai.py", "--mode=inference", "--sizes=16",
                   "--batch=2", "--no_monai", "--rounds=1", "--steps=1", "--warmup=1")
  assert "inference: eval-mode forward, no gradient" in out, out
  positive(r"liverjax +([\d.]+) slices/s \([\d.]+ ms/batch", out)
  flops = positive(r"([\d.]+) GFLOP/batch", out)
  # About a third of the train step's count (0.13 GFLOP at 16 px, batch 2: above) or less
  # (the 1x1 and 2x2 levels of a 16 px input pad most of their 3x3 windows); a count
  # without the convolutions is far below.
  assert 0.02 < flops < 0.06, out


@pytest.mark.slow  # torch + MONAI import and the full-size networks: ~40 s of CPU
def test_benchmark_vs_monai_inference_mode_against_monai():
  pytest.importorskip("torch")
  pytest.importorskip("monai")
  out = run_script("scripts/benchmark_vs_monai.py", "--mode=inference", "--sizes=16",
                   "--batch=2", "--rounds=2", "--steps=1", "--warmup=1", "--threads=1")
  liverjax = positive(r"liverjax +([\d.]+) slices/s", out)
  monai = positive(r"MONAI +([\d.]+) slices/s", out)
  # Both sides of the same size (1.95 M parameters), and the ratio is the rates' quotient.
  assert re.search(r"liverjax .*\(.*ms/batch, 1\.9\d M params", out), out
  assert re.search(r"MONAI .*ms/batch, 1\.9\d M params", out), out
  ratio = positive(r"ratio liverjax / MONAI: ([\d.]+)x", out)
  assert ratio == pytest.approx(liverjax / monai, rel=0.01, abs=0.01), out


@pytest.mark.slow
def test_benchmark_predict_times_each_scan_and_its_compilation(tmp_path, ct_sample_root):
  t2 = ct_sample_root.parent / "real_dev" / "chaos_t2" / "imagesTr" / "chaos_t2_001_0000.nii.gz"
  if not t2.is_file():
    pytest.skip(f"real_dev T2 volume not found at {t2}")
  tiny = ["data.synthetic.ct=3", "data.synthetic.mr=3", "data.synthetic.size=32",
          "data.synthetic.slices=8", "data.image_size=32", "data.split=(0.34,0.33,0.33)",
          "model.depth=2", "model.base_features=4", "train.batch_size=8", "eval.batch_size=8",
          f"data.cache_dir={tmp_path}"]
  out = run_script("scripts/benchmark_predict.py", "--config=configs/ct_to_mri.py",
                   "--steps=2", "--repeats=1", *(f"--set={x}" for x in tiny),
                   f"--input={ct_sample_root}", f"--input={t2}", timeout=900)
  assert "trained configs/ct_to_mri.py for 2 steps" in out, out
  assert out.count("first scan") == 2 and "(CT;" in out and "(MR" in out, out
  positive(r"\(CT; \d+ slices of 512x512\): first scan ([\d.]+) s", out)
  positive(r"XLA compilation ([\d.]+) s", out)  # the first scan compiles the network
  for per_scan in re.findall(r"then ([\d.]+) s per scan", out):
    assert float(per_scan) > 0, out


@pytest.mark.slow
def test_benchmark_compile_cache_second_run_loads_from_the_cache(tmp_path):
  tiny = ["--config.data.synthetic.ct=3", "--config.data.synthetic.mr=3",
          "--config.data.synthetic.size=32", "--config.data.synthetic.slices=8",
          "--config.data.image_size=32", "--config.data.split=(0.34,0.33,0.33)",
          "--config.data.use_tf=False", "--config.model.depth=2",
          "--config.model.base_features=4", "--config.train.batch_size=8",
          "--config.train.steps=2", "--config.train.eval_every=2",
          "--config.eval.figure_slices=1", f"--config.data.cache_dir={tmp_path / 'data'}"]
  out = run_script("scripts/benchmark_compile_cache.py", "--runs=2",
                   f"--cache={tmp_path / 'jax_cache'}", "--", *tiny, timeout=900)
  first = re.search(r"run 1: .* over (\d+) programs \((\d+) from the cache\)", out)
  second = re.search(r"run 2: .* over (\d+) programs \((\d+) from the cache\)", out)
  assert first and second, out
  assert int(first.group(2)) == 0 and int(second.group(2)) > 0, out
  positive(r"run 1: [\d.]+ s wall; XLA compilation ([\d.]+) s", out)
  positive(r"run 1: .* train step compiled at ([\d.]+) s", out)


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
