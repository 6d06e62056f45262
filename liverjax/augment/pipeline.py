"""The on-device augmentation of a training batch, driven by `config.augment`.

Order: the CT<->MR domain transformation (`liverjax.augment.domain`, images only), then AugMix
(`liverjax.augment.augmix`, image and mask). Identity where both are off. The config fields are
Python values, so they are static under jit: close over them, e.g.

    aug = jax.jit(functools.partial(augment_batch, augment_config=config.augment, source='ct'))
    images, masks = aug(key, images, masks)
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from liverjax.augment import augmix as augmix_lib
from liverjax.augment import domain

Array = jax.Array


def augment_batch(key: Array, images: Array, masks: Array, augment_config: Any,
                  source: str, is_t2: Array | None = None) -> tuple[Array, Array]:
  """Augments a batch on the device.

  Takes a PRNG key, `images` f32[B, H, W, 1] in [0, 1], `masks` f32[B, H, W, 1] (0/1), the
  `config.augment` record (fields domain, domain_prob, augmix, augmix_width, augmix_depth,
  augmix_alpha, augmix_severity; Python values, static under jit) and the batch's `source`
  modality ('ct' / 'mr', passed on to the domain transform). Returns (images f32[B, H, W, 1] in
  [0, 1], masks [B, H, W, 1]); the same arrays where both augmentations are off.

  `is_t2` (f32[B], optional, MR sources only): 1 marks T2-SPIR slices. The
  domain transform reads a slice's tissues by its sequence's contrast (T1: fat
  bright, fluid dark; T2-SPIR: fluid bright, fat suppressed), so a mixed MR
  batch is transformed both ways and each slice takes its own reading.
  """
  k_domain, k_augmix = jax.random.split(key)
  if augment_config.domain:
    prob = augment_config.domain_prob
    if source == 'mr' and is_t2 is not None:
      as_t1 = domain.domain_transform_batch(k_domain, images, source='t1', prob=prob)
      as_t2 = domain.domain_transform_batch(k_domain, images, source='t2', prob=prob)
      images = jnp.where(is_t2[:, None, None, None] > 0.5, as_t2, as_t1)
    else:
      images = domain.domain_transform_batch(k_domain, images, source=source, prob=prob)
  if augment_config.augmix:
    depth = augment_config.augmix_depth
    depth = depth if isinstance(depth, int) else tuple(int(d) for d in depth)
    images, masks = augmix_lib.augmix_batch(
        k_augmix, images, masks, width=int(augment_config.augmix_width), depth=depth,
        alpha=float(augment_config.augmix_alpha), severity=int(augment_config.augmix_severity),
        flip_prob=float(augment_config.get("flip_prob", 0.5)),
        shared_ops=bool(augment_config.get("augmix_shared_ops", False)))
  return images, masks
