"""Single-source domain-generalisation augmentations: GIN / IPA and location-scale (SLAug).

All ops are pure JAX on a batch `images` f32[B, H, W, 1] in [0, 1], driven by a PRNG key
(the output is a deterministic function of the key and the inputs), jit- and vmap-friendly, and
purely photometric: nothing moves, so the masks of a batch stay valid unchanged.

- `gin`: Global Intensity Non-linear augmentation (Ouyang et al., "Causality-inspired single-source
  domain generalization for medical image segmentation", TMI 2022). Each slice goes through its own
  freshly drawn shallow conv net (kernel 1 or 3 per layer, N(0, 1) weights and biases, leaky ReLU
  between layers), the output is blended with the input by alpha ~ U(0, 1), rescaled to the input's
  Frobenius norm and min-max mapped to [0, 1]. Random weights of either sign, so the tissue
  intensity ordering (contrast) can invert.
- `ipa_mask`, `gin_ipa`, `consistency_loss`: Interventional Pseudo-correlation Augmentation. Two GIN
  appearances blended through a smooth random mask give regions independent appearances; the train
  step segments both views and adds `consistency_loss` between the two predictions.
- `location_scale`: SLAug's location-scale augmentation (Su et al., "Rethinking data augmentation for
  single-source domain generalization in medical image segmentation", AAAI 2023). A random cubic
  Bezier intensity curve (monotone, or non-monotone so contrast can invert) and a random scale and
  shift, for the whole slice (global, GLA) or one per labelled region (local, LLA: background and
  each organ of an organ label map get their own). `saliency_fuse` blends the two by the model's
  smoothed input-gradient saliency (SLAug's saliency-balancing fusion).

How a train step uses them (costs relative to the plain step: one forward + backward of batch B):
- GIN: images = gin(key, images); same masks. ~1x (the augmentation itself is cheap).
- GIN-IPA: v1, v2 = gin_ipa(key, images); loss = seg(f(v1), m) + seg(f(v2), m)
  + w * consistency_loss(f(v1), f(v2)) over a 2B batch: ~2x, or ~1x by taking B/2 source slices.
- SLAug: g = location_scale(k1, images); l = location_scale(k2, images, labels=organs);
  loss_g, grad_x = value_and_grad(seg loss of f(g), wrt g)  (first forward/backward; its parameter
  gradient is kept);  s = |grad_x| (stop_gradient);  fused = saliency_fuse(g, l, s);
  second forward/backward on fused; the parameter update uses the sum of both gradients: ~2x.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

_EPS = 1e-6
_LUT_SIZE = 256  # entries of the tabulated Bezier intensity curve
_BEZIER_SAMPLES = 512  # curve parameter samples used to tabulate it


def _check_batch(images: Array, where: str) -> Array:
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 1:
    raise ValueError(f'dg.py {where}: expected images f32[B, H, W, 1], got shape {images.shape}')
  return images


def _minmax(x: Array) -> Array:
  """Maps each slice of f32[B, H, W, C] linearly onto [0, 1] (a constant slice -> 0)."""
  lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
  hi = jnp.max(x, axis=(1, 2, 3), keepdims=True)
  return jnp.clip((x - lo) / jnp.maximum(hi - lo, _EPS), 0.0, 1.0)


# ------------------------------------------------------------------------------------------ GIN


def _gin_net(key: Array, x: Array, layers: int, channels: int,
             kernel_choices: Sequence[int], slope: float) -> Array:
  """One random conv net applied to slices f32[N, H, W, 1] -> f32[N, H, W, 1] (unbounded)."""
  kmax = max(kernel_choices)
  sizes = jnp.asarray(kernel_choices, jnp.int32)
  offs = jnp.abs(jnp.arange(kmax) - kmax // 2)
  for i, key_i in enumerate(jax.random.split(key, layers)):
    c_in = 1 if i == 0 else channels
    c_out = 1 if i == layers - 1 else channels
    k_size, k_w, k_b = jax.random.split(key_i, 3)
    # A kmax x kmax kernel with the taps beyond the drawn size zeroed: static shapes, any size.
    size = sizes[jax.random.randint(k_size, (), 0, len(kernel_choices))]
    keep = (offs[:, None] <= size // 2) & (offs[None, :] <= size // 2)
    w = jax.random.normal(k_w, (kmax, kmax, c_in, c_out)) * keep[:, :, None, None]
    b = jax.random.normal(k_b, (c_out,))
    # Edge padding: zero padding would draw a frame (the bias and weights act on a black border).
    r = kmax // 2
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode='edge')
    x = jax.lax.conv_general_dilated(xp, w, (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b
    if i < layers - 1:
      x = jax.nn.leaky_relu(x, slope)
  return x


def gin(key: Array, images: Array, *, layers: int = 4, channels: int = 2,
        kernel_choices: Sequence[int] = (1, 3), alpha_range: tuple[float, float] = (0.0, 1.0),
        slope: float = 0.01, per_slice: bool = True) -> Array:
  """Global intensity non-linear augmentation, one random net per slice (or per batch).

  Per slice (the paper; `per_slice=False`: one net and one alpha shared by the batch, so the
  batch has one appearance, as a test volume has, and its batch-norm statistics are that
  appearance's; see `eval.adapt_bn`): a net of `layers` conv layers (1 -> `channels` -> ... -> 1; each layer's kernel size
  drawn from `kernel_choices`, weights and biases N(0, 1), edge-padded, leaky ReLU of negative slope `slope`
  after all but the last) gives g; mixed = alpha g + (1 - alpha) x with alpha ~ U(alpha_range);
  mixed is rescaled to the Frobenius norm of x (as the paper), then mapped linearly onto [0, 1] by
  its min and max (which makes the norm rescaling immaterial for the output; kept for fidelity to
  the reference definition and harmless). Defaults follow the paper (4 layers, kernels 1 or 3,
  2 intermediate channels, alpha ~ U(0, 1), PyTorch's default leaky slope 0.01).

  Args:
    key: PRNG key.
    images: f32[B, H, W, 1] in [0, 1].
    layers, channels, kernel_choices, alpha_range, slope, per_slice: static settings (above).

  Returns:
    f32[B, H, W, 1] in [0, 1], same dtype as `images`; the masks of the batch stay valid.
  """
  images = _check_batch(images, 'gin')
  if layers < 1:
    raise ValueError(f'dg.py gin: layers must be >= 1, got {layers}')
  k_net, k_alpha = jax.random.split(key)
  x = images.astype(jnp.float32)
  if any(k < 1 or k % 2 == 0 for k in kernel_choices):
    raise ValueError(f'dg.py gin: kernel sizes must be odd and >= 1, got {kernel_choices}')
  net = lambda k, im: _gin_net(k, im, layers, channels, tuple(kernel_choices), slope)
  if per_slice:
    g = jax.vmap(net)(jax.random.split(k_net, x.shape[0]), x[:, None])[:, 0]
  else:
    g = net(k_net, x)
  alpha = jax.random.uniform(k_alpha, (x.shape[0] if per_slice else 1, 1, 1, 1),
                             minval=alpha_range[0], maxval=alpha_range[1])
  mixed = alpha * g + (1.0 - alpha) * x
  norm_in = jnp.sqrt(jnp.sum(x * x, axis=(1, 2, 3), keepdims=True))
  norm_mix = jnp.sqrt(jnp.sum(mixed * mixed, axis=(1, 2, 3), keepdims=True))
  mixed = mixed * norm_in / (norm_mix + _EPS)
  return _minmax(mixed).astype(images.dtype)


def ipa_mask(key: Array, shape: tuple[int, int, int], *, grid: int = 4) -> Array:
  """Smooth random blending masks for IPA.

  Control values U(0, 1) on a `grid` x `grid` lattice per slice, interpolated bicubically to
  H x W (the paper interpolates its control points with cubic B-splines) and clipped to [0, 1].

  Args:
    key: PRNG key.
    shape: static (B, H, W).
    grid: static control points per side (>= 2); larger gives smaller blobs.

  Returns:
    f32[B, H, W, 1] in [0, 1].
  """
  b, h, w = shape
  ctrl = jax.random.uniform(key, (b, grid, grid))
  up = jax.image.resize(ctrl, (b, h, w), method='cubic')
  return jnp.clip(up, 0.0, 1.0)[..., None]


def gin_ipa(key: Array, images: Array, *, grid: int = 4, **gin_kwargs) -> tuple[Array, Array]:
  """The two views of GIN-IPA.

  view1 = gin(k1, x); view2 = m gin(k2, x) + (1 - m) gin(k3, x) with m = `ipa_mask` (`grid`), so
  regions of view2 get independent appearances. `gin_kwargs` go to `gin`.

  Args:
    key: PRNG key.
    images: f32[B, H, W, 1] in [0, 1].

  Returns:
    (view1, view2), each f32[B, H, W, 1] in [0, 1]; the masks stay valid for both.
  """
  images = _check_batch(images, 'gin_ipa')
  k1, k2, k3, k_mask = jax.random.split(key, 4)
  m = ipa_mask(k_mask, images.shape[:3], grid=grid)
  view1 = gin(k1, images, **gin_kwargs)
  view2 = m * gin(k2, images, **gin_kwargs) + (1.0 - m) * gin(k3, images, **gin_kwargs)
  return view1, view2.astype(images.dtype)


def consistency_loss(logits1: Array, logits2: Array, activation: str = 'sigmoid') -> Array:
  """Symmetric KL divergence between the predictions on two views, averaged over pixels.

  'sigmoid' (binary segmentation, logits [..., C] of C independent foreground channels):
  per pixel and channel, KL(p||q) + KL(q||p) of Bernoulli(p), Bernoulli(q), p = sigmoid(logits1),
  q = sigmoid(logits2); 'softmax' (multi-class logits [..., C]): the same over the C classes.
  Both views receive gradients (no stop-gradient; wrap one in `jax.lax.stop_gradient` for a
  one-sided target). Computed from log-probabilities, so it is finite for any finite logits.

  Args:
    logits1, logits2: f32[B, H, W, C], the same shape.
    activation: 'sigmoid' or 'softmax' (static).

  Returns:
    A f32 scalar >= 0, 0 where the predictions agree.
  """
  if logits1.shape != logits2.shape:
    raise ValueError(f'dg.py consistency_loss: shapes differ, {logits1.shape} vs {logits2.shape}')
  a = logits1.astype(jnp.float32)
  b = logits2.astype(jnp.float32)
  if activation == 'sigmoid':
    # Bernoulli: sum over {fg, bg} of (p - q)(log p - log q).
    p, q = jax.nn.sigmoid(a), jax.nn.sigmoid(b)
    d = (p - q) * ((jax.nn.log_sigmoid(a) - jax.nn.log_sigmoid(b))
                   - (jax.nn.log_sigmoid(-a) - jax.nn.log_sigmoid(-b)))
    return jnp.mean(d)
  if activation == 'softmax':
    la, lb = jax.nn.log_softmax(a, axis=-1), jax.nn.log_softmax(b, axis=-1)
    d = jnp.sum((jnp.exp(la) - jnp.exp(lb)) * (la - lb), axis=-1)
    return jnp.mean(d)
  raise ValueError(f"dg.py consistency_loss: activation must be 'sigmoid' or 'softmax', "
                   f'got {activation!r}')


# ------------------------------------------------------------------------------- location-scale


def _bezier_lut(key: Array, non_monotone_prob: Array | float) -> Array:
  """A random cubic Bezier intensity curve tabulated at _LUT_SIZE points of [0, 1]: f32[L] in [0, 1].

  x control points (0, u1, u2, 1) with u1 <= u2, so x(t) is increasing and y is a function of x.
  y control points: four iid U(0, 1) with probability `non_monotone_prob` (any shape: may fall,
  rise and fall, ... so contrast can invert), else the same four sorted (increasing: a Bezier curve
  with increasing control values is monotone).
  """
  k_x, k_y, k_mode = jax.random.split(key, 3)
  xs = jnp.concatenate([jnp.zeros(1), jnp.sort(jax.random.uniform(k_x, (2,))), jnp.ones(1)])
  ys = jax.random.uniform(k_y, (4,))
  ys = jnp.where(jax.random.bernoulli(k_mode, non_monotone_prob), ys, jnp.sort(ys))
  t = jnp.linspace(0.0, 1.0, _BEZIER_SAMPLES)[:, None]
  basis = jnp.concatenate([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t), t ** 3], axis=1)
  cx, cy = basis @ xs, basis @ ys
  return jnp.interp(jnp.linspace(0.0, 1.0, _LUT_SIZE), cx, cy)


def _apply_lut(u: Array, lut: Array) -> Array:
  """Piecewise-linear lookup of u in [0, 1] (any shape) in a curve tabulated on a uniform grid."""
  pos = jnp.clip(u, 0.0, 1.0) * (lut.shape[0] - 1)
  i0 = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, lut.shape[0] - 2)
  frac = pos - i0
  return lut[i0] * (1.0 - frac) + lut[i0 + 1] * frac


def _location_scale_one(key: Array, x: Array, onehot: Array, non_monotone_prob: Array,
                        scale_range: tuple[float, float]) -> Array:
  """Remaps each region of one slice x f32[H, W] (regions: onehot f32[H, W, R]) -> f32[H, W].

  Per region r: u = (x - lo_r) / (hi_r - lo_r) over its own intensity range, y = curve_r(u),
  back to the range, times a scale s_r ~ U(scale_range), plus a shift drawn uniformly among those
  that keep [lo_r, hi_r] s_r inside [0, 1] (the midpoint shift when the range is wider). Clipped.
  """
  n = onehot.shape[-1]
  k_curve, k_scale, k_shift = jax.random.split(key, 3)
  inside = onehot > 0.5
  lo = jnp.min(jnp.where(inside, x[..., None], jnp.inf), axis=(0, 1))
  hi = jnp.max(jnp.where(inside, x[..., None], -jnp.inf), axis=(0, 1))
  present = jnp.isfinite(lo)
  lo = jnp.where(present, lo, 0.0)
  hi = jnp.where(present, hi, 1.0)
  span = jnp.maximum(hi - lo, _EPS)
  luts = jax.vmap(lambda k, p: _bezier_lut(k, p))(jax.random.split(k_curve, n),
                                                 jnp.broadcast_to(non_monotone_prob, (n,)))
  u = (x[..., None] - lo) / span  # [H, W, R]
  y = jax.vmap(_apply_lut, in_axes=(2, 0), out_axes=2)(u, luts)
  scale = jax.random.uniform(k_scale, (n,), minval=scale_range[0], maxval=scale_range[1])
  y = (lo + span * y) * scale
  s_lo, s_hi = -lo * scale, 1.0 - hi * scale
  shift = jnp.where(s_hi >= s_lo, s_lo + (s_hi - s_lo) * jax.random.uniform(k_shift, (n,)),
                    0.5 * (s_lo + s_hi))
  y = jnp.clip(y + shift, 0.0, 1.0)
  return jnp.sum(y * onehot, axis=-1)


def location_scale(key: Array, images: Array, *, labels: Array | None = None,
                   num_labels: int = 2, non_monotone_prob: float | Sequence[float] | None = None,
                   scale_range: tuple[float, float] = (0.9, 1.1),
                   background_threshold: float | None = None) -> Array:
  """SLAug location-scale augmentation: random Bezier curve, scale and shift, global or per region.

  Per slice and region: intensities are normalised over the region's own range, mapped through a
  random cubic Bezier curve (monotone increasing, or with probability `non_monotone_prob` a curve of
  any shape, so the intensity ordering of tissues can invert), mapped back, scaled by
  s ~ U(`scale_range`) and shifted by a uniform shift that keeps the region's range in [0, 1].
  SLAug draws the shift from N(0, 0.5) clipped by the 20/80 percentiles; the uniform shift over the
  feasible range avoids a per-region sort and has the same support.

  Args:
    key: PRNG key.
    images: f32[B, H, W, 1] in [0, 1].
    labels: None (global: one curve per slice, SLAug's GLA), or int32[B, H, W] / [B, H, W, 1]
      organ labels 0..num_labels-1, 0 background (local, LLA: background and each organ their own
      curve; labels >= num_labels count as background).
    num_labels: static number of label values when `labels` is given.
    non_monotone_prob: chance of a non-monotone curve; a float or one per label value. Default
      0.5 global; local: 1.0 for the background and 0.5 for organs (as SLAug).
    scale_range: static (low, high) of the scale.
    background_threshold: pixels of the input <= this keep their value (SLAug keeps air black in
      LLA with 0.01). Default None global, 0.01 local.

  Returns:
    f32[B, H, W, 1] in [0, 1], same dtype as `images`; the masks stay valid.
  """
  images = _check_batch(images, 'location_scale')
  x = images[..., 0].astype(jnp.float32)
  if labels is None:
    onehot = jnp.ones(x.shape + (1,), jnp.float32)
    probs = jnp.asarray(0.5 if non_monotone_prob is None else non_monotone_prob, jnp.float32)
    probs = jnp.broadcast_to(probs, (1,))
  else:
    labels = jnp.asarray(labels)
    if labels.ndim == 4:
      labels = labels[..., 0]
    if labels.shape != x.shape:
      raise ValueError(f'dg.py location_scale: labels shape {labels.shape} does not match images '
                       f'{images.shape}')
    labels = jnp.where((labels >= 0) & (labels < num_labels), labels, 0).astype(jnp.int32)
    onehot = jax.nn.one_hot(labels, num_labels, dtype=jnp.float32)
    if non_monotone_prob is None:
      probs = jnp.full((num_labels,), 0.5, jnp.float32).at[0].set(1.0)
    else:
      probs = jnp.broadcast_to(jnp.asarray(non_monotone_prob, jnp.float32), (num_labels,))
    if background_threshold is None:
      background_threshold = 0.01
  out = jax.vmap(lambda k, xi, oh: _location_scale_one(k, xi, oh, probs, tuple(scale_range)))(
      jax.random.split(key, x.shape[0]), x, onehot)
  if background_threshold is not None:
    out = jnp.where(x <= background_threshold, x, out)
  return out[..., None].astype(images.dtype)


def saliency_fuse(global_img: Array, local_img: Array, saliency: Array, *, grid: int = 3) -> Array:
  """SLAug's saliency-balancing fusion: s * global + (1 - s) * local.

  The saliency (|d loss / d global_img| of the model, computed by the train step; the sign is
  ignored) is smoothed as SLAug does: averaged down to a `grid` x `grid` map (area resize), resized
  back bilinearly to H x W, then min-max normalised per slice to [0, 1] (a flat map, range under 0.1% of its maximum, gives s = 0: the local image). Where the
  model is sensitive, the globally augmented image is kept; elsewhere the locally augmented one.
  The saliency is treated as a constant (stop_gradient).

  Args:
    global_img, local_img: f32[B, H, W, 1] in [0, 1] (`location_scale` without / with labels).
    saliency: f32[B, H, W, 1] (or [B, H, W]), any real values.
    grid: static coarse grid side (SLAug: 3).

  Returns:
    f32[B, H, W, 1] in [0, 1].
  """
  global_img = _check_batch(global_img, 'saliency_fuse')
  b, h, w, _ = global_img.shape
  s = jnp.abs(jnp.asarray(saliency, jnp.float32)).reshape(b, h, w, 1)
  coarse = jax.image.resize(s, (b, grid, grid, 1), method='linear', antialias=True)
  s = jax.image.resize(coarse, (b, h, w, 1), method='linear')
  lo = jnp.min(s, axis=(1, 2, 3), keepdims=True)
  hi = jnp.max(s, axis=(1, 2, 3), keepdims=True)
  # A range under 0.1% of the maximum is rounding noise of a flat map: s = 0 there.
  s = jnp.clip((s - lo) / jnp.maximum(hi - lo, jnp.maximum(1e-3 * hi, _EPS)), 0.0, 1.0)
  s = jax.lax.stop_gradient(s)
  out = s * global_img + (1.0 - s) * jnp.asarray(local_img, jnp.float32)
  return jnp.clip(out, 0.0, 1.0).astype(global_img.dtype)
