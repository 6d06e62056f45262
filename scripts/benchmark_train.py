"""Benchmark (not a test): U-Net train-step and eval throughput on the devices in hand.

  python scripts/benchmark_train.py --size=256 --batch=64 --dtype=bfloat16 --augment=both
  python scripts/benchmark_train.py --size=64 --batch=16 --recipe=slaug
  python scripts/benchmark_train.py --size=64 --batch=16 --best=mr   # best_mr_to_ct's step

Prints slices/s of the jit-compiled, sharded train step (with the chosen
on-device augmentation), of that augmentation alone, and of the eval (predict)
step, timed after warm-up with `block_until_ready`. Random data: this measures
compute, not the input pipeline.
"""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from liverjax.configs import default  # noqa: E402
from liverjax.configs import real  # noqa: E402
from liverjax import runtime  # noqa: E402
from liverjax.augment import pipeline as augment_pipeline  # noqa: E402
from liverjax.segmentation import state as train  # noqa: E402


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
  p.add_argument("--size", type=int, default=128)
  p.add_argument("--batch", type=int, default=32, help="global batch")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--depth", type=int, default=4)
  p.add_argument("--features", type=int, default=16)
  p.add_argument("--norm", default="batch", choices=["batch", "group", "none"])
  p.add_argument("--augment", default="none", choices=["none", "augmix", "domain", "both"])
  p.add_argument("--recipe", default="none", choices=["none", "gin", "gin_ipa", "slaug"],
                 help="DG recipe in the step (configs/real RECIPES' augment fields; the "
                      "batch stays --batch)")
  p.add_argument("--best", default="none", choices=["none", "ct", "mr"],
                 help="the augmentation and source of configs/real/best_<source>_to_<other>.py "
                      "(an MR source runs the domain transform of its T2-SPIR slices)")
  p.add_argument("--steps", type=int, default=20, help="timed steps")
  p.add_argument("--warmup", type=int, default=3)
  return p.parse_args()


def main():
  args = parse_args()
  config = default.get_config()
  config.model.depth, config.model.base_features = args.depth, args.features
  config.model.norm, config.model.dtype = args.norm, args.dtype
  config.train.batch_size = args.batch
  config.augment.augmix = args.augment in ("augmix", "both")
  config.augment.domain = args.augment in ("domain", "both")
  if args.recipe != "none":
    config.augment.update(real.RECIPES[args.recipe]["augment"])
  if args.best != "none":
    config.augment = real.get_best_config(args.best).augment
    config.data.source = args.best
  mesh = runtime.create_mesh()
  rng = np.random.default_rng(0)
  images = rng.random((args.batch, args.size, args.size, 1), dtype=np.float32)
  masks = (images > 0.6).astype(np.float32)
  sharding = runtime.batch_sharding(mesh)
  organs = masks[..., 0].astype(np.int32) + (images[..., 0] > 0.3)  # three labels
  batch = {"image": jax.device_put(images, sharding), "mask": jax.device_put(masks, sharding),
           "organs": jax.device_put(organs.astype(np.int32), sharding)}
  if config.data.source == "mr":  # T2-SPIR slices, as the real MR source
    batch["is_t2"] = jax.device_put(np.ones(args.batch, np.float32), sharding)

  graphdef, state, tx = train.create_train_state(config, mesh, runtime.prng_key(config, 0))
  step_fn = train.make_train_step(config, graphdef, tx, mesh)
  t = time.perf_counter()
  state, metrics = step_fn(state, batch, runtime.prng_key(config, 0))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t
  for i in range(args.warmup):
    state, metrics = step_fn(state, batch, runtime.prng_key(config, i))
  jax.block_until_ready(metrics)
  t = time.perf_counter()
  for i in range(args.steps):
    state, metrics = step_fn(state, batch, runtime.prng_key(config, i))
  jax.block_until_ready(metrics)
  train_s = (time.perf_counter() - t) / args.steps

  # The augmentation alone, jitted as the step runs it (the same keys): its share of the step.
  aug_s = None
  augment_fn = train.make_augment_fn(config)
  if augment_fn is not None:
    aug_kwargs = {k: batch[k] for k in ("is_t2", "organs") if k in batch}
    aug = jax.jit(lambda key: augment_fn(key, batch["image"], batch["mask"], **aug_kwargs))
    jax.block_until_ready(aug(runtime.prng_key(config, 0)))
    t = time.perf_counter()
    for i in range(args.steps):
      out = aug(runtime.prng_key(config, i))
    jax.block_until_ready(out)
    aug_s = (time.perf_counter() - t) / args.steps

  predict = train.make_predict_fn(graphdef, mesh)
  out = predict(state, batch["image"], batch["mask"])
  jax.block_until_ready(out)
  t = time.perf_counter()
  for _ in range(args.steps):
    out = predict(state, batch["image"], batch["mask"])
  jax.block_until_ready(out)
  eval_s = (time.perf_counter() - t) / args.steps

  dev = jax.devices()[0]
  print(f"devices: {jax.device_count()} x {dev.platform} ({dev.device_kind}); jax {jax.__version__}")
  print(f"U-Net depth {args.depth}, base {args.features}, norm {args.norm}, dtype {args.dtype}; "
        f"size {args.size}, global batch {args.batch}, augmentation "
        f"{', '.join(augment_pipeline.active_switches(config.augment)) or 'none'} "
        f"(--augment={args.augment} --recipe={args.recipe} --best={args.best})")
  print(f"train step: {train_s * 1e3:.1f} ms/step, {args.batch / train_s:.1f} slices/s "
        f"(first call incl. compile {compile_s:.1f} s)")
  if aug_s is not None:
    print(f"augmentation alone: {aug_s * 1e3:.1f} ms/batch, {args.batch / aug_s:.1f} slices/s")
  print(f"eval step:  {eval_s * 1e3:.1f} ms/batch, {args.batch / eval_s:.1f} slices/s")


if __name__ == "__main__":
  main()
