"""Benchmark (not a test): seconds per scan of `liverjax.predict`, compilation apart.

  python scripts/benchmark_predict.py                          # trains a small model first
  python scripts/benchmark_predict.py --workdir=workdir/real_ct_to_mr --repeats=5

Runs `liverjax.predict`'s own per-scan path (`predict.predict_paths`: read the scan,
preprocess, the jitted eval-mode U-Net in batches, resize to the native grid, largest 3D
component, write the NIfTI mask, DICOM-SEG, CHAOS PNGs and overlay) on the CHAOS CT sample
(`../shared/data/chaos_ct_sample`, DICOM) and one `real_dev` T2-SPIR volume (NIfTI), as
`--input` by default. For each scan it prints the first call's seconds and the XLA
compilation inside it (JAX's compile events: compile or persistent-cache load), then the
median seconds per scan of `--repeats` further calls, of which the logits
(`predict.predict_logits`: preprocessing, forward, resize) and the read alone.

Without `--workdir`, a model is trained first into a temporary folder: `--config`
(default `configs/real/ct_to_mr.py`, the real protocol at 64 px, depth 4) for `--steps`
steps, fields changed with `--set=section.field=value`. Its weights do not matter here,
only its architecture and image size; the scans are predicted as its config says
(test-time options of the checkpoint, `--adapt_bn` / `--intensity` override).
"""
import argparse
import ast
import importlib.util
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from liverjax import configs  # noqa: E402
from liverjax import runtime  # noqa: E402
from liverjax import predict  # noqa: E402
from liverjax.segmentation import train as train_lib  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DEFAULT_INPUTS = [str(SHARED / "chaos_ct_sample"),
                  str(SHARED / "real_dev" / "chaos_t2" / "imagesTr" / "chaos_t2_001_0000.nii.gz")]
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default=None, help="a trained U-Net workdir (default: train "
                 "one into a temporary folder)")
  p.add_argument("--config", default="configs/real/ct_to_mr.py",
                 help="config to train with when --workdir is not given (a path or name)")
  p.add_argument("--steps", type=int, default=20, help="training steps (without --workdir)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="config field to change before training, e.g. --set=model.depth=2 "
                      "(a Python literal, or a string)")
  p.add_argument("--input", action="append", default=None,
                 help="scan(s) as `liverjax.predict --input` takes them (repeat); default: "
                      "the CHAOS CT sample and one real_dev T2-SPIR volume")
  p.add_argument("--repeats", type=int, default=3, help="timed calls per scan after the first")
  p.add_argument("--batch_size", type=int, default=None,
                 help="slices per device call (default: the checkpoint's eval.batch_size)")
  p.add_argument("--adapt_bn", default="auto", choices=["auto", "on", "off"])
  p.add_argument("--intensity", default="auto", choices=["auto", "histogram_match", "none"])
  return p.parse_args()


def load_config(value: str, changes: list[str]):
  """The config of `--config` (path or installed name, `file.py:arg`) with `--set` applied."""
  path, _, arg = configs.resolve(value).partition(":")
  spec = importlib.util.spec_from_file_location("benchmark_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  for change in changes:
    field, _, text = change.partition("=")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *sections, name = field.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[name] = value
  return config


class CompileClock:
  """Seconds of XLA compilation (or persistent-cache loading) since `reset`, from JAX's
  compile events."""

  def __init__(self):
    self.seconds = 0.0
    jax.monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event, duration, **_):
    if event == COMPILE_EVENT:
      self.seconds += duration

  def reset(self) -> None:
    self.seconds = 0.0


def train_small_model(args, workdir: pathlib.Path) -> None:
  config = load_config(args.config, args.set)
  config.train.steps = args.steps
  config.train.log_every = config.train.eval_every = args.steps
  start = time.perf_counter()
  train_lib.train(config, workdir)
  print(f"trained {args.config} for {args.steps} steps in {time.perf_counter() - start:.1f} s "
        f"({config.data.image_size} px, depth {config.model.depth}, "
        f"{config.model.base_features} base features)")


def time_scan(model, path: str, args, out: pathlib.Path, clock: CompileClock) -> None:
  kw = dict(batch_size=args.batch_size, adapt_bn=args.adapt_bn, intensity=args.intensity)
  clock.reset()
  first = predict.predict_paths(model, [path], out / "first", **kw)[0]
  first_compile = clock.seconds
  clock.reset()
  whole, logits, read = [], [], []
  ref = predict.find_scans(path)[0]
  for i in range(args.repeats):
    whole.append(predict.predict_paths(model, [path], out / f"r{i}", **kw)[0]["seconds"])
    t = time.perf_counter()
    scan = predict.read_scan(ref)
    read.append(time.perf_counter() - t)
    t = time.perf_counter()
    predict.predict_logits(model, scan.volume, **kw)
    logits.append(time.perf_counter() - t)
  z, h, w = scan.volume.image.shape
  test_time = [name for name, on in (("histogram-matched", first["histogram_matched"]),
                                     ("AdaBN", first["adapted_batch_norm"])) if on]
  print(f"{first['name']} ({first['modality']}{', ' + ', '.join(test_time) if test_time else ''}"
        f"; {z} slices of {h}x{w}): first scan {first['seconds']:.2f} s (XLA compilation "
        f"{first_compile:.2f} s)")
  per_scan = statistics.median(whole)
  print(f"    then {per_scan:.2f} s per scan (median of {args.repeats}; "
        f"{per_scan / z * 1e3:.1f} ms/slice), of which logits {statistics.median(logits):.2f} s "
        f"and reading {statistics.median(read):.2f} s; compilation after the first: "
        f"{clock.seconds:.2f} s")


def main():
  args = parse_args()
  runtime.setup_process()
  inputs = args.input or DEFAULT_INPUTS
  missing = [p for p in inputs if not os.path.exists(p)]
  if missing:
    sys.exit(f"benchmark_predict.py: {missing[0]}: no such file or folder")
  clock = CompileClock()
  with tempfile.TemporaryDirectory(prefix="liverjax-benchmark-predict-") as tmp:
    workdir = pathlib.Path(args.workdir or pathlib.Path(tmp) / "model")
    if args.workdir is None:
      train_small_model(args, workdir)
    model = predict.load_model(workdir)
    print(f"jax {jax.__version__}: {jax.device_count()} x {jax.devices()[0].platform}; "
          f"checkpoint {model.checkpoint}: {model.config.data.image_size} px, depth "
          f"{model.config.model.depth}, eval batch {args.batch_size or model.config.eval.batch_size}"
          f"; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for k, path in enumerate(inputs):
      time_scan(model, path, args, pathlib.Path(tmp) / f"out{k}", clock)


if __name__ == "__main__":
  main()
