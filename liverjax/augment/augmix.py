"""AugMix (Hendrycks et al., ICLR 2020) for segmentation slices, in JAX, keyed and vmappable.

AugMix draws `width` augmentation chains; chain i applies a random number of ops (uniform in the
inclusive `depth` range), each op chosen uniformly from a list, to the input. The chain outputs are
mixed with weights w ~ Dirichlet(alpha, ..., alpha), and the mixture is blended with the input with
a skip weight m ~ Beta(alpha, alpha):

    result = (1 - m) * image + m * sum_i w_i * chain_i(image)

The op list here is photometric / filter only (`ops.PHOTOMETRIC_OPS`: salt-and-pepper, Gaussian
blur, median blur, bilateral filter, brightness, contrast, sharpness, gamma, CLAHE), magnitudes
scaled by `severity` (1..10). The per-step randomness (op index, magnitudes, the salt-and-pepper
field) is drawn before the switch, so the branches are deterministic functions of it.

SEGMENTATION ADAPTATION. The original AugMix also puts geometric ops (rotate, translate, shear)
inside the chains. For segmentation that would make the mixture a blend of differently placed
anatomy whose label is no longer a single mask. So here the geometric ops (rotation, translation,
left-right flip) are sampled once per slice and applied to the image AND its mask (the mask with
nearest-neighbour sampling, so it stays binary) BEFORE the photometric mixture; every chain then
starts from the same moved image, and the photometric ops never touch the mask. With
`geometric=False` the mask is returned unchanged.

Inside jit the op choice is `jax.lax.switch` on a sampled index; the variable chain length is a
fixed `depth[1]` steps of a `lax.scan` whose step is kept only where step < the sampled depth.
Under vmap the switch evaluates every branch and selects (XLA cannot branch per batch element), so
one slice costs width * depth[1] * (sum of all op costs). `augmix_batch(..., shared_ops=True)`
draws the op choices once per batch instead (magnitudes stay per slice), so only the chosen op
runs: several times cheaper, with less op variety inside one batch.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from liverjax.augment import ops

Array = jax.Array


def mixing_weights(key: Array, width: int, alpha: float | Array) -> tuple[Array, Array]:
  """AugMix's mixing weights.

  Returns (w, m): w f32[width] ~ Dirichlet(alpha * ones(width)) (non-negative, sums to 1), and the
  skip weight m, an f32 scalar ~ Beta(alpha, alpha) in [0, 1]. Both come from one draw of
  width + 2 Gamma(alpha) variables (w = g[:width] / sum, m = g[-2] / (g[-2] + g[-1])): the
  textbook constructions, with a single (large) Gamma sampler in the compiled program.
  """
  g = jax.random.gamma(key, jnp.full((width + 2,), alpha, jnp.float32))
  g = jnp.maximum(g, jnp.finfo(jnp.float32).tiny)  # tiny alpha can underflow to 0
  w = g[:width] / jnp.sum(g[:width])
  m = g[width] / (g[width] + g[width + 1])
  return w.astype(jnp.float32), jnp.clip(m, 0.0, 1.0).astype(jnp.float32)


def _depth_range(depth: int | tuple[int, int]) -> tuple[int, int]:
  """Normalises `depth` (an int, or an inclusive (min, max) pair) and checks it."""
  lo, hi = (depth, depth) if isinstance(depth, int) else (int(depth[0]), int(depth[1]))
  if not 0 <= lo <= hi or hi < 1:
    raise ValueError(f'augmix: depth must be an int >= 1 or a pair 0 <= min <= max, max >= 1; got {depth}')
  return lo, hi


def chain_plan(key: Array, depth: tuple[int, int], shape: tuple[int, ...] = ()
               ) -> tuple[Array, Array]:
  """Draws the op choices of AugMix chains: (choices int32[*shape, max_depth] indexing
  `ops.PHOTOMETRIC_OPS`, n_steps int32[*shape] uniform in the inclusive depth range)."""
  lo, hi = depth
  k_depth, k_choice = jax.random.split(key)
  n_steps = jax.random.randint(k_depth, shape, lo, hi + 1)
  choices = jax.random.randint(k_choice, shape + (hi,), 0, len(ops.PHOTOMETRIC_OPS))
  return choices, n_steps


def _chain(key: Array, image: Array, depth: tuple[int, int], severity: int,
           plan: tuple[Array, Array] | None = None) -> Array:
  """One AugMix chain: between depth[0] and depth[1] random photometric ops applied in sequence.

  Takes `image` f32[H, W, 1] in [0, 1]; returns the same shape in [0, 1]. `plan` (choices
  int32[max_depth], n_steps int32), when given, fixes which ops run; their magnitudes still
  come from `key`.
  """
  _, hi = depth
  branches = [functools.partial(fn, severity=severity) for _, fn in ops.PHOTOMETRIC_OPS]
  k_plan, k_steps = jax.random.split(key)
  choices, n_steps = chain_plan(k_plan, depth) if plan is None else plan
  # All randomness is drawn here, outside the switch: the branches are pure functions of it.
  u, fields = jax.vmap(lambda k: ops.draw_randoms(k, image.shape))(jax.random.split(k_steps, hi))

  def step(x, inputs):
    i, choice, u_i, field_i = inputs
    y = jax.lax.switch(choice, branches, u_i, field_i, x)
    return jnp.where(i < n_steps, y, x), None

  out, _ = jax.lax.scan(step, image, (jnp.arange(hi), choices, u, fields))
  return out


def augmix(key: Array, image: Array, mask: Array, *, width: int = 3,
           depth: int | tuple[int, int] = (1, 3), alpha: float = 1.0, severity: int = 3,
           geometric: bool = True, flip_prob: float = 0.5,
           plan: tuple[Array, Array] | None = None) -> tuple[Array, Array]:
  """AugMix on one slice, with the segmentation adaptation described in the module docstring.

  Takes a PRNG key, `image` f32[H, W, 1] in [0, 1] and `mask` [H, W, 1] (0/1, any numeric dtype).
  `width` chains (static), chain length uniform in the inclusive `depth` range (static), Dirichlet /
  Beta concentration `alpha`, op magnitude `severity` 1..10 (static). With `geometric`, a random
  rotation/translation/flip (`ops.random_affine`, flip probability `flip_prob`) moves image and mask
  first. `plan` (choices int32[width, max_depth], n_steps int32[width], from `chain_plan`) fixes
  the chains' ops, e.g. to share them over a batch (see `augmix_batch`). Returns (image
  f32[H, W, 1] in [0, 1], mask of the input's shape and dtype).
  """
  if not 1 <= int(severity) <= 10:
    raise ValueError(f'augmix: severity must be in 1..10, got {severity}')
  if int(width) < 1:
    raise ValueError(f'augmix: width must be >= 1, got {width}')
  depth = _depth_range(depth)
  k_geo, k_mix, k_chains = jax.random.split(key, 3)
  if geometric:
    image, mask = ops.random_affine(k_geo, image, mask, severity, flip_prob)
  x = image.astype(jnp.float32)
  w, m = mixing_weights(k_mix, width, alpha)
  chain_keys = jax.random.split(k_chains, width)
  if plan is None:
    chains = jax.vmap(lambda k: _chain(k, x, depth, severity))(chain_keys)
  else:
    # A Python loop, not vmap: the op index of each chain step stays a scalar, so
    # lax.switch runs only the chosen op instead of all of them.
    chains = jnp.stack([_chain(chain_keys[i], x, depth, severity, (plan[0][i], plan[1][i]))
                        for i in range(width)])
  mix = jnp.tensordot(w, chains, axes=1)
  out = (1.0 - m) * x + m * mix
  return jnp.clip(out, 0.0, 1.0).astype(image.dtype), mask


def augmix_batch(key: Array, images: Array, masks: Array, *, shared_ops: bool = False,
                 **kwargs) -> tuple[Array, Array]:
  """`augmix` vmapped over a batch with an independent key per slice.

  Takes a PRNG key, `images` f32[B, H, W, 1] in [0, 1], `masks` [B, H, W, 1]; keyword arguments as
  `augmix` (static). Returns (images f32[B, H, W, 1] in [0, 1], masks [B, H, W, 1]).

  `shared_ops` (static): the slices of the batch share which op each chain step applies (drawn
  per batch), while magnitudes, noise, mixing weights and geometry stay per slice. Under vmap a
  per-slice op choice makes `lax.switch` evaluate every op for every slice (9 ops); sharing the
  choice evaluates one, several times less work, at the price of less variety within a batch
  (across batches the ops vary as before).
  """
  k_plan, key = jax.random.split(key)
  if shared_ops:
    width = int(kwargs.get('width', 3))
    kwargs['plan'] = chain_plan(k_plan, _depth_range(kwargs.get('depth', (1, 3))), (width,))
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(functools.partial(augmix, **kwargs))(keys, images, masks)
