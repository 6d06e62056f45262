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


def generator_losses(g_fn: Callable, f_fn: Callable, d_a_fn: Callable, d_b_fn: Callable,
                     real_a: jax.Array, real_b: jax.Array, *, lambda_cycle: float,
                     lambda_identity: float):
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

  Returns:
    (total_g, terms, (fake_a, fake_b)): total_g = g_adv + f_adv + cycle +
    identity (float32 scalar); terms holds those four, with `cycle` and
    `identity` already weighted; fake_a = F(real_b), fake_b = G(real_a).
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
  total = g_adv + f_adv + cycle + identity
  terms = dict(g_adv=g_adv, f_adv=f_adv, cycle=cycle, identity=identity)
  return total, terms, (fake_a, fake_b)


def discriminator_loss(d_fn: Callable, real: jax.Array, fake: jax.Array) -> jax.Array:
  """LSGAN discriminator loss 0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2)), f32 scalar."""
  return 0.5 * (mse(d_fn(real), 1.0) + mse(d_fn(fake), 0.0))
