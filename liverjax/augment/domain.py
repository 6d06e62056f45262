"""The CT <-> MRI domain transformation (the study's "first augmentation").

A source-domain training slice is made to look like the other modality, at
random, so that a segmentation network trained on it generalises across the
CT <-> MR domain shift. The transformation is photometric only: nothing moves,
so the liver mask stays valid, and masks are never an input.

Steps, every parameter drawn from the ranges in `DomainParams`:
  1. Tissue classes. Each pixel is softly assigned (products of sigmoids between
     thresholds, so the five memberships sum to 1) to air/gas, fat, soft tissue,
     fluid and bone. CT thresholds come from the HU window (center 40, width
     400); MR thresholds are multiples of quantiles of the slice's body pixels.
  2. Per-tissue remapping to the target modality's ordering: class k goes to a
     jittered target level L_k plus the within-class residual of the original
     intensity scaled by a random gain, out = sum_k P_k (L_k + G_k (x - mu_k)).
  3. Edges (Sobel) and distance maps (exact city-block distance transforms, two
     cummin passes per axis): dark rims along edges, weighted towards fat/water
     interfaces (the out-of-phase "India ink" look), or edge enhancement; for MR
     targets a smooth bias field times a surface-coil gain that decays with the
     distance to the body outline.
  4. Gamma, contrast and brightness; Gaussian blur or unsharp sharpening of random
     strength; global 256-bin histogram equalisation (over body pixels) blended
     in with a random weight; Rician noise for MR targets, spatially correlated
     Gaussian noise (and black air) for CT targets.

Everything is pure JAX on one slice `f32[H, W, 1]` driven by a PRNG key;
`domain_transform_batch` vmaps it over a batch and is jit-able with `source`,
`prob` and `params` static.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from liverjax.augment import filters

Range = tuple[float, float]

CLASSES = ("air", "fat", "soft", "fluid", "bone")
AIR, FAT, SOFT, FLUID, BONE = range(5)

# CT window thresholds on the normalised scale x = (HU + 160) / 400, in the
# order of increasing CT intensity: air | fat | fluid | soft | bone.
_CT_ORDER = (AIR, FAT, FLUID, SOFT, BONE)
# The soft/bone boundary sits at 190 HU: contrast-enhanced liver reaches ~0.71-0.74
# (125-135 HU) and must stay soft tissue.
_CT_THRESHOLDS = (0.03, 0.33, 0.47, 0.88)  # ~ -148, -28, +28, +190 HU
_CT_WIDTHS = (0.008, 0.015, 0.01, 0.025)  # sigmoid scales (~3-10 HU)
# MR: pixels outside the body are air; inside, increasing intensity goes
# T1 in-phase: very dark (cortical bone, gas) | fluid | soft tissue | fat
# T2-SPIR:     very dark (cortical bone, gas) | fat (suppressed) | soft | fluid
_T1_ORDER = (BONE, FLUID, SOFT, FAT)
_T2_ORDER = (BONE, FAT, SOFT, FLUID)
# Body = blurred intensity above the slice's minimum + this: relative, so that
# z-score-normalised slices (air at ~0.3-0.4, not 0) still find their outline.
_BODY_THRESHOLD = {"ct": 0.03, "t1": 0.06, "t2": 0.06}
_BLUR_RADIUS = 3  # taps on each side of the private Gaussian blur


@dataclasses.dataclass(frozen=True)
class DomainParams:
  """Ranges of the random parameters of `domain_transform`.

  Every `Range` is a (low, high) pair sampled uniformly; every `*_prob` is the
  chance that a step is applied at all. Intensities are on the [0, 1] scale of
  the normalised slices. Level tuples list the five classes in the order
  (air, fat, soft, fluid, bone) of `CLASSES`. Hashable, so it can be a static
  argument under jit.
  """
  # Target-modality levels per class.
  t1_levels: tuple[Range, ...] = (   # T1 in-phase: fat bright, liver medium, fluid dark
      (0.0, 0.05), (0.72, 1.0), (0.38, 0.62), (0.04, 0.24), (0.05, 0.4))
  t2_levels: tuple[Range, ...] = (   # T2-SPIR: fluid bright, fat suppressed, liver dark
      (0.0, 0.05), (0.08, 0.3), (0.2, 0.45), (0.72, 1.0), (0.03, 0.25))
  ct_levels: tuple[Range, ...] = (   # CT window: fat ~-140..-60 HU, fluid ~0..30 HU
      (0.0, 0.01), (0.05, 0.25), (0.5, 0.68), (0.38, 0.47), (0.0, 0.05))
  t2_prob: float = 0.5  # target "mr"/None from CT: chance of T2-like (else T1-like)
  # MR -> CT: the "bone" class is what is very dark inside the body in MR
  # (cortical bone, gas); with this chance it becomes CT-bright, else stays black.
  ct_bone_bright_prob: float = 0.5
  ct_bone_bright: Range = (0.8, 1.0)
  # Gain on the within-class residual (x - class mean): keeps texture. Air gets 0.
  texture_gain: Range = (0.5, 1.8)
  t2_soft_gain: Range = (-1.5, 1.0)  # negative: spleen brighter than liver in T2
  # Dark rims (MR targets): along Sobel edges, exp(-distance / width).
  rim_prob: float = 0.6
  rim_strength: Range = (0.2, 0.8)  # fractional darkening on the edge
  rim_width: Range = (0.5, 1.5)  # pixels
  edge_threshold: Range = (0.1, 0.35)  # edges: Sobel magnitude > this x its maximum
  rim_interface_mix: Range = (0.0, 1.0)  # 1: rims only at fat/water interfaces
  # Edge enhancement (any target): out += a * rim * (out - blur(out)).
  edge_enhance_prob: float = 0.3
  edge_enhance_amount: Range = (0.5, 2.0)
  # MR bias field: exp(strength * smooth field in [-1, 1]) x surface-coil gain
  # 1 + g exp(-distance to body outline / (depth * size)), normalised over the body.
  bias_prob: float = 0.8
  bias_strength: Range = (0.05, 0.3)
  surface_gain: Range = (0.0, 0.5)
  surface_depth: Range = (0.05, 0.2)
  # Photometric.
  gamma: Range = (0.75, 1.35)
  contrast: Range = (0.8, 1.25)  # about the body mean
  brightness: Range = (-0.06, 0.06)
  # Filtering: out + a (out - blur_sigma(out)), a < 0 blurs (a = -1: the blur), a > 0 sharpens.
  filter_prob: float = 0.6
  blur_sigma: Range = (0.5, 1.2)
  filter_amount: Range = (-1.0, 1.0)
  # Global histogram equalisation (256 bins, body-weighted) blended in.
  histeq_prob: float = 0.3
  histeq_weight: Range = (0.1, 0.5)
  # Noise: Rician for MR targets, Gaussian blurred by ct_noise_corr pixels for CT.
  noise_prob: float = 0.8
  mr_noise_sigma: Range = (0.005, 0.035)
  ct_noise_sigma: Range = (0.005, 0.03)
  ct_noise_corr: float = 0.7


# ------------------------------------------------------------------ helpers


_N_DRAWS = 48  # uniform numbers drawn per slice (one PRNG call: cheap to compile)


def _sampler(key):
  """Returns draw(ranges) and chance(p), both consuming one uniform vector.

  draw((lo, hi)) is a scalar U(lo, hi); draw of a tuple of n ranges is f32[n].
  chance(p) is a traced bool, True with probability p.
  """
  u = jax.random.uniform(key, (_N_DRAWS,))
  pos = [0]

  def draw(ranges):
    r = np.asarray(ranges, np.float32)
    lo, hi = r[..., 0], r[..., 1]
    n = lo.size
    if pos[0] + n > _N_DRAWS:
      raise RuntimeError("domain.py: _N_DRAWS too small")
    v = u[pos[0]:pos[0] + n].reshape(lo.shape)
    pos[0] += n
    return lo + (hi - lo) * v

  def chance(p):
    return draw((0.0, 1.0)) < p

  return draw, chance


def _blur(x, sigma, radius=_BLUR_RADIUS):
  """Separable Gaussian blur of f32[H, W] with a traced sigma (all 2r+1 taps, edge padding)."""
  return filters.gaussian_blur(x, sigma, radius, radius=radius, mode="edge")


_SOBEL_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _sobel(x):
  """Sobel gradient magnitude of f32[H, W] (edge padding: 0 on flat images)."""
  v = filters.shifted_views(x, 1, _SOBEL_OFFSETS, "edge")
  s = [v[0:3], v[3:6], v[6:9]]  # s[dy + 1][dx + 1]
  gx = (s[0][2] + 2 * s[1][2] + s[2][2]) - (s[0][0] + 2 * s[1][0] + s[2][0])
  gy = (s[2][0] + 2 * s[2][1] + s[2][2]) - (s[0][0] + 2 * s[0][1] + s[0][2])
  return jnp.sqrt(gx * gx + gy * gy) / 8.0


def _minmax3(x, fn):
  """3x3 min or max filter (fn = jnp.minimum / jnp.maximum) of f32[H, W], separable."""
  p = jnp.pad(x, ((0, 0), (1, 1)), mode="edge")
  x = fn(fn(p[:, :-2], p[:, 1:-1]), p[:, 2:])
  p = jnp.pad(x, ((1, 1), (0, 0)), mode="edge")
  return fn(fn(p[:-2], p[1:-1]), p[2:])


def _open3(mask):
  """Morphological opening of a {0,1} f32[H, W] with a 3x3 square."""
  return _minmax3(_minmax3(mask, jnp.minimum), jnp.maximum)


def _hull(mask):
  """Orthogonal hull of a {0,1} f32[H, W]: pixels with mask pixels on their left
  and right in their row and above and below in their column (fills holes)."""
  def between(m, axis):
    n = m.shape[axis]
    idx = jnp.arange(n)
    idx = idx[:, None] if axis == 0 else idx[None, :]
    any_ = m.max(axis=axis, keepdims=True) > 0
    first = jnp.argmax(m, axis=axis, keepdims=True)
    last = n - 1 - jnp.argmax(jnp.flip(m, axis=axis), axis=axis, keepdims=True)
    return any_ & (idx >= first) & (idx <= last)
  return (between(mask, 0) & between(mask, 1)).astype(jnp.float32)


def _l1_distance(feature):
  """Exact city-block distance (pixels) of each pixel to the nearest True pixel.

  bool[H, W] -> f32[H, W]; H + W where there is no feature pixel. Separable:
  along each axis d[j] = min_k g[k] + |j - k| = min(j + cummin_k<=j(g[k] - k),
  -j + cummin_k>=j(g[k] + k)). lax.cummin compiles fast; XLA turns it into a
  log-depth scan on GPU (on CPU it is a quadratic reduce_window, still cheap).
  """
  h, w = feature.shape
  big = float(h + w)
  g = jnp.where(feature, 0.0, big)
  for axis, n in ((1, w), (0, h)):
    j = jnp.arange(n, dtype=jnp.float32)
    j = j[None, :] if axis == 1 else j[:, None]
    fwd = j + jax.lax.cummin(g - j, axis=axis)
    bwd = -j + jax.lax.cummin(g + j, axis=axis, reverse=True)
    g = jnp.minimum(fwd, bwd)
  return jnp.minimum(g, big)


def _histogram(x, weights, bins=256):
  """Weighted histogram of x in [0, 1]: (bin index int32[H, W], f32[bins])."""
  idx = jnp.clip(jnp.floor(x * bins), 0, bins - 1).astype(jnp.int32)
  hist = jnp.zeros((bins,), jnp.float32).at[idx.ravel()].add(weights.ravel())
  return idx, hist


def _weighted_quantiles(x, weights, qs, bins=256):
  """Quantiles (bin centres, 1/bins resolution) of x under weights; f32[len(qs)]."""
  _, hist = _histogram(x, weights, bins)
  cdf = jnp.cumsum(hist) / jnp.maximum(hist.sum(), 1e-6)
  idx = jnp.argmax(cdf[None, :] >= jnp.asarray(qs)[:, None], axis=1)
  return (idx.astype(jnp.float32) + 0.5) / bins


def _equalize(x, weights, bins=256):
  """Global histogram equalisation of x in [0, 1] with a weighted histogram.

  The CDF is interpolated linearly inside each bin, so the mapping is
  continuous and monotone (no 1/bins steps on smooth gradients).
  """
  idx, hist = _histogram(x, weights, bins)
  total = jnp.maximum(hist.sum(), 1e-6)
  below = jnp.cumsum(hist) - hist
  frac = jnp.clip(x * bins - idx, 0.0, 1.0)
  return (below[idx] + frac * hist[idx]) / total


def _ordered_membership(x, order, thresholds, widths):
  """Soft classes along increasing intensity: f32[H, W, 5] (unused classes 0).

  With s_i = sigmoid((x - t_i) / w_i), class order[i] gets
  s_0 ... s_{i-1} (1 - s_i): non-negative and summing to 1 for any thresholds.
  """
  probs = [jnp.zeros_like(x)] * len(CLASSES)
  above = jnp.ones_like(x)
  for cls, t, w in zip(order[:-1], thresholds, widths):
    s = jax.nn.sigmoid((x - t) / w)
    probs[cls] = above * (1.0 - s)
    above = above * s
  probs[order[-1]] = above
  return jnp.stack(probs, axis=-1)


def _canonical_source(source):
  s = str(source).lower()
  if s == "ct":
    return "ct"
  if s in ("t1", "t2"):
    return s
  if s == "mr":
    raise ValueError("domain.py: source 'mr' is ambiguous: T1 and T2-SPIR order the tissues "
                     "oppositely; pass the slice's sequence, 't1' or 't2' "
                     "(see source_of_sequence)")
  raise ValueError(f"domain.py: source must be 'ct', 't1' or 't2', got {source!r}")


def source_of_sequence(sequence: str) -> str:
  """The domain-transform source of a volume's sequence: "ct" -> "ct", "t1_in" / "t1_out" ->
  "t1", "t2" -> "t2" (ValueError otherwise)."""
  s = str(sequence).lower()
  if s in ("ct", "t2"):
    return s
  if s in ("t1", "t1_in", "t1_out"):
    return "t1"
  raise ValueError(f"domain.py: unknown sequence {sequence!r}; expected ct, t1_in, t1_out or t2")


def _canonical_target(target, source):
  if target is None:
    return "mr" if source == "ct" else "ct"
  t = str(target).lower()
  if t not in ("ct", "mr", "t1", "t2"):
    raise ValueError(
        f"domain.py: target must be None, 'ct', 'mr', 't1' or 't2', got {target!r}")
  return t


def _check_image(image):
  if image.ndim != 3 or image.shape[-1] != 1:
    raise ValueError(f"domain.py: expected an image f32[H, W, 1], got shape {image.shape}")


def _analyse(x, source):
  """Soft tissue classes f32[H, W, 5] and soft body mask f32[H, W] of x f32[H, W]."""
  smooth = _blur(x, 1.0)
  fg = (smooth > jnp.min(smooth) + _BODY_THRESHOLD[source]).astype(jnp.float32)
  if source != "ct":
    fg = _open3(fg)  # drop background-noise specks before filling
  # Orthogonal hull of the foreground: fills dark structures inside the body
  # (gas, lungs, cortical bone).
  inside_hard = _hull(fg)
  body = _blur(inside_hard, 0.7)
  if source == "ct":
    # Air is what lies within 0.03 of the slice's darkest value: CT clipped above
    # -160 HU (BTCV: -125 HU, 0.09 in window units) has no black air. Outside the
    # body everything is air.
    air = jnp.maximum(_CT_THRESHOLDS[0], jnp.min(x) + _CT_THRESHOLDS[0])
    probs = _ordered_membership(x, _CT_ORDER, (air,) + _CT_THRESHOLDS[1:], _CT_WIDTHS)
    probs = (probs * inside_hard[..., None]
             + (1.0 - inside_hard)[..., None] * jax.nn.one_hot(AIR, len(CLASSES)))
    return probs, body
  # MR: thresholds as multiples of body-pixel quantiles (units are arbitrary).
  # The soft-tissue reference is a low quantile in T1 (fat, bright, can fill a
  # third of the body) and a middle one in T2 (fat, suppressed, is dark).
  weights = jnp.where(inside_hard.sum() >= 1.0, inside_hard, jnp.ones_like(x))
  q = _weighted_quantiles(x, weights, (0.35 if source == "t1" else 0.55, 0.95))
  m = jnp.maximum(q[0], 0.05)  # typical soft tissue / liver
  hi = jnp.maximum(q[1], m)  # fat (T1) or fluid (T2)
  if source == "t1":
    order = _T1_ORDER
    thresholds = (0.15 * m, 0.72 * m, jnp.maximum(m + 0.45 * (hi - m), 1.3 * m))
  else:
    order = _T2_ORDER
    thresholds = (0.3 * m, 0.8 * m, jnp.maximum(m + 0.5 * (hi - m), 1.6 * m))
  widths = (0.05 * m,) * 3
  inner = _ordered_membership(x, order, thresholds, widths)
  # Very dark pixels count as "bone" (cortical bone, gas) only 2 pixels or more
  # inside the outline; nearer, they are the partial-volume edge of the air.
  core = _minmax3(_minmax3(inside_hard, jnp.minimum), jnp.minimum)
  dark_edge = inner[..., BONE] * (1.0 - core)
  air = (1.0 - inside_hard) + inside_hard * dark_edge
  inner = inner.at[..., BONE].multiply(core)
  probs = inner * inside_hard[..., None] + air[..., None] * jax.nn.one_hot(AIR, len(CLASSES))
  return probs, body


# ------------------------------------------------------------------ public API


def tissue_probabilities(image, source) -> jax.Array:
  """Soft tissue-class map of one normalised slice.

  Args:
    image: f32[H, W, 1] in [0, 1] (CT windowed, or MR percentile-scaled).
    source: "ct", "t1" (fat brightest, fluid dark) or "t2" (T2-SPIR: fluid
      brightest, fat suppressed); "mr" is an error (`source_of_sequence`).

  Returns:
    f32[H, W, 5] memberships of (air, fat, soft, fluid, bone), each in [0, 1],
    summing to 1 per pixel. For MR, "air" is outside the body and "bone" is
    whatever is very dark inside it (cortical bone, bowel gas).
  """
  image = jnp.asarray(image)
  _check_image(image)
  probs, _ = _analyse(image[..., 0].astype(jnp.float32), _canonical_source(source))
  return probs


def _target_levels(draw, chance, target, source, params):
  """Jittered target levels f32[5] and texture gains f32[5] (air gain 0)."""
  gains = draw([params.texture_gain] * 5).at[AIR].set(0.0)
  if target == "ct":
    levels = draw(params.ct_levels)
    bright = chance(1.0 if source == "ct" else params.ct_bone_bright_prob)
    levels = levels.at[BONE].set(
        jnp.where(bright, draw(params.ct_bone_bright), levels[BONE]))
    return levels, gains
  is_t2 = chance({"t1": 0.0, "t2": 1.0}.get(target, params.t2_prob))
  levels = jnp.where(is_t2, draw(params.t2_levels), draw(params.t1_levels))
  gains = gains.at[SOFT].set(jnp.where(is_t2, draw(params.t2_soft_gain), gains[SOFT]))
  return levels, gains


def _bias_field(coef, shape, strength):
  """exp(strength * f): f the low-order polynomial field with coefficients coef f32[5]
  (in x, y, xy, x^2, y^2 over [-1, 1]^2), scaled to [-1, 1]."""
  h, w = shape
  y = jnp.linspace(-1.0, 1.0, h)[:, None]
  x = jnp.linspace(-1.0, 1.0, w)[None, :]
  basis = jnp.stack(jnp.broadcast_arrays(x, y, x * y, x * x - 1 / 3, y * y - 1 / 3))
  f = jnp.tensordot(coef, basis, axes=1)
  f = f / jnp.maximum(jnp.abs(f).max(), 1e-6)
  return jnp.exp(strength * f)


def domain_transform(key, image, *, source: str, target: str | None = None,
                     params: DomainParams = DomainParams()) -> jax.Array:
  """Makes one slice look like the other modality (intensity and texture only).

  Args:
    key: a PRNG key; the output is a deterministic function of (key, image).
    image: f32[H, W, 1] in [0, 1], a normalised slice of the `source` modality.
    source: "ct", "t1" or "t2" (the slice's sequence; "mr" is an error).
    target: "t1" (T1 in-phase-like), "t2" (T2-SPIR-like), "mr" (either, at
      random with `params.t2_prob`), "ct" (CT-window-like), or None: "mr" from
      CT, "ct" from MR. Static.
    params: the parameter ranges. Static.

  Returns:
    f32[H, W, 1] in [0, 1], same shape and dtype as `image`, spatially aligned
    with it (labels stay valid).
  """
  image = jnp.asarray(image)
  _check_image(image)
  src = _canonical_source(source)
  tgt = _canonical_target(target, src)
  mr_target = tgt != "ct"
  x = jnp.clip(image[..., 0].astype(jnp.float32), 0.0, 1.0)
  h, w = x.shape
  k_draw, k_noise = jax.random.split(key)
  draw, chance = _sampler(k_draw)

  def gated(p, value):  # value with probability p, else 0
    return jnp.where(chance(p), value, 0.0)

  # 1-2. Tissue classes and per-class remapping with texture kept.
  probs, body = _analyse(x, src)
  body_w = jnp.where(body.sum() >= 1.0, body, jnp.ones_like(body))  # all on blank slices
  levels, gains = _target_levels(draw, chance, tgt, src, params)
  mass = probs.sum(axis=(0, 1))
  mu = (probs * x[..., None]).sum(axis=(0, 1)) / (mass + 1e-6)
  out = (probs * (levels + gains * (x[..., None] - mu))).sum(axis=-1)

  # 3. Edges and distance maps: rims / edge enhancement, bias field.
  mag = _sobel(_blur(x, 0.6))
  thr = draw(params.edge_threshold) * mag.max()
  edges = (mag > thr) & (mag > 0.01)
  width = draw(params.rim_width)
  rim = jnp.exp(-_l1_distance(edges) / width)
  if mr_target:  # dark rims, weighted towards fat/water interfaces
    fat = _blur(probs[..., FAT], 1.0)
    water = _blur(probs[..., SOFT] + probs[..., FLUID], 1.0)
    interface = jnp.clip(4.0 * fat * water, 0.0, 1.0)
    mix = draw(params.rim_interface_mix)
    dark = gated(params.rim_prob, draw(params.rim_strength))
    out = out * (1.0 - dark * rim * ((1.0 - mix) + mix * interface))
  enhance = gated(params.edge_enhance_prob, draw(params.edge_enhance_amount))
  out = out + enhance * rim * (out - _blur(out, 1.0))

  if mr_target:
    strength = gated(params.bias_prob, draw(params.bias_strength))
    gain = gated(params.bias_prob, draw(params.surface_gain))
    depth = draw(params.surface_depth) * max(h, w)
    coef = draw([(-1.0, 1.0)] * 5)
    dist_out = _l1_distance(body < 0.5)  # distance to the body outline
    bias = _bias_field(coef, (h, w), strength) * (1.0 + gain * jnp.exp(-dist_out / depth))
    bias = bias / ((bias * body_w).sum() / body_w.sum())
    out = out * bias

  # 4. Gamma, contrast and brightness about the body mean.
  out = jnp.clip(out, 0.0, 1.0) ** draw(params.gamma)
  mean = (out * body_w).sum() / body_w.sum()
  out = (out - mean) * draw(params.contrast) + mean
  out = out + draw(params.brightness)
  if not mr_target:
    out = out * body  # CT air is black
  out = jnp.clip(out, 0.0, 1.0)

  # Blur or unsharp sharpen.
  sigma = draw(params.blur_sigma)
  amount = gated(params.filter_prob, draw(params.filter_amount))
  out = out + amount * (out - _blur(out, sigma))
  out = jnp.clip(out, 0.0, 1.0)

  # Histogram equalisation, blended.
  weight = gated(params.histeq_prob, draw(params.histeq_weight))
  weight = jnp.where(body.sum() >= 1.0, weight, 0.0)  # nothing to equalise on blank slices
  out = (1.0 - weight) * out + weight * _equalize(out, body_w)
  if not mr_target:
    out = out * body

  # Noise.
  noise = jax.random.normal(k_noise, (2, h, w))
  if mr_target:
    s = gated(params.noise_prob, draw(params.mr_noise_sigma))
    out = jnp.sqrt((out + s * noise[0]) ** 2 + (s * noise[1]) ** 2)
  else:
    s = gated(params.noise_prob, draw(params.ct_noise_sigma))
    n = _blur(noise[0], params.ct_noise_corr)
    n = n / jnp.maximum(n.std(), 1e-6)
    out = out + s * n * body  # air stays black: it lies far below the CT window
  out = jnp.clip(out, 0.0, 1.0)
  return out[..., None].astype(image.dtype)


def domain_transform_batch(key, images, *, source: str, prob: float = 0.8,
                           params: DomainParams = DomainParams()) -> jax.Array:
  """Domain-transforms each slice of a batch with probability `prob`.

  Args:
    key: a PRNG key.
    images: f32[B, H, W, 1] in [0, 1], all of the `source` modality.
    source: "ct" (-> T1- or T2-like at random), "t1" or "t2" (-> CT-like). Static.
    prob: chance that a slice is transformed; the others pass through unchanged.
      Static (prob <= 0 returns `images` itself).
    params: the parameter ranges. Static.

  Returns:
    f32[B, H, W, 1] in [0, 1], same shape and dtype as `images`.
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 1:
    raise ValueError(f"domain.py: expected images f32[B, H, W, 1], got shape {images.shape}")
  if isinstance(prob, (int, float)) and prob <= 0:
    return images

  def one(k, img):
    k_apply, k_t = jax.random.split(k)
    out = domain_transform(k_t, img, source=source, params=params)
    return jnp.where(jax.random.bernoulli(k_apply, prob), out, img)

  return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)
