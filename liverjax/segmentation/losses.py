"""Segmentation losses: Dice loss + BCE + Jaccard (soft IoU) loss, from sufficient statistics.

Everything is built on per-example sums (`loss_sums`), so the same code gives
  * the training loss over one batch (`segmentation_loss`), and
  * evaluation losses over a whole 3D volume whose slices arrive in several batches: add up the
    `loss_sums` of the volume's slices (any grouping, any order) and call `losses_from_sums` once.

Conventions
  * `logits` are pre-sigmoid scores, masks are {0,1}; probabilities p = sigmoid(logits).
  * Soft Dice / Jaccard are computed over the whole set (not averaged per example), with additive
    smoothing `smooth` in numerator and denominator:
      dice_loss    = 1 - (2*sum(p*t) + smooth) / (sum(p) + sum(t) + smooth)
      jaccard_loss = 1 - (sum(p*t) + smooth) / (sum(p) + sum(t) - sum(p*t) + smooth)
  * BCE is the mean over all pixels of the set, computed stably from the logits.
  * `dice` is the hard Dice *score* of the thresholded prediction (p > 0.5, i.e. logits > 0):
      dice = 2*sum(hard*t) / (sum(hard) + sum(t)), and 1.0 when both are empty (a correct "no liver").
    It is reported, never differentiated.
  * total = w_dice * dice_loss + w_bce * bce + w_jaccard * jaccard_loss.
  * A mask value IGNORE (2) marks a pixel whose label is unknown (an uncertain pixel of a
    self-training pseudo-label): it is left out of every sum (and of `count`), so it
    neither pulls the prediction towards liver nor towards background. Binary masks have none.
"""
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

SUM_KEYS = ("intersection", "prob_sum", "mask_sum", "bce_sum", "count", "hard_intersection",
            "hard_pred_sum")
IGNORE = 2  # mask value of a pixel left out of the loss (unknown label)


def loss_sums(logits: jax.Array, masks: jax.Array) -> dict[str, jax.Array]:
  """Per-example sufficient statistics for the losses and the hard Dice score.

  Args:
    logits: float[B, ...] (typically [B, H, W, 1]), any float dtype; computed in float32.
    masks: [B, ...] of the same shape, values in {0, 1} (any numeric dtype), or IGNORE
      for a pixel left out of every sum.

  Returns:
    dict of float32[B], each summed over all non-batch axes (over the pixels whose mask is
    not IGNORE):
      "intersection" sum(p*t), "prob_sum" sum(p), "mask_sum" sum(t),
      "bce_sum" sum of per-pixel binary cross-entropy (stable, from logits),
      "count" number of pixels, "hard_intersection" sum((p>0.5)*t), "hard_pred_sum" sum(p>0.5).
    The threshold p > 0.5 is evaluated as logits > 0 (identical in exact arithmetic, and free of
    float32 rounding of sigmoid near 0.5).
  """
  x = jnp.asarray(logits).astype(jnp.float32)
  t = jnp.asarray(masks).astype(jnp.float32)
  if x.shape != t.shape:
    raise ValueError(f"logits shape {x.shape} != masks shape {t.shape}")
  if x.ndim < 1:
    raise ValueError("logits need a leading batch axis")
  axes = tuple(range(1, x.ndim))
  valid = (t != IGNORE).astype(jnp.float32)
  t = t * valid
  p = jax.nn.sigmoid(x) * valid
  hard = (x > 0).astype(jnp.float32) * valid
  # BCE(x, t) = -t*log(sigmoid(x)) - (1-t)*log(1-sigmoid(x)) = log(1 + exp(x)) - t*x.
  bce = (jnp.logaddexp(0.0, x) - t * x) * valid
  count = jnp.sum(valid, axis=axes)
  return {
      "intersection": jnp.sum(p * t, axis=axes),
      "prob_sum": jnp.sum(p, axis=axes),
      "mask_sum": jnp.sum(t, axis=axes),
      "bce_sum": jnp.sum(bce, axis=axes),
      "count": count,
      "hard_intersection": jnp.sum(hard * t, axis=axes),
      "hard_pred_sum": jnp.sum(hard, axis=axes),
  }


def losses_from_sums(sums: Mapping[str, jax.Array], *, smooth: float = 1.0,
                     weights: Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, jax.Array]:
  """Losses and hard Dice over the set whose statistics are `sums`.

  Args:
    sums: the keys of `loss_sums`; each value (jax or numpy, scalar or any shape) is summed over
      all its elements, so per-example arrays of a batch, or totals already accumulated over a
      volume, can be passed directly.
    smooth: additive smoothing of the soft Dice and Jaccard ratios.
    weights: (dice_loss, bce, jaccard_loss) weights of the total.

  Returns:
    dict of float32 scalars: "dice" (hard Dice score in [0, 1]; 1.0 when prediction and mask are
    both empty), "bce" (mean per pixel), "dice_loss" (1 - soft Dice), "jaccard_loss"
    (1 - soft IoU), "total" (weighted sum of the three losses).
  """
  s = {k: jnp.sum(jnp.asarray(sums[k], jnp.float32)) for k in SUM_KEYS}
  w_dice, w_bce, w_jacc = (float(w) for w in weights)
  inter, prob, mask = s["intersection"], s["prob_sum"], s["mask_sum"]
  dice_loss = 1.0 - (2.0 * inter + smooth) / (prob + mask + smooth)
  jaccard_loss = 1.0 - (inter + smooth) / (prob + mask - inter + smooth)
  bce = s["bce_sum"] / jnp.maximum(s["count"], 1.0)
  hard_denom = s["hard_pred_sum"] + mask
  dice = jnp.where(hard_denom > 0, 2.0 * s["hard_intersection"] / jnp.maximum(hard_denom, 1e-12),
                   1.0)
  total = w_dice * dice_loss + w_bce * bce + w_jacc * jaccard_loss
  return {"dice": dice, "bce": bce, "dice_loss": dice_loss, "jaccard_loss": jaccard_loss,
          "total": total}


def segmentation_loss(logits: jax.Array, masks: jax.Array, *,
                      weights: Sequence[float] = (1.0, 1.0, 1.0),
                      smooth: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The training loss over a whole batch (statistics summed over the batch, then combined).

  Args:
    logits: float[B, H, W, 1] (any float dtype), masks: [B, H, W, 1] in {0, 1}.
    weights: (dice_loss, bce, jaccard_loss) weights; smooth: soft Dice/Jaccard smoothing.

  Returns:
    (total, terms): `total` a float32 scalar to differentiate, `terms` the dict of
    `losses_from_sums` ("dice", "bce", "dice_loss", "jaccard_loss", "total").
  """
  terms = losses_from_sums(loss_sums(logits, masks), smooth=smooth, weights=weights)
  return terms["total"], terms
