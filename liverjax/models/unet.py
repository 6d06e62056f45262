"""A classic 2D U-Net (Ronneberger et al., 2015) in Flax NNX, for binary liver segmentation.

Layout for `depth=D`, `base_features=F` (channels C_i = F * 2**i):

  encoder stage i = 0..D-1:  [3x3 conv -> norm -> ReLU] x 2 to C_i, keep as skip, 2x2 max-pool
  bottleneck:                [3x3 conv -> norm -> ReLU] x 2 to C_D
  decoder stage i = D-1..0:  2x2 stride-2 transposed conv to C_i, concat skip_i (2 C_i channels),
                             [3x3 conv -> norm -> ReLU] x 2 to C_i
  head:                      1x1 conv to 1 channel (liver logit), computed in float32

Convolutions use SAME padding, so the output has the input's spatial size. Parameters are
always float32; `dtype` is the compute dtype of the convolutions and norms.

Evaluation mode (`train=False`, what validation, the evaluation and `liverjax.predict` run) is
the same function computed for speed on the CPU: batch norm folded into the convolution before
it (`fold_batch_norm`), the decoder's skip concatenation never written (`conv_3x3` of the two
parts) and the one-channel first convolution as nine multiply-adds; the logits differ from
the modules composed one by one only by float rounding (tests/models/test_unet.py).

Batch norm is driven explicitly per call: `train=True` normalises with the batch statistics and
updates the running averages (nnx.BatchStat, momentum 0.9), `train=False` uses the running
averages and changes nothing. This makes the functional pattern

    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    # inside jax.jit:
    m = nnx.merge(graphdef, params, batch_stats)
    logits = m(x, train=True)
    new_batch_stats = nnx.state(m, nnx.BatchStat)

work without any mode flags stored on the module. Under `jit` with a batch sharded over a
data-parallel mesh the batch statistics are those of the global batch (XLA inserts the
reductions), so no `axis_name` is needed.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

NORMS = ("batch", "group", "none")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Running-average momentum of batch norm: PyTorch's 0.1 update rate, faster than flax's 0.99
# default, so the running statistics are usable after the few hundred steps of a study run.
BATCH_NORM_MOMENTUM = 0.9
# He (Kaiming) initialisation from a uniform distribution, fan-in, ReLU gain. Flax's default
# (LeCun truncated normal) compiles an erf_inv-based sampler per kernel shape, which costs
# ~1 s of XLA compile per layer on a small CPU; the uniform sampler compiles in milliseconds.
KERNEL_INIT = nnx.initializers.variance_scaling(2.0, "fan_in", "uniform")
MAX_GROUPS = 8  # group norm: the largest divisor of the channel count up to this many groups


def num_groups(channels: int, max_groups: int = MAX_GROUPS) -> int:
  """Returns the number of group-norm groups for `channels`: the largest g <= max_groups dividing it."""
  return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def _resolve_dtype(dtype: Any) -> jnp.dtype:
  """Maps "float32"/"bfloat16" (or a dtype) to a jnp dtype; ValueError on anything else."""
  if isinstance(dtype, str):
    if dtype not in DTYPES:
      raise ValueError(f"unknown model dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    return jnp.dtype(DTYPES[dtype])
  return jnp.dtype(dtype)


def _channel_sums(a: jax.Array) -> jax.Array:
  """f32[M, C] -> f32[C]: sums over rows, as a matrix-vector product.

  XLA's CPU backend splits a plain `sum` over tens of thousands of rows into a
  reduce-window plus a reduce, which in the U-Net step cost more than the normalisation
  itself; the dot runs on the matmul kernels. HIGHEST precision keeps float32 on
  accelerators that would otherwise use TF32 for an f32 dot.
  """
  return jnp.dot(jnp.ones((a.shape[0],), a.dtype), a, precision=jax.lax.Precision.HIGHEST)


def _batch_norm_relu_forward(x, scale, bias, epsilon):
  c = x.shape[-1]
  x2 = x.reshape(-1, c).astype(jnp.float32)
  m = x2.shape[0]
  mean = _channel_sums(x2) / m
  var = jnp.maximum(_channel_sums(x2 * x2) / m - mean * mean, 0.0)  # flax's fast variance
  inv = jax.lax.rsqrt(var + epsilon)
  y = jax.nn.relu((x - mean.astype(x.dtype)) * (inv * scale).astype(x.dtype)
                  + bias.astype(x.dtype))
  return (y, mean, var), (x, mean, inv, scale, bias)


def _batch_norm_relu_backward(epsilon, residuals, cotangents):
  del epsilon
  x, mean, inv, scale, bias = residuals
  dy = cotangents[0]  # the batch statistics feed only the stop-gradient running averages
  c = x.shape[-1]
  m = x.size // c
  xhat = (x.astype(jnp.float32) - mean) * inv
  dz = jnp.where(xhat * scale + bias > 0, dy.astype(jnp.float32), 0.0)
  dbias = _channel_sums(dz.reshape(-1, c))
  dscale = _channel_sums((dz * xhat).reshape(-1, c))
  dx = (scale * inv / m) * (m * dz - dbias - xhat * dscale)
  return dx.astype(x.dtype), dscale, dbias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float):
  """Training-mode batch norm followed by ReLU, with a hand-written backward pass.

  Args:
    x: [B,H,W,C] (float32 or bfloat16); scale, bias: f32[C]; epsilon: the variance epsilon.

  Returns:
    (y, mean, var): y = relu((x - mean) / sqrt(var + epsilon) * scale + bias) in x's dtype,
    and the f32[C] batch mean and (biased) variance over B, H, W, computed in float32, for the
    running averages. The same function as `nnx.BatchNorm(use_running_average=False)` then
    `jax.nn.relu` (flax's one-pass variance included). Autodiff of that composition leaves XLA's
    CPU backend ~10 reductions per layer; this backward pass needs two (sum of dz, sum of
    dz * xhat, both as matrix-vector products) and recomputes xhat instead of storing it. The
    mean and variance outputs carry no gradient (they only update stop-gradient averages).
  """
  return _batch_norm_relu_forward(x, scale, bias, epsilon)[0]


batch_norm_relu.defvjp(_batch_norm_relu_forward, _batch_norm_relu_backward)


def fold_batch_norm(kernel: jax.Array, scale: jax.Array, bias: jax.Array, mean: jax.Array,
                    var: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
  """Folds an evaluation-mode batch norm into the bias-free convolution before it.

  Args:
    kernel: f32[..., C] (the convolution's kernel, output channels last); scale, bias, mean,
      var: f32[C] (the norm's parameters and running averages); epsilon: its epsilon.

  Returns:
    (kernel', bias'), f32[..., C] and f32[C]: conv(x, kernel') + bias' equals
    (conv(x, kernel) - mean) * scale / sqrt(var + epsilon) + bias (`nnx.BatchNorm` with its
    running averages) up to float rounding, with one pass over the activations fewer.
  """
  s = scale * jax.lax.rsqrt(var + epsilon)
  return kernel * s, bias - mean * s


def _conv_3x3_one_channel(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """SAME 3x3 conv of a one-channel x [B,H,W,1] with kernel [3,3,1,C]: nine shifted
  multiply-adds, one elementwise pass (XLA's CPU convolution makes a 9-deep matrix product of
  it, ~10x slower at 128 px)."""
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = xp[:, :h, :w] * kernel[0, 0, 0]
  for i, j in [(i, j) for i in range(3) for j in range(3)][1:]:
    out = out + xp[:, i:i + h, j:j + w] * kernel[i, j, 0]
  return out


def conv_3x3(parts: tuple[jax.Array, ...], kernel: jax.Array, dtype: Any) -> jax.Array:
  """The SAME 3x3 convolution (stride 1, no bias) of the channel concatenation of `parts`.

  Args:
    parts: [B,H,W,C_k] arrays, k = 1..n (the decoder passes (up-sampled, skip)).
    kernel: f32[3,3,sum C_k,Cout]; dtype: the compute dtype.

  Returns:
    [B,H,W,Cout] in `dtype`: `nnx.Conv(..., (3, 3), padding="SAME", use_bias=False)` on
    `concatenate(parts, -1)`, up to float rounding. Computed as a sum of one convolution per
    part over its slice of the kernel, so the concatenation is never written (on XLA's CPU
    backend it cost as much as a convolution at 128 px); a one-channel part is nine shifted
    multiply-adds.
  """
  kernel = kernel.astype(dtype)
  out, start = None, 0
  for x in parts:
    c = x.shape[-1]
    k = kernel[:, :, start:start + c]
    start += c
    x = x.astype(dtype)
    if c == 1:
      y = _conv_3x3_one_channel(x, k)
    else:
      y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out = y if out is None else out + y
  return out


class ConvNormReLU(nnx.Module):
  """3x3 SAME conv -> norm ("batch" | "group" | "none") -> ReLU, on NHWC inputs.

  In training mode, batch norm and the ReLU run as `batch_norm_relu` (the same function as
  `nnx.BatchNorm` then ReLU, with a cheaper backward pass); the parameters and running
  statistics are those of the `nnx.BatchNorm` kept in `self.norm`, which evaluation uses.
  """

  def __init__(self, in_features: int, out_features: int, *, norm: str, dtype: Any,
               rngs: nnx.Rngs):
    self.norm_kind = norm
    self.conv = nnx.Conv(in_features, out_features, (3, 3), padding="SAME",
                         use_bias=norm == "none", dtype=dtype, param_dtype=jnp.float32,
                         kernel_init=KERNEL_INIT, rngs=rngs)
    if norm == "batch":
      self.norm = nnx.BatchNorm(out_features, momentum=BATCH_NORM_MOMENTUM, epsilon=1e-5,
                                dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    elif norm == "group":
      self.norm = nnx.GroupNorm(out_features, num_groups=num_groups(out_features),
                                epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    else:
      self.norm = None

  def __call__(self, x: jax.Array | tuple[jax.Array, ...], *, train: bool) -> jax.Array:
    """x [B,H,W,Cin], or a tuple of parts whose channels concatenate to Cin -> [B,H,W,Cout]
    in the compute dtype.

    In evaluation mode the convolution runs as `conv_3x3` (one convolution per part, no
    concatenation), with batch norm folded into it (`fold_batch_norm`). Training concatenates
    the parts and runs `nnx.Conv`: the split form made the train step ~3 % slower on the CPU.
    """
    parts = x if isinstance(x, tuple) else (x,)
    if not train:
      dtype = self.conv.dtype
      kernel = self.conv.kernel[...]
      if self.norm_kind == "batch":
        norm = self.norm
        kernel, bias = fold_batch_norm(kernel, norm.scale[...], norm.bias[...], norm.mean[...],
                                       norm.var[...], norm.epsilon)
        return jax.nn.relu(conv_3x3(parts, kernel, dtype) + bias.astype(dtype))
      y = conv_3x3(parts, kernel, dtype)
      if self.conv.bias is not None:
        y = y + self.conv.bias[...].astype(dtype)
      return jax.nn.relu(self.norm(y) if self.norm_kind == "group" else y)
    y = self.conv(parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1))
    if self.norm_kind == "batch":
      norm = self.norm
      y, mean, var = batch_norm_relu(y, norm.scale[...], norm.bias[...], norm.epsilon)
      momentum = norm.momentum
      norm.mean[...] = jax.lax.stop_gradient(momentum * norm.mean[...] + (1 - momentum) * mean)
      norm.var[...] = jax.lax.stop_gradient(momentum * norm.var[...] + (1 - momentum) * var)
      return y
    if self.norm_kind == "group":
      y = self.norm(y)
    return jax.nn.relu(y)


class DoubleConv(nnx.Module):
  """Two ConvNormReLU blocks: one U-Net stage."""

  def __init__(self, in_features: int, out_features: int, *, norm: str, dtype: Any,
               rngs: nnx.Rngs):
    self.block1 = ConvNormReLU(in_features, out_features, norm=norm, dtype=dtype, rngs=rngs)
    self.block2 = ConvNormReLU(out_features, out_features, norm=norm, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array | tuple[jax.Array, ...], *, train: bool) -> jax.Array:
    """x [B,H,W,Cin] (or parts concatenating to it, see `ConvNormReLU`) -> [B,H,W,Cout]."""
    return self.block2(self.block1(x, train=train), train=train)


def sharded_reshape(x: jax.Array, shape: tuple[int, ...],
                    keep: tuple[int | None, ...]) -> jax.Array:
  """Reshapes `x` to `shape`; output axis i keeps the sharding of input axis keep[i] (None:
  unsharded). With explicit mesh axes JAX cannot infer the sharding of a reshape that splits or
  merges axes, so it is given here (the batch axis stays sharded, spatial axes are whole)."""
  sharding = jax.typeof(x).sharding
  spec = tuple(sharding.spec) + (None,) * (x.ndim - len(sharding.spec))
  out = tuple(None if k is None else spec[k] for k in keep)
  if all(s is None for s in out):
    return jnp.reshape(x, shape)
  return jax.lax.reshape(x, shape,
                         out_sharding=sharding.update(spec=jax.sharding.PartitionSpec(*out)))


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling with stride 2: [B,H,W,C] -> [B,H/2,W/2,C] (H, W even).

  A reshape to [B,H/2,2,W/2,2,C] and a max over the two window axes, rather than
  `reduce_window`: the same values, and the gradient is an elementwise select instead of XLA's
  `select-and-scatter`, which is ~5x slower on CPU (fwd+bwd, 64 px, batch 16). Where a window
  holds tied maxima the gradient is shared among them; in the U-Net the pooled input is a ReLU
  output, whose ties are zeros with zero ReLU gradient, so the parameter gradients are the same.
  """
  b, h, w, c = x.shape
  y = sharded_reshape(x, (b, h // 2, 2, w // 2, 2, c), (0, None, None, None, None, 3))
  return jnp.max(y, axis=(2, 4))


def up_conv_2x2(x: jax.Array, kernel: jax.Array, bias: jax.Array, dtype: Any) -> jax.Array:
  """The 2x2 stride-2 VALID transposed convolution of `nnx.ConvTranspose`, as depth-to-space.

  Args:
    x: [B,H,W,Cin]; kernel: f32[2,2,Cin,Cout] (an `nnx.ConvTranspose` kernel); bias: f32[Cout].
    dtype: the compute dtype.

  Returns:
    [B,2H,2W,Cout] in `dtype`, equal to `nnx.ConvTranspose(..., (2, 2), strides=(2, 2),
    padding="VALID")(x)` with that kernel: output pixel (2i+a, 2j+b) is x[i,j] @ kernel[1-a,1-b]
    (the windows do not overlap, so it is matrix products and reshapes). XLA's CPU backend runs
    the transposed convolution's backward pass as an lhs-dilated convolution without its fast
    kernels: this form is ~7x faster fwd+bwd (64 px, batch 16) and the same function. One
    product per output row parity a, each reshaped to [B,H,2W,Cout] (b interleaved along W),
    then stacked on a new axis after H: XLA's CPU backend writes that stack as contiguous
    rows, where a single product [B,H,W,2,2,Cout] needed a transpose with 2x2 blocks, ~2x
    slower at 128 px (the evaluation forward ~5 % faster in all, the train step unchanged).
  """
  x = x.astype(dtype)
  k = kernel[::-1, ::-1].astype(dtype)
  n, h, w, _ = x.shape
  o = k.shape[-1]
  rows = [sharded_reshape(jnp.einsum("nhwc,bco->nhwbo", x, k[a]), (n, h, 2 * w, o),
                          (0, None, None, 4)) for a in range(2)]
  y = sharded_reshape(jnp.stack(rows, axis=2), (n, 2 * h, 2 * w, o), (0, None, None, 4))
  return y + bias.astype(dtype)


class UNet(nnx.Module):
  """2D U-Net: f32[B,H,W,1] image in [0,1] -> f32[B,H,W,C] logits (channel 0: liver)."""

  def __init__(self, *, depth: int = 4, base_features: int = 16, norm: str = "batch",
               dtype: Any = jnp.float32, out_channels: int = 1, rngs: nnx.Rngs):
    """Builds the network.

    Args:
      depth: number of 2x down-sampling stages (>= 1); H and W must be divisible by 2**depth.
      base_features: channels of the first stage, doubled per stage (>= 1).
      norm: "batch" (BatchNorm, state in nnx.BatchStat), "group" (GroupNorm with
        `num_groups(channels)` groups) or "none" (convs with bias, no normalisation).
      dtype: compute dtype (jnp.float32 / jnp.bfloat16 or "float32" / "bfloat16"); params f32.
      out_channels: output channels C (>= 1): 1 for the liver model, one per organ of
        `model.organs` for the multi-organ model (channel 0 is the liver).
      rngs: nnx.Rngs with a `params` stream (or default) for initialisation.
    """
    if depth < 1:
      raise ValueError(f"UNet depth must be >= 1, got {depth}")
    if base_features < 1:
      raise ValueError(f"UNet base_features must be >= 1, got {base_features}")
    if norm not in NORMS:
      raise ValueError(f"unknown UNet norm {norm!r}; expected one of {NORMS}")
    if out_channels < 1:
      raise ValueError(f"UNet out_channels must be >= 1, got {out_channels}")
    dtype = _resolve_dtype(dtype)
    self.depth = depth
    self.base_features = base_features
    self.norm_kind = norm
    self.dtype = dtype
    feats = [base_features * 2**i for i in range(depth + 1)]
    kw = dict(norm=norm, dtype=dtype, rngs=rngs)
    self.down = nnx.List(
        [DoubleConv(1 if i == 0 else feats[i - 1], feats[i], **kw) for i in range(depth)])
    self.bottleneck = DoubleConv(feats[depth - 1], feats[depth], **kw)
    # Decoder stage k (k = 0 is the deepest) works at resolution level i = depth - 1 - k.
    self.up = nnx.List([
        nnx.ConvTranspose(feats[i + 1], feats[i], (2, 2), strides=(2, 2), padding="VALID",
                          dtype=dtype, param_dtype=jnp.float32, kernel_init=KERNEL_INIT,
                          rngs=rngs)
        for i in reversed(range(depth))])
    self.up_conv = nnx.List(
        [DoubleConv(2 * feats[i], feats[i], **kw) for i in reversed(range(depth))])
    self.head = nnx.Conv(feats[0], out_channels, (1, 1), dtype=jnp.float32, param_dtype=jnp.float32,
                         kernel_init=nnx.initializers.variance_scaling(1.0, "fan_in", "uniform"),
                         rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Segments a batch of slices.

    Args:
      x: f32[B,H,W,1] images in [0,1]; H and W divisible by 2**depth.
      train: True uses (and updates) batch-norm batch statistics; False uses running averages.

    Returns:
      f32[B,H,W,C] logits, channel 0 the liver (float32 whatever the compute dtype).
    """
    if x.ndim != 4 or x.shape[-1] != 1:
      raise ValueError(f"UNet expects images of shape [B,H,W,1], got {tuple(x.shape)}")
    h, w = x.shape[1:3]
    factor = 2**self.depth
    if h % factor or w % factor:
      raise ValueError(
          f"UNet of depth {self.depth} needs H and W divisible by {factor}, got {h}x{w}")
    y = x.astype(self.dtype)
    skips = []
    for stage in self.down:
      y = stage(y, train=train)
      skips.append(y)
      y = max_pool_2x2(y)
    y = self.bottleneck(y, train=train)
    for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
      y = up_conv_2x2(y, up.kernel[...], up.bias[...], self.dtype)
      y = conv((y, skip), train=train)
    return self.head(y.astype(jnp.float32)).astype(jnp.float32)


def create_unet(model_config, *, rngs: nnx.Rngs) -> UNet:
  """Builds a UNet from the `config.model` ConfigDict (depth, base_features, norm, dtype str,
  organs: one output channel per organ, 1 when absent)."""
  return UNet(depth=int(model_config.depth), base_features=int(model_config.base_features),
              norm=str(model_config.norm), dtype=_resolve_dtype(str(model_config.dtype)),
              out_channels=len(model_config.get("organs", ("liver",))), rngs=rngs)


def count_params(model: nnx.Module) -> int:
  """Returns the number of scalar trainable parameters (nnx.Param) of `model`."""
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
