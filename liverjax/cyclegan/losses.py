"""The CycleGAN objective (LSGAN): generator and discriminator losses. Pure JAX.

Domain A = CT, B = MR; G: CT -> MR, F: MR -> CT; D_A judges CT, D_B judges MR.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def mse(x: jax.Array, target: float) -> jax.Array:
  """The LSGAN term mean((x - target)^2) of logits `x`, float32 scalar."""
  return jnp.mean(jnp.square(x.astype(jnp.float32) - target))


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
  """mean(|x - y|), float32 scalar."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def _shift(x: jax.Array, dy: int, dx: int) -> jax.Array:
  """x [B,H,W,C] shifted by (dy, dx) pixels, edges replicated (same shape)."""
  h, w = x.shape[1:3]
  p = max(abs(dy), abs(dx))
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
  return xp[:, p + dy:p + dy + h, p + dx:p + dx + w]


def _box3(x: jax.Array) -> jax.Array:
  """3x3 mean filter of x [B,H,W,C], edges replicated."""
  return sum(_shift(x, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0


MIND_OFFSETS = ((0, 2), (0, -2), (2, 0), (-2, 0))


def mind_descriptor(x: jax.Array, eps: float = 1e-3) -> jax.Array:
  """The modality-independent neighbourhood descriptor (MIND, Heinrich et al. 2012) of images.

  Per pixel and offset r of MIND_OFFSETS: D_r = 3x3 mean of (x - x shifted by r)^2 (a patch
  distance), V = mean_r D_r (+ eps, the local variance), MIND_r = exp(-D_r / V), divided by its
  maximum over r. It describes where the local edges run, not how bright the tissue is, so a CT
  slice and the same anatomy in MR have similar descriptors.

  Args:
    x: f32[B,H,W,1] images in [0, 1].
    eps: floor of the local variance (flat regions give ~1 in every channel).

  Returns:
    f32[B,H,W,len(MIND_OFFSETS)] in (0, 1].
  """
  x = x.astype(jnp.float32)
  d = jnp.concatenate([_box3(jnp.square(x - _shift(x, dy, dx))) for dy, dx in MIND_OFFSETS],
                      axis=-1)
  v = jnp.mean(d, axis=-1, keepdims=True) + eps
  m = jnp.exp(-d / v)
  return m / jnp.max(m, axis=-1, keepdims=True)


def structure_loss(x: jax.Array, y: jax.Array) -> jax.Array:
  """mean |MIND(x) - MIND(y)|: how far translation y moved the edges of x (f32 scalar, >= 0)."""
  return jnp.mean(jnp.abs(mind_descriptor(x) - mind_descriptor(y)))


def generator_losses(g_fn: Callable, f_fn: Callable, d_a_fn: Callable, d_b_fn: Callable,
                     real_a: jax.Array, real_b: jax.Array, *, lambda_cycle: float,
                     lambda_identity: float, lambda_structure: float = 0.0):
  """The CycleGAN generator objective (LSGAN) for a CT batch and an MR batch.

  Args:
    g_fn: G, CT images f32[B,H,W,1] in [0,1] -> MR-style images, same shape.
    f_fn: F, MR -> CT-style, same contract.
    d_a_fn: D_A, images -> patch logits (judges CT).
    d_b_fn: D_B, images -> patch logits (judges MR).
    real_a: f32[B,H,W,1] CT slices in [0,1].
    real_b: f32[B,H,W,1] MR slices in [0,1].
    lambda_cycle: weight of the cycle L1 terms.
    lambda_identity: identity L1 weight relative to lambda_cycle (0 disables,
      and then G(b), F(a) are not computed).
    lambda_structure: weight of the structure term lambda_structure *
      (structure_loss(a, G(a)) + structure_loss(b, F(b))): the translation keeps the
      MIND descriptor (where the edges run) of its input (0 disables).

  Returns:
    (total_g, terms, (fake_a, fake_b)): total_g = g_adv + f_adv + cycle +
    identity + structure (float32 scalar); terms holds those five, with `cycle`,
    `identity` and `structure` already weighted; fake_a = F(real_b), fake_b = G(real_a).
  """
  fake_b = g_fn(real_a)
  fake_a = f_fn(real_b)
  rec_a = f_fn(fake_b)
  rec_b = g_fn(fake_a)
  g_adv = mse(d_b_fn(fake_b), 1.0)
  f_adv = mse(d_a_fn(fake_a), 1.0)
  cycle = lambda_cycle * (l1(rec_a, real_a) + l1(rec_b, real_b))
  if lambda_identity > 0:
    identity = lambda_identity * lambda_cycle * (l1(g_fn(real_b), real_b) +
                                                 l1(f_fn(real_a), real_a))
  else:
    identity = jnp.zeros((), jnp.float32)
  structure = jnp.zeros((), jnp.float32)
  if lambda_structure > 0:
    structure = lambda_structure * (structure_loss(real_a, fake_b) +
                                    structure_loss(real_b, fake_a))
  total = g_adv + f_adv + cycle + identity + structure
  terms = dict(g_adv=g_adv, f_adv=f_adv, cycle=cycle, identity=identity, structure=structure)
  return total, terms, (fake_a, fake_b)


def discriminator_loss(d_fn: Callable, real: jax.Array, fake: jax.Array) -> jax.Array:
  """LSGAN discriminator loss 0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2)), f32 scalar."""
  return 0.5 * (mse(d_fn(real), 1.0) + mse(d_fn(fake), 0.0))
