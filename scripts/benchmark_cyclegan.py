"""CycleGAN training-step throughput on the devices in hand.

  python scripts/benchmark_cyclegan.py --size=128 --batch=8 --features=32 --dtype=bfloat16
  python scripts/benchmark_cyclegan.py --preset=cpu --compare --layers --rounds=5

Builds G, F, D_A, D_B and the compiled, sharded `cg_state.cyclegan_step` for random
CT/MR batches already on the devices, warms up (compilation), then times `--steps` steps
(ending on `block_until_ready`). One step updates G+F and D_A+D_B on B CT and B MR slices.
Prints steps/s, image pairs/s (B per step) and images/s (2B per step).

`--preset=cpu|default` takes the sizes from `configs/cyclegan.py:<preset>` instead of the flags
(an explicit `--dtype` still applies).
`--compare` times the step with the generator's up-sampling as it is (sub-pixel convolutions,
`cyclegan.up_conv_3x3`) against `nnx.ConvTranspose` applied directly (as it was), alternating
the two in `--rounds` rounds of `--steps` steps, and prints the medians. `--layers` times the two
up-sampling layers alone (fwd+bwd wrt input and kernel), old against new (and against the
one-conv 2x2 sub-pixel form, `up_2x2_form`), alternating likewise.
On a shared machine only such same-process alternating figures compare; the load average is
printed with them.
"""
import contextlib
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from flax import nnx  # noqa: E402

from liverjax.configs import cyclegan as cyclegan_config  # noqa: E402
from liverjax.configs import default  # noqa: E402
from liverjax import runtime  # noqa: E402
from liverjax.cyclegan import state as cg_state  # noqa: E402
from liverjax.data import pipeline  # noqa: E402
from liverjax.models import cyclegan as cg_models  # noqa: E402

_PRESET = flags.DEFINE_enum("preset", "", ["", "cpu", "default"],
                            "Sizes from configs/cyclegan.py:<preset> (else from the flags).")
_SIZE = flags.DEFINE_integer("size", 128, "Image side in pixels (divisible by 4).")
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch (CT and MR each), divisible by devices.")
_FEATURES = flags.DEFINE_integer("features", 32, "Generator features F.")
_BLOCKS = flags.DEFINE_integer("blocks", 6, "Generator residual blocks.")
_DISC_FEATURES = flags.DEFINE_integer("disc_features", 64, "Discriminator features.")
_DISC_LAYERS = flags.DEFINE_integer("disc_layers", 3, "Discriminator stride-2 layers.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_POOL = flags.DEFINE_integer("pool", 50, "Image pool size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps (per variant and round with --compare).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps (the first compiles).")
_COMPARE = flags.DEFINE_bool("compare", False,
                             "Alternate the step with sub-pixel and ConvTranspose up-sampling.")
_LAYERS = flags.DEFINE_bool("layers", False,
                            "Time the two up-sampling layers fwd+bwd, old against new.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds for --compare and --layers.")
_LAYER_ITERS = flags.DEFINE_integer("layer_iters", 10, "Layer calls timed per variant and round.")

# The two ways of applying the generator's up-sampling modules (3x3 stride-2 SAME ConvTranspose).
UP_VARIANTS = {"sub-pixel": cg_models._up,  # pylint: disable=protected-access
               "ConvTranspose": lambda module, x: module(x)}


def up_2x2_form(module: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
  """The other sub-pixel form, timed by --layers only: one 2x2-window conv of x zero-padded by
  (1, 0) to 4*Cout channels (the zero taps included: 16 instead of 9 multiply-adds per input
  pixel), then depth-to-space. Same function as `cg_models.up_conv_3x3` (no bias)."""
  k = jnp.pad(module.kernel[...].astype(module.dtype), ((0, 1), (0, 1), (0, 0), (0, 0)))
  taps = np.array([[0, 2], [3, 1]])  # [parity, window offset] -> kernel tap (3: zero)
  cin, cout = k.shape[2:]
  w = jnp.transpose(k[taps][:, :, taps], (1, 3, 4, 0, 2, 5)).reshape(2, 2, cin, 4 * cout)
  y = jax.lax.conv_general_dilated(x.astype(module.dtype), w, (1, 1), ((1, 0), (1, 0)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  n, h, wd, _ = y.shape
  y = jnp.transpose(y.reshape(n, h, wd, 2, 2, cout), (0, 1, 3, 2, 4, 5))
  return y.reshape(n, 2 * h, 2 * wd, cout)


def _config():
  """The benchmarked config: a preset of configs/cyclegan.py, or the default with the flags."""
  if _PRESET.value:
    config = cyclegan_config.get_config(_PRESET.value)
    if flags.FLAGS["dtype"].present:  # --preset=default --dtype=bfloat16: the preset in bf16
      config.cyclegan.dtype = _DTYPE.value
    return config
  config = default.get_config()
  config.data.image_size = _SIZE.value
  cg = config.cyclegan
  cg.generator_features, cg.generator_blocks = _FEATURES.value, _BLOCKS.value
  cg.discriminator_features, cg.discriminator_layers = _DISC_FEATURES.value, _DISC_LAYERS.value
  cg.dtype, cg.pool_size, cg.batch_size = _DTYPE.value, _POOL.value, _BATCH.value
  return config


@contextlib.contextmanager
def _up_variant(name: str):
  """Makes the generator apply its up-sampling modules the `name` way while tracing."""
  saved = cg_models._up  # pylint: disable=protected-access
  cg_models._up = UP_VARIANTS[name]  # pylint: disable=protected-access
  try:
    yield
  finally:
    cg_models._up = saved  # pylint: disable=protected-access


def _load() -> str:
  """The 1 / 5 / 15 min load averages, as text."""
  return "load average " + " / ".join(f"{v:.1f}" for v in os.getloadavg())


def _timed(fn, n: int) -> float:
  """Seconds per call of `fn` (which returns something to block on), over n calls."""
  start = time.perf_counter()
  out = None
  for _ in range(n):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / n


def _alternate(fns: dict, n: int, rounds: int) -> dict[str, list[float]]:
  """Times every fn of `fns` n calls per round, the order reversed every other round."""
  names = list(fns)
  times = {name: [] for name in names}
  for r in range(rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      times[name].append(_timed(fns[name], n))
  return times


def _speedup(times: dict[str, list[float]], name: str) -> float:
  """The median over rounds of ConvTranspose time / `name` time in the same round (paired: the
  load of a shared machine changes between rounds more than within one)."""
  return statistics.median(old / new for old, new in zip(times["ConvTranspose"], times[name]))


def _report(label: str, times: dict[str, list[float]]) -> None:
  """Prints the median (and every round) of each variant in ms, and its paired speed-up."""
  for name, ts in times.items():
    rounds = ", ".join(f"{1e3 * t:.1f}" for t in ts)
    print(f"  {label} {name:>13}: median {1e3 * statistics.median(ts):.1f} ms ({rounds}); "
          f"{_speedup(times, name):.2f}x vs ConvTranspose")


def benchmark_layers(config) -> None:
  """Times the generator's two up-sampling layers fwd+bwd (grads wrt input and kernel)."""
  cg = config.cyclegan
  f, size, batch = cg.generator_features, config.data.image_size, cg.batch_size
  dtype = cg_state._dtype(cg.dtype)  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  for layer, cin, cout, side in (("up1", 4 * f, 2 * f, size // 4), ("up2", 2 * f, f, size // 2)):
    module = nnx.ConvTranspose(cin, cout, (3, 3), strides=(2, 2), padding="SAME",
                                         use_bias=False, dtype=dtype, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(module)
    x = jnp.asarray(rng.normal(size=(batch, side, side, cin)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(batch, 2 * side, 2 * side, cout)), jnp.float32)
    fns = {}
    for name, up in {**UP_VARIANTS, "2x2 form": up_2x2_form}.items():
      def loss(params, x, up=up):
        y = up(nnx.merge(graphdef, params), x).astype(jnp.float32)
        return jnp.sum(y * cot)
      grad = jax.jit(jax.grad(loss, argnums=(0, 1)),
                     compiler_options=runtime.compiler_options())
      jax.block_until_ready(grad(params, x))
      fns[name] = lambda grad=grad: grad(params, x)
    times = _alternate(fns, _LAYER_ITERS.value, _ROUNDS.value)
    print(f"{layer}: {cin}->{cout} channels, {side} -> {2 * side} px, batch {batch}, "
          f"fwd+bwd ({_load()}):")
    _report(layer, times)


def main(argv):
  del argv
  config = _config()
  cg = config.cyclegan
  size, batch = config.data.image_size, cg.batch_size
  mesh = runtime.create_mesh()
  pipeline.local_batch_size(batch, mesh)  # checks divisibility
  device = jax.devices()[0]
  print(f"devices: {jax.device_count()} x {device.platform} ({device.device_kind}); "
        f"jax {jax.__version__}; {_load()}")
  print(f"CycleGAN step: size {size} batch {batch} features {cg.generator_features} "
        f"blocks {cg.generator_blocks} disc {cg.discriminator_features}x"
        f"{cg.discriminator_layers} dtype {cg.dtype} pool {cg.pool_size}"
        f"{f' (preset {_PRESET.value})' if _PRESET.value else ''}")
  if _LAYERS.value:
    benchmark_layers(config)

  graphs, state, txs = cg_state.create_cyclegan_state(config, mesh, runtime.prng_key(config, 0))
  rng = np.random.default_rng(0)
  shape = (batch, size, size, 1)
  sharding = runtime.batch_sharding(mesh)
  ct = jax.device_put(rng.uniform(size=shape).astype(np.float32), sharding)
  mr = jax.device_put(rng.uniform(size=shape).astype(np.float32), sharding)
  lr = np.float32(cg.learning_rate)
  variants = list(UP_VARIANTS) if _COMPARE.value else ["sub-pixel"]
  steps, states, warmups = {}, {}, {}
  for name in variants:
    # A fresh jit per variant (the cached one would reuse its trace), traced under the variant.
    step_fn = cg_state._compiled_step.__wrapped__(  # pylint: disable=protected-access
        graphs, *txs, (float(cg.lambda_cycle), float(cg.lambda_identity),
                       float(cg.lambda_structure)), mesh)
    start = time.perf_counter()
    with _up_variant(name):
      steps[name] = step_fn.lower(state, ct, mr, runtime.prng_key(config, 0), lr).compile()
    st = jax.tree.map(jnp.copy, state)  # each variant donates its own state
    for i in range(max(_WARMUP.value, 1)):
      st, metrics = steps[name](st, ct, mr, runtime.prng_key(config, i), lr)
    jax.block_until_ready((st, metrics))
    states[name], warmups[name] = st, time.perf_counter() - start
    dilated = steps[name].as_text().count("lhs_dilate=")  # the transposed convs, fwd or bwd
    print(f"{name}: warm-up ({max(_WARMUP.value, 1)} steps, with compilation): "
          f"{warmups[name]:.1f} s; {dilated} lhs-dilated convolutions in the step")
  del state

  counter = iter(range(1000, 10**9))

  def run(name):
    def call():
      states[name], metrics = steps[name](states[name], ct, mr,
                                          runtime.prng_key(config, next(counter)), lr)
      return metrics
    return call

  times = _alternate({name: run(name) for name in variants}, _STEPS.value,
                     _ROUNDS.value if _COMPARE.value else 1)
  print(f"step ({_STEPS.value} steps x {len(times[variants[0]])} rounds per variant, {_load()}):")
  for name, ts in times.items():
    rate = 1.0 / statistics.median(ts)
    print(f"  {name:>13}: {rate:.3f} steps/s, {rate * batch:.1f} image pairs/s, "
          f"{2 * rate * batch:.1f} images/s (median {1e3 / rate:.0f} ms/step; rounds "
          f"{', '.join(f'{1e3 * t:.0f}' for t in ts)} ms)")
  if _COMPARE.value:
    print(f"  sub-pixel vs ConvTranspose: {_speedup(times, 'sub-pixel'):.2f}x (median of the "
          f"per-round ratios)")
  metrics = jax.device_get(run(variants[0])())
  print(f"losses after the run: total_g {float(metrics['total_g']):.4f} "
        f"d_a {float(metrics['d_a']):.4f} d_b {float(metrics['d_b']):.4f}")


if __name__ == "__main__":
  app.run(main)
