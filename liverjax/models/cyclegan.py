"""CycleGAN networks (Zhu et al., 2017) in Flax NNX, for unpaired CT <-> MR slice translation.

ResnetGenerator (Johnson et al. layout, as in the CycleGAN paper), with F = `features`:
  c7s1-F, d2F, d4F, R4F x n_blocks, u2F, uF, c7s1-1
  c7s1-k: reflect pad 3, 7x7 VALID conv, instance norm, ReLU (the last one: tanh, no norm)
  dk:     3x3 stride-2 conv (zero padding 1), instance norm, ReLU
  Rk:     [reflect pad 1, 3x3 VALID conv, instance norm, ReLU, reflect pad 1, 3x3 VALID conv,
           instance norm] + identity
  uk:     3x3 stride-2 transposed conv (output exactly 2x), instance norm, ReLU; computed as
          four interleaved sub-pixel convolutions (`up_conv_3x3`) of the `nnx.ConvTranspose` kernel
  Images in [0,1] are mapped to [-1,1] on the way in; the tanh output is mapped back with
  (tanh + 1) / 2, so the generator takes and returns images in [0,1].

PatchDiscriminator (the 70x70 PatchGAN for n_layers=3), with F = `features`:
  C(F) - C(2F) - C(4F) - C(8F) - 1, 4x4 convs with zero padding 1; strides 2, 2, 2, 1, 1;
  LeakyReLU(0.2) after every layer but the last; instance norm on all but the first and last.
  Channel multipliers are capped at 8 (as in the reference implementation) for larger n_layers.
  Output: one real/fake logit per overlapping patch, f32[B,H',W',1]
  (64x64 -> 6x6, 128x128 -> 14x14, 256x256 -> 30x30 for n_layers=3).

Instance norm here has a learnable per-channel scale and bias (the reference PyTorch code uses
affine=False; with affine parameters the convolutions feeding a norm drop their bias). There is no
batch norm and no mutable state besides nnx.Param. Parameters are float32; `dtype` is the compute
dtype; outputs are always float32.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from liverjax.models import unet as unet_lib
from liverjax.models.unet import sharded_reshape

INSTANCE_NORM_EPS = 1e-5
LEAKY_SLOPE = 0.2


def instance_norm(x: jax.Array, scale: jax.Array | None = None, bias: jax.Array | None = None,
                  *, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
  """Instance normalisation: per example and channel, over the spatial axes.

  Args:
    x: [B,H,W,C] features (any float dtype).
    scale: optional [C] multiplier applied after normalising.
    bias: optional [C] offset applied after normalising.
    eps: added to the (biased) variance.

  Returns:
    [B,H,W,C] in x's dtype: (x - mean) / sqrt(var + eps) * scale + bias, with mean and var over
    H, W computed in float32.
  """
  xf = x.astype(jnp.float32)
  mean = xf.mean(axis=(1, 2), keepdims=True)
  var = jnp.square(xf - mean).mean(axis=(1, 2), keepdims=True)
  y = (xf - mean) * jax.lax.rsqrt(var + eps)
  if scale is not None:
    y = y * scale.astype(jnp.float32)
  if bias is not None:
    y = y + bias.astype(jnp.float32)
  return y.astype(x.dtype)


class InstanceNorm(nnx.Module):
  """`instance_norm` with learnable per-channel scale (init 1) and bias (init 0), float32."""

  def __init__(self, num_features: int, *, eps: float = INSTANCE_NORM_EPS, rngs: nnx.Rngs):
    del rngs  # deterministic initialisation
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B,H,W,C] -> [B,H,W,C], same dtype."""
    return instance_norm(x, self.scale[...], self.bias[...], eps=self.eps)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """Reflect-pads the spatial axes of [B,H,W,C] by `pad` on each side (needs H, W > pad)."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


# Per axis, output parity a of a 3x3 stride-2 SAME transposed conv: (kernel taps, input padding).
# Even outputs y[2q] = k[0] x[q-1] + k[2] x[q]; odd outputs y[2q+1] = k[1] x[q] (`up_conv_3x3`).
_SUBPIXEL = ((slice(0, 3, 2), (1, 0)), (slice(1, 2), (0, 0)))


def up_conv_3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, dtype: Any) -> jax.Array:
  """The 3x3 stride-2 SAME transposed convolution of `nnx.ConvTranspose`, as sub-pixel convs.

  Args:
    x: [B,H,W,Cin] (any H, W >= 1); kernel: f32[3,3,Cin,Cout] (an `nnx.ConvTranspose` kernel,
      `transpose_kernel=False`); bias: f32[Cout] or None.
    dtype: the compute dtype.

  Returns:
    [B,2H,2W,Cout] in `dtype`, equal to `nnx.ConvTranspose(Cin, Cout, (3, 3), strides=(2, 2),
    padding="SAME")(x)` with that kernel and bias. Derivation, per axis: `lax.conv_transpose`
    dilates x (x[i] at 2i), pads it by (2, 1) and correlates with the unflipped kernel k, so
    y[p] = sum_t k[t] z[p + t - 2] with z[2i] = x[i]: y[2q] = k[0] x[q-1] + k[2] x[q] and
    y[2q+1] = k[1] x[q]. So each output parity (a, b) is a stride-1 conv of x with a 2x2, 2x1,
    1x2 or 1x1 sub-kernel (x zero-padded by (1, 0) where two taps are read), and the four are
    interleaved (depth-to-space). XLA's CPU backend runs the transposed conv's kernel gradient
    as an lhs-dilated conv without its fast kernels: this form is 13-20x faster fwd+bwd (64 px,
    batch 8). One 2x2 conv to 4*Cout channels (zero taps included) is 1.3-1.5x slower than these
    four.
  """
  x = x.astype(dtype)
  kernel = kernel.astype(dtype)
  rows = []
  for taps_a, pad_a in _SUBPIXEL:
    rows.append(jnp.stack([
        jax.lax.conv_general_dilated(x, kernel[taps_a, taps_b], (1, 1), (pad_a, pad_b),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        for taps_b, pad_b in _SUBPIXEL], axis=3))  # [B,H,W,b,Cout]
  y = jnp.stack(rows, axis=2)  # [B,H,a,W,b,Cout]
  n, h, _, w, _, cout = y.shape
  y = sharded_reshape(y, (n, 2 * h, 2 * w, cout), (0, None, None, 5))
  return y if bias is None else y + bias.astype(dtype)


def _up(module: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
  """Applies a 3x3 stride-2 SAME `nnx.ConvTranspose` (the parameter holder) via `up_conv_3x3`."""
  bias = None if module.bias is None else module.bias[...]
  dtype = module.dtype if module.dtype is not None else jnp.result_type(x, module.kernel[...])
  return up_conv_3x3(x, module.kernel[...], bias, dtype)


def _conv(in_f: int, out_f: int, k: int, *, stride: int = 1, padding: Any = "VALID",
          use_bias: bool, dtype: Any, rngs: nnx.Rngs) -> nnx.Conv:
  """A kxk conv with float32 params, N(0, 0.02) weights as in the CycleGAN reference code."""
  return nnx.Conv(in_f, out_f, (k, k), strides=(stride, stride), padding=padding,
                  use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=nnx.initializers.normal(0.02), rngs=rngs)


class ResidualBlock(nnx.Module):
  """[reflect pad, 3x3 conv, IN, ReLU, reflect pad, 3x3 conv, IN] + identity; keeps the shape."""

  def __init__(self, features: int, *, dtype: Any, rngs: nnx.Rngs):
    self.conv1 = _conv(features, features, 3, use_bias=False, dtype=dtype, rngs=rngs)
    self.norm1 = InstanceNorm(features, rngs=rngs)
    self.conv2 = _conv(features, features, 3, use_bias=False, dtype=dtype, rngs=rngs)
    self.norm2 = InstanceNorm(features, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B,H,W,C] -> [B,H,W,C]."""
    y = jax.nn.relu(self.norm1(self.conv1(reflect_pad(x, 1))))
    y = self.norm2(self.conv2(reflect_pad(y, 1)))
    return x + y


class ResnetGenerator(nnx.Module):
  """CycleGAN generator: f32[B,H,W,1] in [0,1] -> f32[B,H,W,1] in [0,1] (H, W divisible by 4)."""

  def __init__(self, *, features: int = 32, n_blocks: int = 6, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    """Builds the generator.

    Args:
      features: channels F of the first layer (F, 2F, 4F through the network).
      n_blocks: residual blocks at 1/4 resolution (6 for 128x128 in the paper, 9 for 256x256).
      dtype: compute dtype (jnp.float32 or jnp.bfloat16); params are float32.
      rngs: nnx.Rngs for initialisation.
    """
    if features < 1 or n_blocks < 0:
      raise ValueError(f"ResnetGenerator needs features >= 1 and n_blocks >= 0, "
                       f"got features={features}, n_blocks={n_blocks}")
    dtype = jnp.dtype(dtype)
    self.dtype = dtype
    f = features
    kw = dict(dtype=dtype, rngs=rngs)
    self.stem = _conv(1, f, 7, use_bias=False, **kw)
    self.stem_norm = InstanceNorm(f, rngs=rngs)
    self.down1 = _conv(f, 2 * f, 3, stride=2, padding=((1, 1), (1, 1)), use_bias=False, **kw)
    self.down1_norm = InstanceNorm(2 * f, rngs=rngs)
    self.down2 = _conv(2 * f, 4 * f, 3, stride=2, padding=((1, 1), (1, 1)), use_bias=False, **kw)
    self.down2_norm = InstanceNorm(4 * f, rngs=rngs)
    self.blocks = nnx.List([ResidualBlock(4 * f, **kw) for _ in range(n_blocks)])
    # 3x3 stride-2 SAME transposed convs double H and W exactly (PyTorch: padding 1,
    # output_padding 1). The modules hold the parameters; `__call__` applies them with
    # `up_conv_3x3` (the same function, fast on CPU).
    self.up1 = nnx.ConvTranspose(4 * f, 2 * f, (3, 3), strides=(2, 2), padding="SAME",
                                 use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                                 kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.up1_norm = InstanceNorm(2 * f, rngs=rngs)
    self.up2 = nnx.ConvTranspose(2 * f, f, (3, 3), strides=(2, 2), padding="SAME",
                                 use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                                 kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.up2_norm = InstanceNorm(f, rngs=rngs)
    self.out = _conv(f, 1, 7, use_bias=True, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Translates a batch of slices.

    Args:
      x: f32[B,H,W,1] images in [0,1]; H and W divisible by 4 and at least 8.

    Returns:
      f32[B,H,W,1] translated images in [0,1], (tanh(logit) + 1) / 2.
    """
    if x.ndim != 4 or x.shape[-1] != 1:
      raise ValueError(f"ResnetGenerator expects images of shape [B,H,W,1], got {tuple(x.shape)}")
    h, w = x.shape[1:3]
    if h % 4 or w % 4 or h < 8 or w < 8:
      raise ValueError(f"ResnetGenerator needs H and W divisible by 4 and >= 8, got {h}x{w}")
    y = (x.astype(jnp.float32) * 2.0 - 1.0).astype(self.dtype)
    y = jax.nn.relu(self.stem_norm(self.stem(reflect_pad(y, 3))))
    y = jax.nn.relu(self.down1_norm(self.down1(y)))
    y = jax.nn.relu(self.down2_norm(self.down2(y)))
    for block in self.blocks:
      y = block(y)
    y = jax.nn.relu(self.up1_norm(_up(self.up1, y)))
    y = jax.nn.relu(self.up2_norm(_up(self.up2, y)))
    y = self.out(reflect_pad(y, 3)).astype(jnp.float32)
    return (jnp.tanh(y) + 1.0) * 0.5


class UNetGenerator(nnx.Module):
  """CycleGAN generator with U-Net skips: f32[B,H,W,1] in [0,1] -> f32[B,H,W,1] in [0,1].

  The segmentation U-Net of `liverjax.models.unet` with group norm (no batch statistics: a
  generator must translate a slice the same way whatever else is in its batch) and one output
  channel, fed [-1, 1] and read through (tanh + 1) / 2 as the ResNet generator. The skips carry
  every resolution's edges to the output, so the translation keeps the anatomy where it is
  (pix2pix's "unet" generator; the CycleGAN paper's ResNet generator has no skips and must
  rebuild the anatomy from a 1/4-resolution code). H and W must be divisible by 2**depth.
  """

  def __init__(self, *, features: int = 16, depth: int = 3, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    """Builds the generator.

    Args:
      features: channels of the first stage (doubled per stage).
      depth: 2x down-sampling stages (>= 1).
      dtype: compute dtype; params are float32.
      rngs: nnx.Rngs for initialisation.
    """
    self.unet = unet_lib.UNet(depth=depth, base_features=features, norm="group", dtype=dtype,
                              rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Translates a batch of slices f32[B,H,W,1] in [0,1] -> f32[B,H,W,1] in [0,1]."""
    logits = self.unet(x.astype(jnp.float32) * 2.0 - 1.0, train=False)
    return (jnp.tanh(logits) + 1.0) * 0.5


class PatchDiscriminator(nnx.Module):
  """PatchGAN discriminator: f32[B,H,W,1] in [0,1] -> f32[B,H',W',1] per-patch real/fake logits."""

  def __init__(self, *, features: int = 32, n_layers: int = 3, dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    """Builds the discriminator.

    Args:
      features: channels F of the first layer (paper: 64); then min(2**n, 8) * F.
      n_layers: stride-2 layers (3 gives the 70x70 PatchGAN).
      dtype: compute dtype; params are float32.
      rngs: nnx.Rngs for initialisation.
    """
    if features < 1 or n_layers < 1:
      raise ValueError(f"PatchDiscriminator needs features >= 1 and n_layers >= 1, "
                       f"got features={features}, n_layers={n_layers}")
    dtype = jnp.dtype(dtype)
    self.dtype = dtype
    self.n_layers = n_layers
    pad = ((1, 1), (1, 1))
    kw = dict(dtype=dtype, rngs=rngs)
    self.first = _conv(1, features, 4, stride=2, padding=pad, use_bias=True, **kw)
    convs, norms = [], []
    prev = features
    for n in range(1, n_layers + 1):
      cur = min(2**n, 8) * features
      convs.append(_conv(prev, cur, 4, stride=2 if n < n_layers else 1, padding=pad,
                         use_bias=False, **kw))
      norms.append(InstanceNorm(cur, rngs=rngs))
      prev = cur
    self.convs = nnx.List(convs)
    self.norms = nnx.List(norms)
    self.out = _conv(prev, 1, 4, padding=pad, use_bias=True, **kw)

  @property
  def receptive_field(self) -> int:
    """Side in pixels of the input patch that one output logit sees (70 for n_layers=3)."""
    strides = [2] * self.n_layers + [1, 1]  # first + (n_layers - 1) stride-2, then two stride-1
    rf = 1
    for s in reversed(strides):
      rf = rf * s + (4 - s)
    return rf

  def __call__(self, x: jax.Array) -> jax.Array:
    """Scores patches of a batch of slices.

    Args:
      x: f32[B,H,W,1] images in [0,1] (H, W >= 2**n_layers * 2 for a non-empty output).

    Returns:
      f32[B,H',W',1] logits (no sigmoid), H' = H / 2**n_layers - 2 for H divisible by 2**n_layers.
    """
    if x.ndim != 4 or x.shape[-1] != 1:
      raise ValueError(
          f"PatchDiscriminator expects images of shape [B,H,W,1], got {tuple(x.shape)}")
    y = (x.astype(jnp.float32) * 2.0 - 1.0).astype(self.dtype)
    y = jax.nn.leaky_relu(self.first(y), LEAKY_SLOPE)
    for conv, norm in zip(self.convs, self.norms):
      y = jax.nn.leaky_relu(norm(conv(y)), LEAKY_SLOPE)
    return self.out(y).astype(jnp.float32)


def count_params(model: nnx.Module) -> int:
  """Returns the number of scalar trainable parameters (nnx.Param) of `model`."""
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
