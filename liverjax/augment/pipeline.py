"""The on-device augmentation of a training batch, driven by `config.augment`.

Order: the spatial augmentation (`ops.random_spatial`: rotation, zoom, shift of image, mask and
organ map together), the CT<->MR domain transformation (`liverjax.augment.domain`, images only), then the
single-source domain-generalisation augmentations of `liverjax.augment.dg` (GIN, location-scale;
images only, they use the organ label map but never move anything), then AugMix
(`liverjax.augment.augmix`, image and mask). Identity where all are off. The config fields are
Python values, so they are static under jit: close over them, e.g.

    aug = jax.jit(functools.partial(augment_batch, augment_config=config.augment, source='ct'))
    images, masks = aug(key, images, masks)

Two recipes see every slice twice in one train step (`two_view_mode`): GIN-IPA ("ipa": two GIN
views and a consistency loss) and SLAug ("saliency": a global and a local location-scale view,
fused by the model's saliency). `augment_views` gives their two views, aligned with one mask
(AugMix, when on, moves both views by the same geometry: the same key).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from liverjax.augment import augmix as augmix_lib
from liverjax.augment import dg
from liverjax.augment import domain
from liverjax.augment import ops

Array = jax.Array

# The on/off fields of `config.augment`, in the order the augmentations run.
SWITCHES = ("spatial", "domain", "gin", "ipa", "location_scale", "location_scale_local",
            "saliency_fusion", "augmix")


def active_switches(augment_config: Any) -> tuple[str, ...]:
  """The SWITCHES that `config.augment` turns on (an empty tuple: no augmentation)."""
  return tuple(s for s in SWITCHES if augment_config.get(s, False))


def check_augment_config(augment_config: Any) -> None:
  """Raises ValueError naming the field when `config.augment` asks for an impossible recipe."""
  get = augment_config.get
  if get("ipa", False) and not get("gin", False):
    raise ValueError("config.augment.ipa needs augment.gin (IPA blends GIN views)")
  if get("saliency_fusion", False) and not (get("location_scale", False)
                                            and get("location_scale_local", False)):
    raise ValueError("config.augment.saliency_fusion needs augment.location_scale and "
                     "augment.location_scale_local (it fuses the global and the local view)")
  if get("ipa", False) and get("saliency_fusion", False):
    raise ValueError("config.augment: ipa and saliency_fusion are two different two-view "
                     "recipes; switch one off")
  if not 0.0 <= float(get("gin_prob", 1.0)) <= 1.0:
    raise ValueError(f"config.augment.gin_prob={get('gin_prob')}: expected in [0, 1]")


def two_view_mode(augment_config: Any) -> str | None:
  """"ipa" (GIN-IPA), "saliency" (SLAug's saliency fusion) or None (one view per slice)."""
  check_augment_config(augment_config)
  if augment_config.get("ipa", False):
    return "ipa"
  if augment_config.get("saliency_fusion", False):
    return "saliency"
  return None


def _spatial(key, images, masks, organs, c):
  """`ops.random_spatial` per slice, the same motion for image, mask and organ map."""
  if not c.get("spatial", False):
    return images, masks, organs
  move = functools.partial(
      ops.random_spatial, max_rotate=float(c.get("spatial_rotate", 15.0)),
      scale_range=tuple(float(v) for v in c.get("spatial_scale", (0.85, 1.2))),
      max_translate=float(c.get("spatial_translate", 0.08)))
  keys = jax.random.split(key, images.shape[0])
  if organs is None:
    images, masks = jax.vmap(move)(keys, images, masks)
    return images, masks, None
  # One motion for both label maps: the organ ids are small integers, exact in float32.
  labels = jnp.concatenate([masks, organs[..., None].astype(masks.dtype)], axis=-1)
  images, labels = jax.vmap(move)(keys, images, labels)
  return images, labels[..., :1], labels[..., 1].astype(organs.dtype)


def _domain(key, images, augment_config, source, is_t2, from_source=None):
  if not augment_config.domain:
    return images
  prob = augment_config.domain_prob
  if source == "mr":
    if is_t2 is None:
      raise ValueError("augment_batch: source 'mr' needs is_t2 (f32[B], 1 for T2-SPIR slices) "
                       "for the domain transform: T1 and T2 have opposite tissue orderings")
    as_t1 = domain.domain_transform_batch(key, images, source="t1", prob=prob)
    as_t2 = domain.domain_transform_batch(key, images, source="t2", prob=prob)
    out = jnp.where(is_t2[:, None, None, None] > 0.5, as_t2, as_t1)
  else:
    out = domain.domain_transform_batch(key, images, source=source, prob=prob)
  if from_source is None:
    return out
  # Slices of the other modality (self-training's pseudo-labelled target scans) are already
  # what the transformation imitates: they keep their own contrast.
  return jnp.where(from_source[:, None, None, None] > 0.5, out, images)


def _gin_kwargs(c) -> dict:
  return dict(layers=int(c.get("gin_layers", 4)), channels=int(c.get("gin_channels", 2)),
              kernel_choices=tuple(int(k) for k in c.get("gin_kernels", (1, 3))),
              alpha_range=tuple(float(a) for a in c.get("gin_alpha", (0.0, 1.0))),
              per_slice=not c.get("gin_per_batch", False))


def _per_slice(key, prob: float, augmented: Array, original: Array) -> Array:
  """`augmented` for each slice with probability `prob` (static), else `original`."""
  if prob >= 1.0:
    return augmented
  pick = jax.random.bernoulli(key, prob, (original.shape[0], 1, 1, 1))
  return jnp.where(pick, augmented, original)


def _organ_labels(organs, masks) -> Array:
  """int32[B, H, W] organ labels; the liver mask as label 1 when the batch carries none."""
  if organs is None:
    return (masks[..., 0] == 1).astype(jnp.int32)  # not IGNORE (2) pixels
  organs = jnp.asarray(organs)
  return (organs[..., 0] if organs.ndim == 4 else organs).astype(jnp.int32)


def _location_scale(key, images, c, labels=None):
  kwargs = dict(scale_range=tuple(float(s) for s in c.get("ls_scale_range", (0.9, 1.1))))
  if labels is None:
    return dg.location_scale(key, images, non_monotone_prob=float(
        c.get("ls_non_monotone_prob", 0.5)), **kwargs)
  n = int(c.get("ls_num_labels", 16))
  probs = (1.0,) + (float(c.get("ls_non_monotone_prob", 0.5)),) * (n - 1)
  return dg.location_scale(key, images, labels=labels, num_labels=n, non_monotone_prob=probs,
                           **kwargs)


def _dg_one_view(key, images, masks, c, organs) -> Array:
  """GIN and / or location-scale (global, local, or a per-slice coin between them)."""
  k_gin, k_gin_p, k_g, k_l, k_pick = jax.random.split(key, 5)
  if c.get("gin", False):
    images = _per_slice(k_gin_p, float(c.get("gin_prob", 1.0)),
                        dg.gin(k_gin, images, **_gin_kwargs(c)), images)
  use_global = c.get("location_scale", False)
  use_local = c.get("location_scale_local", False)
  if use_global and use_local:
    g = _location_scale(k_g, images, c)
    loc = _location_scale(k_l, images, c, _organ_labels(organs, masks))
    images = _per_slice(k_pick, 0.5, g, loc)
  elif use_global:
    images = _location_scale(k_g, images, c)
  elif use_local:
    images = _location_scale(k_l, images, c, _organ_labels(organs, masks))
  return images


def _augmix(key, images, masks, c):
  if not c.augmix:
    return images, masks
  depth = c.augmix_depth
  depth = depth if isinstance(depth, int) else tuple(int(d) for d in depth)
  return augmix_lib.augmix_batch(
      key, images, masks, width=int(c.augmix_width), depth=depth,
      alpha=float(c.augmix_alpha), severity=int(c.augmix_severity),
      flip_prob=float(c.get("flip_prob", 0.5)),
      shared_ops=bool(c.get("augmix_shared_ops", False)))


def augment_batch(key: Array, images: Array, masks: Array, augment_config: Any,
                  source: str, is_t2: Array | None = None,
                  organs: Array | None = None,
                  from_source: Array | None = None) -> tuple[Array, Array]:
  """Augments a batch on the device (one view per slice).

  Takes a PRNG key, `images` f32[B, H, W, 1] in [0, 1], `masks` f32[B, H, W, 1] (0/1), the
  `config.augment` record (domain, augmix, gin, location_scale(_local) and their parameters;
  Python values, static under jit) and the batch's `source` modality ('ct' / 'mr'). Returns
  (images f32[B, H, W, 1] in [0, 1], masks [B, H, W, 1]); the same arrays where all are off.
  GIN and location-scale together: GIN (per slice with `gin_prob`) then location-scale; global
  and local location-scale together (without saliency fusion): a fair coin per slice.

  `is_t2` (f32[B]; required for an MR source with the domain transform, else ValueError): 1 marks
  T2-SPIR slices. The domain transform reads a slice's tissues by its sequence's contrast (T1:
  fat bright, fluid dark; T2-SPIR: fluid bright, fat suppressed), so a mixed MR batch is
  transformed both ways and each slice takes its own reading.

  `organs` (int32[B, H, W], optional): the organ label map (`nifti.ORGANS` numbering) of the
  local location-scale; None: the liver mask as label 1.

  `from_source` (f32[B], optional): 0 marks slices of the other modality (self-training's
  pseudo-labelled target scans), which the domain transform leaves as they are; masks may
  hold `losses.IGNORE` (2) pixels, which every geometric step moves like the mask (nearest).
  """
  check_augment_config(augment_config)
  k_domain, k_augmix = jax.random.split(key)  # the streams of the domain + AugMix recipes
  k_dg = jax.random.fold_in(key, 2)
  images, masks, organs = _spatial(jax.random.fold_in(key, 3), images, masks, organs,
                                   augment_config)
  images = _domain(k_domain, images, augment_config, source, is_t2, from_source)
  images = _dg_one_view(k_dg, images, masks, augment_config, organs)
  return _augmix(k_augmix, images, masks, augment_config)


def augment_views(key: Array, images: Array, masks: Array, augment_config: Any, source: str,
                  is_t2: Array | None = None,
                  organs: Array | None = None,
                  from_source: Array | None = None) -> tuple[Array, Array, Array]:
  """The two views of a two-view recipe (`two_view_mode`), aligned with one mask.

  Arguments as `augment_batch`. "ipa": (GIN view, GIN-IPA blended view) of `dg.gin_ipa`, each
  slice kept original in both with chance 1 - `gin_prob`; "saliency": (global, local)
  location-scale views for `dg.saliency_fuse`. The domain transform (when on) comes first, once;
  AugMix (when on) is applied to both views with the same key, so both move alike.

  Returns:
    (view1, view2, masks): f32[B, H, W, 1] in [0, 1] twice, and the masks [B, H, W, 1].
  """
  mode = two_view_mode(augment_config)
  if mode is None:
    raise ValueError("augment_views: config.augment names no two-view recipe (ipa or "
                     "saliency_fusion)")
  c = augment_config
  k_domain, k_augmix = jax.random.split(key)
  k_dg, k_pick = jax.random.split(jax.random.fold_in(key, 2))
  images, masks, organs = _spatial(jax.random.fold_in(key, 3), images, masks, organs, c)
  images = _domain(k_domain, images, c, source, is_t2, from_source)
  if mode == "ipa":
    v1, v2 = dg.gin_ipa(k_dg, images, grid=int(c.get("ipa_grid", 4)), **_gin_kwargs(c))
    prob = float(c.get("gin_prob", 1.0))
    v1, v2 = _per_slice(k_pick, prob, v1, images), _per_slice(k_pick, prob, v2, images)
  else:
    k_g, k_l = jax.random.split(k_dg)
    v1 = _location_scale(k_g, images, c)
    v2 = _location_scale(k_l, images, c, _organ_labels(organs, masks))
  v1, out_masks = _augmix(k_augmix, v1, masks, c)
  v2, _ = _augmix(k_augmix, v2, masks, c)
  return v1, v2, out_masks
