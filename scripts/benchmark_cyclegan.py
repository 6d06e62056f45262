"""CycleGAN training-step throughput on the devices in hand.

  python scripts/benchmark_cyclegan.py --size=128 --batch=8 --features=32 --dtype=bfloat16

Builds G, F, D_A, D_B and the compiled, sharded `cg_state.cyclegan_step` for random
CT/MR batches already on the devices, warms up (compilation), then times `--steps` steps
(ending on `block_until_ready`). One step updates G+F and D_A+D_B on B CT and B MR slices.
Prints steps/s, image pairs/s (B per step) and images/s (2B per step).
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from liverjax.configs import default  # noqa: E402
from liverjax import runtime  # noqa: E402
from liverjax.cyclegan import state as cg_state  # noqa: E402
from liverjax.data import pipeline  # noqa: E402

_SIZE = flags.DEFINE_integer("size", 128, "Image side in pixels (divisible by 4).")
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch (CT and MR each), divisible by devices.")
_FEATURES = flags.DEFINE_integer("features", 32, "Generator features F.")
_BLOCKS = flags.DEFINE_integer("blocks", 6, "Generator residual blocks.")
_DISC_FEATURES = flags.DEFINE_integer("disc_features", 64, "Discriminator features.")
_DISC_LAYERS = flags.DEFINE_integer("disc_layers", 3, "Discriminator stride-2 layers.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_POOL = flags.DEFINE_integer("pool", 50, "Image pool size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps (the first compiles).")


def main(argv):
  del argv
  config = default.get_config()
  config.data.image_size = _SIZE.value
  cg = config.cyclegan
  cg.generator_features, cg.generator_blocks = _FEATURES.value, _BLOCKS.value
  cg.discriminator_features, cg.discriminator_layers = _DISC_FEATURES.value, _DISC_LAYERS.value
  cg.dtype, cg.pool_size, cg.batch_size = _DTYPE.value, _POOL.value, _BATCH.value
  mesh = runtime.create_mesh()
  pipeline.local_batch_size(_BATCH.value, mesh)  # checks divisibility
  graphs, state, txs = cg_state.create_cyclegan_state(config, mesh,
                                                             runtime.prng_key(config, 0))
  step_fn = cg_state.make_cyclegan_step(config, graphs, txs, mesh)
  rng = np.random.default_rng(0)
  shape = (_BATCH.value, _SIZE.value, _SIZE.value, 1)
  sharding = runtime.batch_sharding(mesh)
  ct = jax.device_put(rng.uniform(size=shape).astype(np.float32), sharding)
  mr = jax.device_put(rng.uniform(size=shape).astype(np.float32), sharding)
  lr = np.float32(cg.learning_rate)

  start = time.perf_counter()
  for i in range(max(_WARMUP.value, 1)):
    state, metrics = step_fn(state, ct, mr, runtime.prng_key(config, i), lr)
  jax.block_until_ready((state, metrics))
  warmup = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(_STEPS.value):
    state, metrics = step_fn(state, ct, mr, runtime.prng_key(config, 1000 + i), lr)
  jax.block_until_ready((state, metrics))
  seconds = time.perf_counter() - start
  rate = _STEPS.value / seconds
  device = jax.devices()[0]
  print(f"devices: {jax.device_count()} x {device.platform} ({device.device_kind}); "
        f"jax {jax.__version__}")
  print(f"CycleGAN step: size {_SIZE.value} batch {_BATCH.value} features {_FEATURES.value} "
        f"blocks {_BLOCKS.value} disc {_DISC_FEATURES.value}x{_DISC_LAYERS.value} "
        f"dtype {_DTYPE.value} pool {_POOL.value}")
  print(f"warm-up ({max(_WARMUP.value, 1)} steps, with compilation): {warmup:.1f} s")
  print(f"{rate:.2f} steps/s, {rate * _BATCH.value:.1f} image pairs/s, "
        f"{2 * rate * _BATCH.value:.1f} images/s ({_STEPS.value} steps in {seconds:.2f} s)")
  print(f"losses after the run: total_g {float(metrics['total_g']):.4f} "
        f"d_a {float(metrics['d_a']):.4f} d_b {float(metrics['d_b']):.4f}")


if __name__ == "__main__":
  app.run(main)
