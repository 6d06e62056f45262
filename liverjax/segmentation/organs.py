"""Multi-organ training of the U-Net (`config.model.organs`): targets, masked loss, labels.

The U-Net gets one output channel per organ of `model.organs` (names from
`liverjax.data.nifti.ORGANS`; channel 0 is the liver, what evaluation and
prediction use). Each channel is an independent sigmoid (organs do not overlap,
but a sigmoid per channel keeps channel 0 exactly the binary liver model's
output and lets a channel be left out of the loss); the training loss is the
liver-only loss of `losses.segmentation_loss` computed per channel and summed
over channels.

Labels: a slice's label map (u8/i32, values = indices in `nifti.ORGANS`, so
1 = liver) comes from its volume's organ map (`PreparedVolume.organs`, NIfTI
data) or, for a volume without one (CHAOS DICOM + PNG), from the liver mask
(1 where liver). Such slices have `organs_known` = 0: their non-liver channels
are masked out of the loss (their statistics weighted by 0), the liver channel
is always trained. The label map travels through the on-device augmentation in
place of the binary mask (the augmentations move masks with nearest-neighbour
sampling and never read their values), so labels stay aligned with the image.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from liverjax.data import dataset as dataset_lib
from liverjax.data import nifti
from liverjax.segmentation import losses

LIVER = nifti.ORGANS.index("liver")


def organ_ids(names: Sequence[str]) -> tuple[int, ...]:
  """Indices in `nifti.ORGANS` of `model.organs` (first must be "liver", no repeats).

  Returns:
    A tuple of ints, one per channel; raises ValueError naming the bad entry.
  """
  names = tuple(names)
  if not names or names[0] != "liver":
    raise ValueError(f"model.organs={names!r}: the first organ must be 'liver' (channel 0)")
  unknown = [n for n in names if n not in nifti.ORGANS or n == "background"]
  if unknown:
    raise ValueError(f"model.organs: unknown organ(s) {unknown}; expected names from "
                     f"liverjax.data.nifti.ORGANS {nifti.ORGANS[1:]}")
  if len(set(names)) != len(names):
    raise ValueError(f"model.organs={names!r}: an organ is repeated")
  return tuple(nifti.ORGANS.index(n) for n in names)


def stack_labels(volumes) -> tuple[np.ndarray, np.ndarray]:
  """The training label maps and their known flags, in `dataset.stack_slices` order.

  Args:
    volumes: `PreparedVolume`s (mask u8[Z,S,S]; `organs` u8[Z,S,S] or None/absent).

  Returns:
    (organs i32[N,S,S]: organ indices of `nifti.ORGANS`, the volume's organ map, or the liver
    mask as 1 where it has none; known f32[N]: 1.0 for slices of volumes with an organ map).
    Where an organ map exists its liver is the volume's liver mask (the mask wins).
  """
  maps = dataset_lib.stack_organs(volumes)  # the liver mask as LIVER where no map exists
  liver = np.concatenate([np.asarray(v.mask) > 0 for v in volumes])
  maps = np.where(liver, LIVER, np.where(maps == LIVER, 0, maps)).astype(np.int32)
  known = np.concatenate([np.full(v.mask.shape[0], float(getattr(v, "organs", None) is not None),
                                  np.float32) for v in volumes])
  return maps, known


def organ_targets(labels: jax.Array, known: jax.Array, ids: Sequence[int]
                  ) -> tuple[jax.Array, jax.Array]:
  """Per-channel targets and loss weights of a batch.

  Args:
    labels: [B,H,W] or [B,H,W,1] organ index map (any numeric dtype; values of `nifti.ORGANS`).
    known: f32[B], 1 where the slice's organ labels exist, 0 where only the liver is known.
    ids: `organ_ids(model.organs)` (ids[0] = liver).

  Returns:
    (targets f32[B,H,W,C] in {0,1}, weights f32[B,C]: channel 0 always 1, the others `known`).
  """
  labels = jnp.asarray(labels)
  if labels.ndim == 4:
    labels = labels[..., 0]
  labels = jnp.round(labels).astype(jnp.int32)
  targets = jnp.stack([(labels == i) for i in ids], axis=-1).astype(jnp.float32)
  known = jnp.asarray(known, jnp.float32)
  weights = jnp.stack([jnp.ones_like(known)] + [known] * (len(ids) - 1), axis=-1)
  return targets, weights


def multi_organ_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array, *,
                     loss_weights: Sequence[float] = (1.0, 1.0, 1.0)
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The summed per-channel segmentation loss, channels masked per slice.

  Args:
    logits: f32[B,H,W,C]; targets: f32[B,H,W,C] in {0,1}; weights: f32[B,C] in {0,1}.
    loss_weights: (dice_loss, bce, jaccard_loss) weights of each channel's loss.

  Returns:
    (total, terms): total = sum over channels of each channel's weighted loss over the slices
    whose weight is 1 (a channel with no such slice adds 0); terms = the liver channel's
    `losses.losses_from_sums` figures with "total" replaced by the summed total, plus
    "organ_total" (the non-liver channels' part).
  """
  if logits.shape != targets.shape or logits.ndim != 4:
    raise ValueError(f"organs.py multi_organ_loss: logits {logits.shape} and targets "
                     f"{targets.shape} must be equal [B,H,W,C] shapes")
  channel_totals, liver_terms = [], None
  for c in range(logits.shape[-1]):
    sums = losses.loss_sums(logits[..., c:c + 1], targets[..., c:c + 1])
    sums = {k: v * weights[:, c] for k, v in sums.items()}
    terms = losses.losses_from_sums(sums, weights=loss_weights)
    channel_totals.append(terms["total"])
    if c == 0:
      liver_terms = terms
  total = sum(channel_totals)
  return total, dict(liver_terms, total=total, organ_total=total - channel_totals[0])
