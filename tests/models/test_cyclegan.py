"""Tests for liverjax/models/cyclegan.py (few channels and small images to stay fast)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from liverjax.models import cyclegan


def _uniform(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


def _generator_params(f, n_blocks):
  """ResnetGenerator parameter count from the layer list (IN scale+bias; no conv bias before IN)."""
  norm = lambda c: 2 * c  # noqa: E731
  total = 49 * 1 * f + norm(f)  # c7s1-F
  total += 9 * f * 2 * f + norm(2 * f) + 9 * 2 * f * 4 * f + norm(4 * f)  # d2F, d4F
  total += n_blocks * 2 * (9 * 4 * f * 4 * f + norm(4 * f))  # R4F
  total += 9 * 4 * f * 2 * f + norm(2 * f) + 9 * 2 * f * f + norm(f)  # u2F, uF
  return total + 49 * f * 1 + 1  # c7s1-1 with bias


def _discriminator_params(f, n_layers):
  total = 16 * 1 * f + f  # C(F), bias, no norm
  prev = f
  for n in range(1, n_layers + 1):
    cur = min(2**n, 8) * f
    total += 16 * prev * cur + 2 * cur
    prev = cur
  return total + 16 * prev + 1


@pytest.mark.parametrize("shape", [(2, 32, 32, 1), (1, 16, 24, 1)])
def test_generator_shape_and_range(shape):
  gen = cyclegan.ResnetGenerator(features=4, n_blocks=2, rngs=nnx.Rngs(0))
  x = _uniform(shape)
  y = gen(x)
  assert y.shape == shape and y.dtype == jnp.float32
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  assert float(y.std()) > 0  # not a constant map
  # Even inputs far outside [0,1] give outputs in [0,1].
  y_far = gen(100.0 * (x - 0.5))
  assert float(y_far.min()) >= 0.0 and float(y_far.max()) <= 1.0


def test_generator_bfloat16_compute():
  gen = cyclegan.ResnetGenerator(features=4, n_blocks=1, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(gen, nnx.Param)))
  y = gen(_uniform((1, 16, 16, 1)))
  assert y.dtype == jnp.float32 and y.shape == (1, 16, 16, 1)
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_generator_rejects_bad_sizes():
  gen = cyclegan.ResnetGenerator(features=4, n_blocks=0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="divisible by 4"):
    gen(jnp.zeros((1, 18, 16, 1)))
  with pytest.raises(ValueError, match=r"\[B,H,W,1\]"):
    gen(jnp.zeros((1, 16, 16, 3)))


@pytest.mark.parametrize("hw", [(8, 8), (6, 6), (3, 5)])
def test_up_conv_3x3_is_conv_transpose(hw):
  """The sub-pixel form equals nnx.ConvTranspose (3x3, stride 2, SAME), values and gradients."""
  cin, cout = 5, 3
  module = nnx.ConvTranspose(cin, cout, (3, 3), strides=(2, 2), padding="SAME",
                             rngs=nnx.Rngs(0))
  rng = np.random.default_rng(1)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
  kernel, bias = normal(3, 3, cin, cout), normal(cout)
  x = normal(2, *hw, cin)
  weights = normal(2, 2 * hw[0], 2 * hw[1], cout)

  graphdef, state = nnx.split(module)

  def reference(x, kernel, bias):
    nnx.replace_by_pure_dict(state, {"kernel": kernel, "bias": bias})
    return nnx.merge(graphdef, state)(x)

  def new(x, kernel, bias):
    return cyclegan.up_conv_3x3(x, kernel, bias, jnp.float32)

  expected = jax.jit(reference)(x, kernel, bias)
  got = jax.jit(new)(x, kernel, bias)
  assert got.shape == expected.shape == (2, 2 * hw[0], 2 * hw[1], cout)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
  # A weighted sum makes every output pixel matter to the gradients.
  loss = lambda f: lambda *a: jnp.sum(f(*a) * weights)  # noqa: E731
  grads_ref = jax.jit(jax.grad(loss(reference), argnums=(0, 1, 2)))(x, kernel, bias)
  grads_new = jax.jit(jax.grad(loss(new), argnums=(0, 1, 2)))(x, kernel, bias)
  for g_new, g_ref in zip(grads_new, grads_ref):
    assert float(jnp.abs(g_ref).max()) > 0
    np.testing.assert_allclose(np.asarray(g_new), np.asarray(g_ref), atol=1e-4, rtol=1e-5)
  # No bias, bfloat16 compute: the dtype follows `dtype`.
  y16 = cyclegan.up_conv_3x3(x, kernel, None, jnp.bfloat16)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), np.asarray(expected - bias),
                             atol=0.15)


def test_generator_params_and_output_unchanged_by_subpixel_up(monkeypatch):
  """The up-sampling modules keep their ConvTranspose params (same tree, same checkpoints), and
  the generator computes what it computed with nnx.ConvTranspose applied directly."""
  # eval_shape + random values: an eager nnx init of the generator takes ~8 s.
  gen = nnx.eval_shape(lambda: cyclegan.ResnetGenerator(features=4, n_blocks=1,
                                                        rngs=nnx.Rngs(0)))
  assert isinstance(gen.up1, nnx.ConvTranspose) and isinstance(gen.up2, nnx.ConvTranspose)
  graphdef, state = nnx.split(gen)
  flat = nnx.to_flat_state(state)
  shapes = {"/".join(map(str, path)): tuple(v.shape) for path, v in flat}
  conv = lambda i, o, k=3: {"kernel": (k, k, i, o)}  # noqa: E731
  norm = lambda c: {"scale": (c,), "bias": (c,)}  # noqa: E731
  expected = {"stem": conv(1, 4, 7), "stem_norm": norm(4), "down1": conv(4, 8),
              "down1_norm": norm(8), "down2": conv(8, 16), "down2_norm": norm(16),
              "blocks/0/conv1": conv(16, 16), "blocks/0/norm1": norm(16),
              "blocks/0/conv2": conv(16, 16), "blocks/0/norm2": norm(16),
              "up1": conv(16, 8), "up1_norm": norm(8), "up2": conv(8, 4), "up2_norm": norm(4),
              "out": {"kernel": (7, 7, 4, 1), "bias": (1,)}}
  assert shapes == {f"{layer}/{name}": shape for layer, params in expected.items()
                    for name, shape in params.items()}
  # Random values everywhere (scales around 1), so the comparison rests on no initialisation.
  # (numpy: eager jax.random compiles once per shape, ~0.5 s each.)
  rng = np.random.default_rng(5)
  nnx.replace_by_pure_dict(state, nnx.traversals.unflatten_mapping({
      path: jnp.asarray(0.1 * rng.normal(size=v.shape) + (path[-1] == "scale"), jnp.float32)
      for path, v in flat}))
  # A new function object per jit: jit caches traces per function, and the patch must retrace.
  apply = lambda: jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))  # noqa: E731
  x = _uniform((2, 16, 24, 1), seed=7)
  y = apply()(state, x)
  assert float(y.std()) > 0.05  # not saturated
  monkeypatch.setattr(cyclegan, "_up", lambda module, x: module(x))
  np.testing.assert_allclose(np.asarray(y), np.asarray(apply()(state, x)), atol=1e-5)


@pytest.mark.parametrize("n_layers,size,out", [(3, 64, 6), (2, 32, 6), (3, 128, 14)])
def test_discriminator_output_shape(n_layers, size, out):
  disc = cyclegan.PatchDiscriminator(features=4, n_layers=n_layers, rngs=nnx.Rngs(0))
  y = disc(_uniform((2, size, size, 1)))
  assert y.shape == (2, out, out, 1) and y.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(y)))


def test_discriminator_receptive_field_is_70(monkeypatch):
  """Without the (image-global) instance norm, one logit depends on a 70x70 input patch."""
  disc = cyclegan.PatchDiscriminator(features=4, n_layers=3, rngs=nnx.Rngs(0))
  assert disc.receptive_field == 70
  monkeypatch.setattr(cyclegan, "instance_norm", lambda x, scale, bias, eps: x)
  x = _uniform((1, 96, 96, 1))
  out = disc(x)
  assert out.shape == (1, 10, 10, 1)
  grad = jax.grad(lambda x: disc(x)[0, 5, 5, 0])(x)[0, :, :, 0]
  rows = np.nonzero(np.abs(np.asarray(grad)).sum(axis=1))[0]
  cols = np.nonzero(np.abs(np.asarray(grad)).sum(axis=0))[0]
  assert rows[-1] - rows[0] + 1 == 70 and cols[-1] - cols[0] + 1 == 70
  # Output (5,5) sees input rows 5*8 - 23 .. 5*8 - 23 + 69 (strides 8, total zero padding 23).
  assert (rows[0], cols[0]) == (17, 17)


def test_instance_norm_statistics():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 8, 6, 5)) * rng.uniform(0.5, 10, size=(3, 1, 1, 5)) + rng.uniform(
      -20, 20, size=(3, 1, 1, 5))
  x = jnp.asarray(x, jnp.float32)
  y = cyclegan.instance_norm(x)
  np.testing.assert_allclose(np.asarray(y.mean(axis=(1, 2))), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(y.var(axis=(1, 2))), 1.0, atol=1e-3)
  scale = jnp.arange(1.0, 6.0)
  bias = jnp.arange(-2.0, 3.0)
  z = cyclegan.instance_norm(x, scale, bias)
  np.testing.assert_allclose(np.asarray(z.mean(axis=(1, 2))), np.broadcast_to(bias, (3, 5)),
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(z.std(axis=(1, 2))), np.broadcast_to(scale, (3, 5)),
                             rtol=1e-3)
  # Per example: changing one example leaves the others' outputs unchanged.
  x2 = x.at[0].multiply(7.0).at[0].add(3.0)
  np.testing.assert_allclose(np.asarray(cyclegan.instance_norm(x2)[1:]), np.asarray(y[1:]))
  assert cyclegan.instance_norm(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
  # The module starts as the identity affine (scale 1, bias 0).
  module = cyclegan.InstanceNorm(5, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(np.asarray(module(x)), np.asarray(y), atol=1e-6)
  assert cyclegan.count_params(module) == 10


def test_param_counts_and_state():
  gen = nnx.eval_shape(lambda: cyclegan.ResnetGenerator(rngs=nnx.Rngs(0)))
  disc = nnx.eval_shape(lambda: cyclegan.PatchDiscriminator(rngs=nnx.Rngs(0)))
  assert cyclegan.count_params(gen) == _generator_params(32, 6) == 1_960_641
  assert cyclegan.count_params(disc) == _discriminator_params(32, 3) == 693_665
  # The paper's sizes (F=64, 9 blocks; 64-channel discriminator): ~11.4M and ~2.8M, close to
  # the reference implementation's 11.378M / 2.765M (RGB, non-affine IN with conv biases).
  gen64 = nnx.eval_shape(
      lambda: cyclegan.ResnetGenerator(features=64, n_blocks=9, rngs=nnx.Rngs(0)))
  disc64 = nnx.eval_shape(lambda: cyclegan.PatchDiscriminator(features=64, rngs=nnx.Rngs(0)))
  assert abs(cyclegan.count_params(gen64) - 11_378_000) < 20_000
  assert abs(cyclegan.count_params(disc64) - 2_765_000) < 5_000
  # No mutable state besides parameters.
  for model in (gen, disc):
    variables = jax.tree.leaves(nnx.state(model), is_leaf=lambda v: isinstance(v, nnx.Variable))
    assert variables and all(isinstance(v, nnx.Param) for v in variables)


def test_cycle_gradients_are_finite():
  """One jitted CycleGAN-style loss through G_ab, G_ba and D_b gives finite, nonzero grads."""
  g_ab = cyclegan.ResnetGenerator(features=4, n_blocks=1, rngs=nnx.Rngs(0))
  g_ba = cyclegan.ResnetGenerator(features=4, n_blocks=1, rngs=nnx.Rngs(1))
  d_b = cyclegan.PatchDiscriminator(features=4, n_layers=2, rngs=nnx.Rngs(2))
  graphdef, params = nnx.split((g_ab, g_ba, d_b), nnx.Param)
  x = _uniform((2, 32, 32, 1))

  @jax.jit
  def loss_and_grads(params):
    def loss_fn(params):
      ga, gb, db = nnx.merge(graphdef, params)
      fake = ga(x)
      adv = jnp.mean((db(fake) - 1.0)**2)  # LSGAN generator loss
      cycle = jnp.mean(jnp.abs(gb(fake) - x))
      return adv + 10.0 * cycle
    return jax.value_and_grad(loss_fn)(params)

  loss, grads = loss_and_grads(params)
  assert np.isfinite(float(loss))
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  # Every sub-network receives gradient.
  for i in range(3):
    sub = grads[i]
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(sub)) > 0


def test_batch_sharded_over_devices_matches_unsharded():
  """Both nets run on a batch split over the data mesh (explicit sharding) with equal results."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  n = jax.device_count()
  gen = cyclegan.ResnetGenerator(features=4, n_blocks=1, rngs=nnx.Rngs(0))
  disc = cyclegan.PatchDiscriminator(features=4, n_layers=2, rngs=nnx.Rngs(1))
  graphdef, params = nnx.split((gen, disc), nnx.Param)

  @jax.jit
  def apply(params, x):
    g, d = nnx.merge(graphdef, params)
    fake = g(x)
    return fake, d(fake)

  x = _uniform((n, 16, 16, 1), seed=3)
  mesh = jax.make_mesh((n,), ("data",))
  fake_s, logits_s = apply(jax.device_put(params, NamedSharding(mesh, P())),
                           jax.device_put(x, NamedSharding(mesh, P("data"))))
  fake, logits = apply(params, x)
  np.testing.assert_allclose(np.asarray(fake_s), np.asarray(fake), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(logits_s), np.asarray(logits), rtol=1e-4, atol=1e-5)


def test_unet_generator_shape_range_and_no_batch_statistics():
  gen = cyclegan.UNetGenerator(features=4, depth=2, rngs=nnx.Rngs(0))
  x = _uniform((3, 16, 16, 1))
  y = gen(x)
  assert y.shape == x.shape and y.dtype == jnp.float32
  assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0 and float(y.std()) > 0
  # Group norm, no batch statistics: a slice translates alike whatever shares its batch.
  np.testing.assert_allclose(gen(x[:1]), y[:1], atol=1e-5)
  assert not jax.tree.leaves(nnx.state(gen, nnx.BatchStat))
