"""Tests for liverjax/models/unet.py (tiny models and 16x16 / 32x32 images to stay fast)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from liverjax.configs import default as default_config
from liverjax.models import unet as unet_lib


def _images(batch=2, size=32, seed=0):
  """A batch f32[B,size,size,1] in [0,1]: noise plus a bright disk, and the disk as target."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  masks, images = [], []
  for _ in range(batch):
    cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
    r = rng.uniform(size * 0.15, size * 0.3)
    m = ((yy - cy)**2 + (xx - cx)**2 < r * r).astype(np.float32)
    images.append(np.clip(0.3 + 0.4 * m + 0.1 * rng.standard_normal((size, size)), 0, 1))
    masks.append(m)
  return (jnp.asarray(np.stack(images)[..., None], jnp.float32),
          jnp.asarray(np.stack(masks)[..., None], jnp.float32))


def _expected_params(depth, base, norm):
  """Trainable parameter count of a UNet, from the architecture description."""
  feats = [base * 2**i for i in range(depth + 1)]

  def conv_block(cin, cout):  # 3x3 conv (+ bias without norm) + norm scale/bias
    return 9 * cin * cout + (cout if norm == "none" else 2 * cout)

  def stage(cin, cout):
    return conv_block(cin, cout) + conv_block(cout, cout)

  total = sum(stage(1 if i == 0 else feats[i - 1], feats[i]) for i in range(depth))
  total += stage(feats[depth - 1], feats[depth])
  for i in range(depth):
    total += 4 * feats[i + 1] * feats[i] + feats[i]  # 2x2 transposed conv + bias
    total += stage(2 * feats[i], feats[i])
  return total + feats[0] + 1  # 1x1 head


# Few distinct widths: on a loaded CPU every new parameter shape costs a compile of its
# random initialiser, so the tests below reuse these layer shapes.
@pytest.mark.parametrize("depth,base,norm", [(1, 4, "batch"), (2, 4, "group"), (3, 2, "none")])
def test_output_shape_dtype_and_param_count(depth, base, norm):
  model = unet_lib.UNet(depth=depth, base_features=base, norm=norm, rngs=nnx.Rngs(0))
  x, _ = _images(batch=2, size=16)
  for train in (True, False):
    y = model(x, train=train)
    assert y.shape == (2, 16, 16, 1)
    assert y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y)))
  assert unet_lib.count_params(model) == _expected_params(depth, base, norm)
  has_stats = bool(jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
  assert has_stats == (norm == "batch")


def test_default_unet_param_count():
  model = nnx.eval_shape(lambda: unet_lib.UNet(depth=4, base_features=16, rngs=nnx.Rngs(0)))
  n = unet_lib.count_params(model)
  assert n == _expected_params(4, 16, "batch") == 1_942_289
  # All parameters float32.
  assert {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}


def test_bfloat16_compute_keeps_f32_params_and_output_and_matches_f32():
  kw = dict(depth=2, base_features=4, norm="group")
  m32 = unet_lib.UNet(dtype=jnp.float32, rngs=nnx.Rngs(3), **kw)
  m16 = unet_lib.UNet(dtype=jnp.bfloat16, rngs=nnx.Rngs(3), **kw)
  params = jax.tree.leaves(nnx.state(m16, nnx.Param))
  assert all(p.dtype == jnp.float32 for p in params)
  x, _ = _images(batch=2, size=16)
  y16 = m16(x, train=False)
  y32 = m32(x, train=False)
  assert y16.dtype == jnp.float32 and y16.shape == (2, 16, 16, 1)
  # Same initialisation, so bf16 compute only adds rounding noise.
  corr = np.corrcoef(np.asarray(y16).ravel(), np.asarray(y32).ravel())[0, 1]
  assert corr > 0.99
  assert float(jnp.max(jnp.abs(y16 - y32))) < 0.1 * float(jnp.std(y32)) + 0.05
  # Batch-norm running statistics stay float32 after a bf16 train-mode call.
  mbn = unet_lib.UNet(depth=2, base_features=4, norm="batch", dtype="bfloat16", rngs=nnx.Rngs(3))
  assert mbn(x, train=True).dtype == jnp.float32
  stats = jax.tree.leaves(nnx.state(mbn, nnx.BatchStat))
  assert stats and all(s.dtype == jnp.float32 for s in stats)
  assert any(float(jnp.abs(s).max()) > 0 and not np.allclose(s, 1.0) for s in stats)


def test_bad_input_raises_value_error():
  model = unet_lib.UNet(depth=2, base_features=2, norm="none", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="divisible by 4"):
    model(jnp.zeros((1, 18, 16, 1)), train=False)
  with pytest.raises(ValueError, match="divisible by 4"):
    model(jnp.zeros((1, 16, 10, 1)), train=False)
  with pytest.raises(ValueError, match=r"\[B,H,W,1\]"):
    model(jnp.zeros((1, 16, 16, 3)), train=False)
  with pytest.raises(ValueError, match="norm"):
    unet_lib.UNet(norm="layer", rngs=nnx.Rngs(0))


def test_create_unet_from_config():
  cfg = default_config.get_config().model
  cfg.depth, cfg.base_features, cfg.norm, cfg.dtype = 2, 4, "group", "bfloat16"
  model = unet_lib.create_unet(cfg, rngs=nnx.Rngs(0))
  assert isinstance(model, unet_lib.UNet)
  assert (model.depth, model.base_features, model.norm_kind) == (2, 4, "group")
  assert model.dtype == jnp.bfloat16
  assert model(jnp.zeros((1, 16, 16, 1)), train=True).dtype == jnp.float32
  cfg.dtype = "float16"
  with pytest.raises(ValueError, match="dtype"):
    unet_lib.create_unet(cfg, rngs=nnx.Rngs(0))


def test_num_groups_divides_channels():
  assert unet_lib.num_groups(16) == 8
  assert unet_lib.num_groups(12) == 6
  assert unet_lib.num_groups(3) == 3
  assert unet_lib.num_groups(7) == 7
  assert unet_lib.num_groups(11) == 1
  for c in range(1, 70):
    assert c % unet_lib.num_groups(c) == 0


def test_split_merge_under_jit_batch_stats():
  """The lead's functional pattern: train mode updates batch stats, eval mode does not."""
  model = unet_lib.UNet(depth=2, base_features=4, norm="batch", rngs=nnx.Rngs(0))
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  x, _ = _images(batch=4, size=16)

  def apply(params, batch_stats, x, train):
    m = nnx.merge(graphdef, params, batch_stats)
    logits = m(x, train=train)
    return logits, nnx.state(m, nnx.BatchStat)

  apply_train = jax.jit(lambda p, s, x: apply(p, s, x, True))
  apply_eval = jax.jit(lambda p, s, x: apply(p, s, x, False))

  logits, new_stats = apply_train(params, batch_stats, x)
  assert logits.shape == (4, 16, 16, 1) and logits.dtype == jnp.float32
  diffs = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), batch_stats,
                                       new_stats))
  assert len(diffs) == 4 * 5  # 10 BatchNorms (2 per DoubleConv, 5 DoubleConvs) x (mean, var)
  assert all(float(d) > 0 for d in diffs), "every running mean/var moves in train mode"
  # The split state is functional: the original module is untouched.
  orig = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
  assert all(np.array_equal(a, b) for a, b in zip(orig, jax.tree.leaves(batch_stats)))

  eval_logits, eval_stats = apply_eval(params, new_stats, x)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new_stats),
                                                  jax.tree.leaves(eval_stats)))
  # Eval mode normalises with running averages: each example is independent of the batch.
  single, _ = apply_eval(params, new_stats, x[1:2])
  np.testing.assert_allclose(np.asarray(single[0]), np.asarray(eval_logits[1]), rtol=1e-4,
                             atol=1e-4)
  # Train mode normalises with batch statistics: the same example depends on its batch.
  single_train, _ = apply_train(params, new_stats, x[1:3])
  train_logits, _ = apply_train(params, new_stats, x)
  assert float(jnp.max(jnp.abs(single_train[0] - train_logits[1]))) > 1e-4
  # Eager calls agree with the jitted functional ones.
  merged = nnx.merge(graphdef, params, new_stats)
  np.testing.assert_allclose(np.asarray(merged(x, train=False)), np.asarray(eval_logits),
                             rtol=1e-4, atol=1e-4)


def test_adam_steps_lower_bce():
  model = unet_lib.UNet(depth=2, base_features=4, norm="batch", rngs=nnx.Rngs(1))
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)
  x, y = _images(batch=4, size=16, seed=1)

  def loss_fn(params, batch_stats):
    # copy=True: fresh Variables at the grad trace level (the State's own Variables belong to
    # the enclosing jit trace, and BatchNorm may not mutate those from inside jax.grad).
    m = nnx.merge(graphdef, params, batch_stats, copy=True)
    logits = m(x, train=True)
    loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
    return loss, nnx.state(m, nnx.BatchStat)

  @jax.jit
  def step(params, batch_stats, opt_state):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  losses = []
  for _ in range(8):
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state)
    losses.append(float(loss))
  assert all(math.isfinite(l) for l in losses)
  assert losses[-1] < 0.8 * losses[0], losses


def test_sharded_batch_uses_global_batch_statistics():
  """With the batch split over 8 devices, train-mode batch norm still sees the global batch."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  n = jax.device_count()
  model = unet_lib.UNet(depth=1, base_features=2, norm="batch", rngs=nnx.Rngs(0))
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  x, _ = _images(batch=n, size=16, seed=2)

  @jax.jit
  def apply(params, batch_stats, x):
    m = nnx.merge(graphdef, params, batch_stats)
    return m(x, train=True), nnx.state(m, nnx.BatchStat)

  mesh = jax.make_mesh((n,), ("data",))
  x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  replicated = NamedSharding(mesh, P())
  params_r, stats_r = jax.device_put((params, batch_stats), replicated)
  logits_s, stats_s = apply(params_r, stats_r, x_sharded)
  logits, stats = apply(params, batch_stats, x)
  np.testing.assert_allclose(np.asarray(logits_s), np.asarray(logits), rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(stats_s), jax.tree.leaves(stats)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_up_conv_2x2_equals_conv_transpose_values_and_gradients():
  """The depth-to-space upsampling is nnx.ConvTranspose (2x2, stride 2), forward and backward."""
  ct = nnx.ConvTranspose(6, 3, (2, 2), strides=(2, 2), padding="VALID", rngs=nnx.Rngs(0))
  ct.bias[...] = jnp.arange(3, dtype=jnp.float32)
  x = jax.random.normal(jax.random.key(1), (2, 4, 5, 6))
  kernel, bias = ct.kernel[...], ct.bias[...]
  ref = lambda x, k, b: jnp.sum(jnp.sin(jax.lax.conv_transpose(
      x, k, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b))
  new = lambda x, k, b: jnp.sum(jnp.sin(unet_lib.up_conv_2x2(x, k, b, jnp.float32)))
  np.testing.assert_allclose(unet_lib.up_conv_2x2(x, kernel, bias, jnp.float32), ct(x),
                             rtol=1e-5, atol=1e-5)
  for g_new, g_ref in zip(jax.grad(new, (0, 1, 2))(x, kernel, bias),
                          jax.grad(ref, (0, 1, 2))(x, kernel, bias)):
    np.testing.assert_allclose(g_new, g_ref, rtol=1e-4, atol=1e-4)


def test_max_pool_2x2_equals_reduce_window_and_shards_on_an_explicit_mesh():
  """The reshape max pool gives reduce_window's values, also with the batch on an explicit mesh."""
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  x = jax.random.normal(jax.random.key(0), (8, 6, 4, 3))
  ref = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")
  np.testing.assert_array_equal(unet_lib.max_pool_2x2(x), ref)
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ("data",), axis_types=(AxisType.Explicit,))
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  k = jnp.ones((2, 2, 3, 5))
  with jax.set_mesh(mesh):
    pooled = jax.jit(unet_lib.max_pool_2x2)(xs)
    up = jax.jit(lambda x: unet_lib.up_conv_2x2(x, k, jnp.zeros(5), jnp.float32))(pooled)
  np.testing.assert_array_equal(pooled, ref)
  assert up.shape == (8, 6, 4, 5) and pooled.sharding.spec[0] == "data"


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_batch_norm_relu_matches_flax_batch_norm_then_relu(dtype, tol):
  # The fused training-mode norm must be the same function as nnx.BatchNorm + ReLU, with the
  # same gradients (its backward pass is hand-written) and the same batch statistics.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(0.5, 2.0, (4, 6, 6, 8)), dtype)
  scale = jnp.asarray(rng.uniform(0.5, 1.5, 8), jnp.float32)
  bias = jnp.asarray(rng.normal(0.0, 0.5, 8), jnp.float32)
  cot = jnp.asarray(rng.normal(size=x.shape), dtype)

  def reference(x, scale, bias):
    bn = nnx.BatchNorm(8, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32,
                       rngs=nnx.Rngs(0))
    bn.scale[...], bn.bias[...] = scale, bias
    return jax.nn.relu(bn(x, use_running_average=False))

  def fused(x, scale, bias):
    return unet_lib.batch_norm_relu(x, scale, bias, 1e-5)[0]

  y_ref, vjp_ref = jax.vjp(reference, x, scale, bias)
  y, vjp = jax.vjp(fused, x, scale, bias)
  assert y.dtype == dtype
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32),
                             atol=tol, rtol=tol)
  for got, want in zip(vjp(cot), vjp_ref(cot)):
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                               atol=tol * 10, rtol=tol)
  _, mean, var = unet_lib.batch_norm_relu(x, scale, bias, 1e-5)
  x64 = np.asarray(x, np.float64).reshape(-1, 8)
  np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(var, x64.var(0), rtol=1e-3, atol=1e-3)


def test_train_mode_running_statistics_follow_flax_batch_norm():
  # The fused path updates the nnx.BatchNorm running averages exactly as nnx.BatchNorm does.
  block = unet_lib.ConvNormReLU(1, 4, norm="batch", dtype=jnp.float32, rngs=nnx.Rngs(0))
  x, _ = _images(batch=3, size=16)
  y = block(x, train=True)
  conv_out = block.conv(x)
  ref = nnx.BatchNorm(4, momentum=unet_lib.BATCH_NORM_MOMENTUM, epsilon=1e-5,
                      rngs=nnx.Rngs(0))
  y_ref = jax.nn.relu(ref(conv_out, use_running_average=False))
  np.testing.assert_allclose(y, y_ref, atol=1e-5)
  np.testing.assert_allclose(block.norm.mean[...], ref.mean[...], atol=1e-6)
  np.testing.assert_allclose(block.norm.var[...], ref.var[...], rtol=1e-5, atol=1e-6)


def _with_running_statistics(model, seed=0):
  """Sets every batch norm's scale, bias, mean and variance to values far from their
  initial ones (1, 0, 0, 1), so that evaluation-mode normalisation does real work."""
  rng = np.random.default_rng(seed)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.BatchNorm):
      c = module.mean.shape[0]
      module.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32)
      module.bias[...] = jnp.asarray(rng.normal(0.0, 0.3, c), jnp.float32)
      module.mean[...] = jnp.asarray(rng.normal(0.0, 0.5, c), jnp.float32)
      module.var[...] = jnp.asarray(rng.uniform(0.2, 3.0, c), jnp.float32)
  return model


def _reference_eval(model, x):
  """The U-Net's evaluation-mode forward as the modules compose it unfused: nnx.Conv on the
  concatenated skip, nnx.BatchNorm with running averages (or GroupNorm), ReLU."""

  def block(b, y):
    y = b.conv(y)
    if b.norm_kind == "batch":
      y = b.norm(y, use_running_average=True)
    elif b.norm_kind == "group":
      y = b.norm(y)
    return jax.nn.relu(y)

  def stage(d, y):
    return block(d.block2, block(d.block1, y))

  y, skips = x, []
  for d in model.down:
    y = stage(d, y)
    skips.append(y)
    y = unet_lib.max_pool_2x2(y)
  y = stage(model.bottleneck, y)
  for up, d, skip in zip(model.up, model.up_conv, reversed(skips)):
    y = stage(d, jnp.concatenate([up(y), skip], axis=-1))
  return model.head(y)


def test_fold_batch_norm_equals_conv_then_running_average_norm():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
  bn = nnx.BatchNorm(5, epsilon=1e-5, rngs=nnx.Rngs(0))
  bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, 5), jnp.float32)
  bn.bias[...] = jnp.asarray(rng.normal(size=5), jnp.float32)
  bn.mean[...] = jnp.asarray(rng.normal(size=5), jnp.float32)
  bn.var[...] = jnp.asarray(rng.uniform(0.1, 4.0, 5), jnp.float32)
  conv = lambda x, k: jax.lax.conv_general_dilated(  # noqa: E731
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  want = bn(conv(x, kernel), use_running_average=True)
  k2, b2 = unet_lib.fold_batch_norm(kernel, bn.scale[...], bn.bias[...], bn.mean[...],
                                    bn.var[...], 1e-5)
  assert k2.shape == kernel.shape and b2.shape == (5,)
  np.testing.assert_allclose(conv(x, k2) + b2, want, rtol=1e-5, atol=1e-5)


def test_conv_3x3_of_parts_equals_nnx_conv_on_their_concatenation():
  """One convolution per part (and nine multiply-adds for a one-channel part) is the SAME
  3x3 convolution of the concatenated channels."""
  rng = np.random.default_rng(1)
  for channels in [(1,), (3, 5), (1, 4)]:
    parts = tuple(jnp.asarray(rng.normal(size=(2, 8, 6, c)), jnp.float32) for c in channels)
    conv = nnx.Conv(sum(channels), 7, (3, 3), padding="SAME", use_bias=False,
                    rngs=nnx.Rngs(0))
    want = conv(jnp.concatenate(parts, axis=-1))
    got = unet_lib.conv_3x3(parts, conv.kernel[...], jnp.float32)
    assert got.shape == (2, 8, 6, 7) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_eval_forward_equals_the_unfused_modules_and_predicts_the_same_mask(norm):
  """Evaluation mode (batch norm folded into the convolutions, the skip concatenation split
  into two convolutions, the one-channel first convolution as multiply-adds) is the same
  function as the modules composed one by one: logits equal up to float rounding, and the
  same mask wherever a logit is not within rounding of the threshold."""
  model = _with_running_statistics(
      unet_lib.UNet(depth=2, base_features=4, norm=norm, rngs=nnx.Rngs(2)))
  model.head.bias[...] = jnp.full((1,), 0.05, jnp.float32)  # logits off exact zero
  x, _ = _images(batch=3, size=16, seed=3)
  got = jax.jit(lambda x: model(x, train=False))(x)
  want = _reference_eval(model, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
  sure = np.abs(np.asarray(want)) > 1e-4
  assert sure.mean() > 0.95
  np.testing.assert_array_equal(np.asarray(got > 0)[sure], np.asarray(want > 0)[sure])
