"""Benchmark (not a test): the liverjax U-Net against MONAI's BasicUNet, side by side.

  pip install -e ".[bench]"          # torch + monai: an optional extra, never a core dependency
  python scripts/benchmark_vs_monai.py --sizes=64,128 --batch=16                 # train step
  python scripts/benchmark_vs_monai.py --mode=inference --sizes=64,128,256 --batch=16

`--mode=train` (the default) times one optimizer step; `--mode=inference` one evaluation-mode
forward pass without gradients: on the liverjax side the jitted logits function that
`liverjax.predict` runs (`segmentation.state.make_logits_fn`: running batch-norm averages,
folded into the convolutions), on MONAI's `net.eval()` under `torch.inference_mode()`.

Same work on both sides: a 2D U-Net of ~1.95 M parameters (liverjax depth 4, base 16, batch
norm; MONAI `BasicUNet(features=(16, 32, 64, 128, 256, 16), norm="batch")`), Adam at 1e-3,
a Dice + cross-entropy loss (liverjax: Dice + BCE + Jaccard; MONAI: `DiceCELoss(sigmoid=True)`),
float32, the same random slices already on the device, batch `--batch` (inference: the same
networks and slices, no loss, no optimizer). Each side is warmed
up, then timed in alternating rounds (liverjax, MONAI, liverjax, MONAI, ...) so that both see
the same machine load; no host synchronisation inside a round (one `block_until_ready` /
`torch.cuda.synchronize` at its end). Prints the median slices/s of each side, the ratio
liverjax / MONAI, the liverjax step's (or forward pass's) FLOPs and bytes accessed (XLA `cost_analysis`), the
achieved FLOP/s and bytes/s, and on an accelerator the MFU against the device's peak. Without
torch or MONAI it times liverjax alone and says so.

Run it on a quiet machine: when other jobs hold the cores, torch's OpenMP threads spin and
MONAI slows far more than XLA (on a shared 2-core CPU its step took ~0.5 s with `--threads=1`
and 1.5-2.4 s with 2), which flatters the ratio.
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# torch and MONAI before liverjax: importing torch's triton after TensorFlow (which the
# input pipeline loads) crashes the interpreter.
try:
  import torch  # noqa: E402
  import torch._dynamo  # noqa: E402,F401  (torch.optim loads it lazily; load it first)
  from monai.losses import DiceCELoss  # noqa: E402
  from monai.networks.nets import BasicUNet  # noqa: E402
  TORCH_ERROR = ""
except ImportError as e:
  torch = None
  TORCH_ERROR = f"torch/MONAI not installed ({e}); pip install -e '.[bench]'"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from liverjax import runtime  # noqa: E402
from liverjax.configs import default  # noqa: E402
from liverjax.segmentation import state as train  # noqa: E402

# Dense peak FLOP/s by device kind (substring of `device_kind`) and dtype: vendor data sheets
# (SXM parts, no sparsity). On NVIDIA GPUs float32 is the TF32 tensor-core rate: XLA's default
# precision runs float32 convolutions and matmuls in TF32 there, as torch runs its cuDNN
# convolutions by default.
PEAK_FLOPS = {
    "H200": {"float32": 495e12, "bfloat16": 989e12},
    "H100": {"float32": 495e12, "bfloat16": 989e12},
    "A100": {"float32": 156e12, "bfloat16": 312e12},
    "L4": {"float32": 60e12, "bfloat16": 121e12},
    "TPU v4": {"float32": 275e12, "bfloat16": 275e12},
    "TPU v5 lite": {"float32": 197e12, "bfloat16": 197e12},
}


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--mode", default="train", choices=["train", "inference"],
                 help="train: one optimizer step; inference: one eval-mode forward pass")
  p.add_argument("--sizes", default="64,128", help="comma-separated image sides")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                 help="liverjax compute dtype (MONAI runs float32, or autocast bf16)")
  p.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per side")
  p.add_argument("--steps", type=int, default=10, help="steps (inference: batches) per round")
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
  p.add_argument("--no_monai", action="store_true", help="time liverjax alone")
  return p.parse_args()


def peak_flops(device, dtype: str) -> float | None:
  """The device's dense peak FLOP/s for `dtype`, or None (CPU, unknown device)."""
  for kind, peaks in PEAK_FLOPS.items():
    if kind.lower() in device.device_kind.lower():
      return peaks[dtype]
  return None


def random_slices(size: int, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """f32[B,size,size,1] images in [0,1] and {0,1} masks (the same for both sides)."""
  rng = np.random.default_rng(seed)
  images = rng.random((batch, size, size, 1), dtype=np.float32)
  return images, (images > 0.6).astype(np.float32)


def _first(cost):
  """A `cost_analysis()` result as one dict (older JAX returns a list of one)."""
  return cost[0] if isinstance(cost, (list, tuple)) else cost


def _unet_config(args):
  config = default.get_config()
  config.model.depth, config.model.base_features, config.model.norm = 4, 16, "batch"
  config.model.dtype = args.dtype
  config.train.batch_size = args.batch
  return config


def make_liverjax(size: int, args):
  """Returns (run(n) -> None that runs n steps (inference: n forward passes) and waits,
  FLOPs per step, bytes accessed per step (both XLA `cost_analysis`), param count)."""
  config = _unet_config(args)
  mesh = runtime.create_mesh()
  images, masks = random_slices(size, args.batch)
  sharding = runtime.batch_sharding(mesh)
  batch = {"image": jax.device_put(images, sharding), "mask": jax.device_put(masks, sharding)}
  graphdef, state, tx = train.create_train_state(config, mesh, runtime.prng_key(config, 0))
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  key = runtime.prng_key(config, 0)
  if args.mode == "inference":
    lowered = train.make_logits_fn(graphdef, mesh).lower(state, batch["image"])
  else:
    lowered = train.make_train_step(config, graphdef, tx, mesh).lower(state, batch, key)
  compiled = lowered.compile()
  # FLOPs of the step as written (before XLA's optimisations, so the same on every backend:
  # the compiled module's count leaves out library calls, e.g. cuDNN's convolutions on a GPU,
  # which made it 16-25x too low there). Bytes after fusion, where they are all counted: on a CPU.
  flops = float(_first(lowered.cost_analysis()).get("flops", 0.0))
  bytes_accessed = 0.0
  if jax.devices()[0].platform == "cpu":
    bytes_accessed = float(_first(compiled.cost_analysis()).get("bytes accessed", 0.0))
  holder = {"state": state}

  def run_train(n: int) -> None:
    state, metrics = holder["state"], None
    for _ in range(n):
      state, metrics = compiled(state, batch, key)
    jax.block_until_ready(metrics)
    holder["state"] = state

  def run_inference(n: int) -> None:
    logits = None
    for _ in range(n):
      logits = compiled(state, batch["image"])
    jax.block_until_ready(logits)

  return (run_inference if args.mode == "inference" else run_train), flops, bytes_accessed, \
      n_params


def make_monai(size: int, args):
  """Returns (run(n), param count, torch device name) for MONAI's BasicUNet."""
  torch.set_num_threads(args.threads)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  # MONAI at its best on a GPU: cuDNN picks the fastest algorithm per shape (as XLA's autotuner
  # does), TF32 convolutions as torch's default (XLA's default f32 precision on GPU is TF32 too).
  torch.backends.cudnn.benchmark = device.type == "cuda"
  torch.manual_seed(0)
  net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1,
                  features=(16, 32, 64, 128, 256, 16), norm="batch").to(device)
  n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
  loss_fn = DiceCELoss(sigmoid=True)
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  images, masks = random_slices(size, args.batch)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
  y = torch.from_numpy(masks).permute(0, 3, 1, 2).contiguous().to(device)
  autocast = args.dtype == "bfloat16"

  def run_inference(n: int) -> None:
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=autocast):
      for _ in range(n):
        net(x)
    if device.type == "cuda":
      torch.cuda.synchronize()

  if args.mode == "inference":
    net.eval()
    return run_inference, n_params, str(device)
  net.train()

  def run(n: int) -> None:
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = loss_fn(net(x), y)
      loss.backward()
      opt.step()
    if device.type == "cuda":
      torch.cuda.synchronize()

  return run, n_params, str(device)


def timed(run, steps: int) -> float:
  """Seconds per step of `run(steps)`."""
  start = time.perf_counter()
  run(steps)
  return (time.perf_counter() - start) / steps


def benchmark_size(size: int, args) -> dict:
  """Warms up both sides, times them in alternating rounds; returns the figures."""
  jax_run, flops, bytes_accessed, jax_params = make_liverjax(size, args)
  monai_run, why_not = None, "--no_monai" if args.no_monai else TORCH_ERROR
  if not why_not:
    monai_run, monai_params, torch_device = make_monai(size, args)
  jax_run(args.warmup)
  if monai_run:
    monai_run(args.warmup)
  jax_t, monai_t = [], []
  for _ in range(args.rounds):
    jax_t.append(timed(jax_run, args.steps))
    if monai_run:
      monai_t.append(timed(monai_run, args.steps))
  out = {"size": size, "jax_s": statistics.median(jax_t), "jax_rounds": jax_t,
         "flops": flops, "bytes": bytes_accessed, "jax_params": jax_params,
         "why_not": why_not}
  if monai_run:
    out.update(monai_s=statistics.median(monai_t), monai_rounds=monai_t,
               monai_params=monai_params, torch_device=torch_device)
  return out


def _load() -> str:
  """The machine's 1, 5 and 15 minute load averages (other jobs skew both sides' figures)."""
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
  args = parse_args()
  dev = jax.devices()[0]
  peak = peak_flops(dev, args.dtype)
  unit = "batch" if args.mode == "inference" else "step"
  what = ("eval-mode forward, no gradient" if args.mode == "inference"
          else "train step (forward, backward, Adam)")
  units = "batches" if unit == "batch" else "steps"
  print(f"jax {jax.__version__}: {jax.device_count()} x {dev.platform} ({dev.device_kind}); "
        f"{args.mode}: {what}; batch {args.batch}, dtype {args.dtype}, {args.rounds} "
        f"alternating rounds of {args.steps} {units}; load average {_load()}")
  for size in (int(s) for s in args.sizes.split(",")):
    r = benchmark_size(size, args)
    rate = args.batch / r["jax_s"]
    line = (f"{size:4d} px  liverjax {rate:7.1f} slices/s ({r['jax_s'] * 1e3:.1f} ms/{unit}, "
            f"{r['jax_params'] / 1e6:.2f} M params, {r['flops'] / 1e9:.2f} GFLOP/{unit}, "
            f"{r['flops'] / r['jax_s'] / 1e9:.1f} GFLOP/s")
    if peak:
      line += f", MFU {r['flops'] / r['jax_s'] / peak:.1%} of {peak / 1e12:.0f} TFLOP/s"
    print(line + ")")
    if r["bytes"]:
      print(f"          {r['bytes'] / 1e9:.2f} GB accessed/{unit} (XLA's count, before caching): "
            f"{r['bytes'] / r['jax_s'] / 1e9:.0f} GB/s, {r['flops'] / r['bytes']:.1f} FLOP/byte")
    print(f"          rounds (ms): {[round(t * 1e3, 1) for t in r['jax_rounds']]}")
    if "monai_s" in r:
      mrate = args.batch / r["monai_s"]
      print(f"          MONAI    {mrate:7.1f} slices/s ({r['monai_s'] * 1e3:.1f} ms/{unit}, "
            f"{r['monai_params'] / 1e6:.2f} M params; torch {torch.__version__} on "
            f"{r['torch_device']}, {torch.get_num_threads()} threads)")
      print(f"          rounds (ms): {[round(t * 1e3, 1) for t in r['monai_rounds']]}")
      print(f"          ratio liverjax / MONAI: {rate / mrate:.2f}x")
    else:
      print(f"          MONAI skipped: {r['why_not']}")
  print(f"load average at the end: {_load()}")


if __name__ == "__main__":
  main()
