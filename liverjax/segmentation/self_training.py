"""Self-training on unlabelled target scans: a teacher's pseudo-labels, filtered.

A teacher (a trained U-Net, with its own test-time options: histogram matching to its source
domain, the gamma after it, batch-norm statistics of each scan) predicts every unlabelled
target scan (`data.<m>.adapt_root`, the dataset's "adapt" split) in 3D. `pseudo_label` turns
its probabilities into a training mask:
  * the largest 3D component of the prediction is the liver (as `eval.postprocess`);
  * a pixel is labelled liver where the probability is >= `confidence` inside that component,
    background where it is <= 1 - `confidence`; every other pixel is `losses.IGNORE`, left
    out of the student's loss rather than guessed (the uncertain rim, and liver-like
    predictions outside the kept component);
  * pixels within `ignore_margin_mm` of the predicted liver's surface, inside or outside, are
    `losses.IGNORE` too, however confident: a teacher's confident errors lie mostly there (its
    missed liver next to the liver it found, its leaks into the neighbours);
  * the slices within `ignore_below_mm` below the predicted liver's lowest slice are
    `losses.IGNORE` inside the liver's axial footprint (where any of its slices has liver): a
    CT-trained teacher stops short of the T2 liver's lower end (a median of 3 slices on the
    development T2 scans) and labels the rest of it background, confidently;
  * a whole volume is dropped, with the reason logged, when its predicted liver is
    implausible: a volume outside [`min_liver_ml`, `max_liver_ml`], most of it on the
    patient's left (the display orientation puts the patient's right on the image's left),
    or too few of its body pixels confidently labelled (`min_confident_fraction`).
The student trains on the source slices plus the kept pseudo-labelled slices in the same
trainer and jitted step (`segmentation.train`, batch key "from_source"); rounds are arranged
by `liverjax.experiment`. No label of an adapt scan is ever read: their masks are all zero
and unused here.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from scipy import ndimage

from liverjax import configs
from liverjax import progress
from liverjax import runtime
from liverjax.data import dataset as dataset_lib
from liverjax.data import pipeline
from liverjax.segmentation import evaluate
from liverjax.segmentation import losses
from liverjax.segmentation import postprocess
from liverjax.segmentation import state as state_lib

BODY_THRESHOLD = 0.05  # image intensity above which a pixel is body (the side check)


@dataclasses.dataclass
class PseudoLabel:
  """One target scan's pseudo-label.

  Attributes:
    patient_id: the scan.
    mask: u8[Z,S,S] in {0, 1, losses.IGNORE}.
    kept: False when the volume is dropped (then `reason` says why).
    reason: "" or why the volume was dropped.
    liver_ml: the predicted liver's volume (largest 3D component), mL.
    confident_fraction: the fraction of the scan's body pixels that got a label (0 or 1).
    liver_side: the fraction of the predicted liver on the patient's right (image left).
  """
  patient_id: str
  mask: np.ndarray
  kept: bool
  reason: str
  liver_ml: float
  confident_fraction: float
  liver_side: float

  def summary(self) -> dict:
    """The record without the mask (JSON-ready)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if k != "mask"}


def pseudo_label(probabilities: np.ndarray, image: np.ndarray, spacing, *,
                 patient_id: str = "", confidence: float = 0.9,
                 min_liver_ml: float = postprocess.PLAUSIBLE_LIVER_ML[0],
                 max_liver_ml: float = postprocess.PLAUSIBLE_LIVER_ML[1],
                 min_confident_fraction: float = 0.5,
                 ignore_margin_mm: float = 0.0,
                 ignore_below_mm: float = 0.0) -> PseudoLabel:
  """The filtered pseudo-label of one scan (module docstring).

  Args:
    probabilities: f32[Z,S,S] in [0,1], the teacher's liver probability.
    image: f32[Z,S,S] in [0,1], the scan as the student sees it (body pixels for the side and
      confidence checks: image > BODY_THRESHOLD).
    spacing: (z, y, x) mm of a voxel of these arrays.
    patient_id: for the record and the log.
    confidence: in (0.5, 1]; the probability a pixel needs to be labelled.
    min_liver_ml, max_liver_ml: the plausible liver volume.
    min_confident_fraction: the least fraction of body pixels that must get a label (the
      margin's pixels count as unlabelled).
    ignore_margin_mm: >= 0; the band on either side of the predicted liver's surface, in mm
      (3D, with `spacing`), that is left out (0: none).
    ignore_below_mm: >= 0; the depth below the predicted liver's lowest slice (slices run
      head -> feet) whose pixels inside the liver's axial footprint are left out (0: none).

  Returns:
    A PseudoLabel (its mask is all IGNORE when the volume is dropped).
  """
  p = np.asarray(probabilities, np.float32)
  liver = postprocess.largest_component(p > 0.5).astype(bool)
  mask = np.full(p.shape, losses.IGNORE, np.uint8)
  mask[p <= 1.0 - confidence] = 0
  mask[(p >= confidence) & liver] = 1
  if ignore_margin_mm > 0 and liver.any():
    mask[surface_band(liver, spacing, ignore_margin_mm)] = losses.IGNORE
  if ignore_below_mm > 0 and liver.any():
    mask[below_liver(liver, spacing, ignore_below_mm)] = losses.IGNORE
  body = np.asarray(image) > BODY_THRESHOLD
  confident = float(((mask != losses.IGNORE) & body).sum()) / max(int(body.sum()), 1)
  liver_ml, right, reason = postprocess.liver_plausibility(liver, body, spacing, min_liver_ml,
                                                           max_liver_ml)
  if not reason and confident < min_confident_fraction:
    reason = (f"only {100 * confident:.0f} % of the body pixels confidently labelled "
              f"(< {100 * min_confident_fraction:.0f} %)")
  if reason:
    mask[:] = losses.IGNORE
  return PseudoLabel(patient_id=patient_id, mask=mask, kept=not reason, reason=reason,
                     liver_ml=liver_ml, confident_fraction=confident, liver_side=right)


def surface_band(region: np.ndarray, spacing, margin_mm: float) -> np.ndarray:
  """The voxels within `margin_mm` of the surface of `region`, on either side.

  Args:
    region: bool[Z,Y,X], not empty.
    spacing: (z, y, x) mm of a voxel.
    margin_mm: > 0.

  Returns:
    bool[Z,Y,X]: inside voxels whose distance to the outside is <= margin_mm, and outside
    voxels whose distance to the region is <= margin_mm (Euclidean, in mm).
  """
  region = np.asarray(region, bool)
  outside = ndimage.distance_transform_edt(~region, sampling=spacing)
  inside = ndimage.distance_transform_edt(region, sampling=spacing)
  return np.where(region, inside <= margin_mm, outside <= margin_mm)


def below_liver(region: np.ndarray, spacing, depth_mm: float) -> np.ndarray:
  """The voxels below `region`'s lowest slice, to `depth_mm`, inside its axial footprint.

  Args:
    region: bool[Z,Y,X], not empty, slices running head -> feet (the display orientation).
    spacing: (z, y, x) mm of a voxel.
    depth_mm: > 0.

  Returns:
    bool[Z,Y,X]: the voxels of slices k with 0 < (k - last) * spacing[0] <= depth_mm (last:
    the region's lowest slice) whose (y, x) lies in the union of the region's slices.
  """
  region = np.asarray(region, bool)
  last = int(np.nonzero(region.any(axis=(1, 2)))[0].max())
  k = np.arange(region.shape[0])
  slices = (k > last) & ((k - last) * float(spacing[0]) <= depth_mm)
  return slices[:, None, None] & region.any(axis=0)[None]


def teacher_probabilities(config, workdir, volumes: list, data: dataset_lib.Dataset, *,
                          mesh=None) -> list[np.ndarray]:
  """The teacher's liver probabilities on target scans, with its own test-time options.

  Args:
    config: the teacher's config (its `eval.intensity`, `eval.intensity_gamma`,
      `eval.adapt_bn`, `data.source`, `eval.checkpoint`).
    workdir: the teacher's workdir (its best checkpoint, unless `config.eval.checkpoint`).
    volumes: `PreparedVolume`s of a modality other than the teacher's source, prepared as the
      teacher was trained (same `data` settings).
    data: the dataset (the teacher's source intensity quantiles for a checkpoint that keeps
      none).

  Returns:
    One f32[Z,S,S] in [0,1] per volume: sigmoid of the liver logits after histogram matching
    (when the teacher was evaluated with it) and with batch-norm statistics of the volume's
    own slices (when evaluated with AdaBN).
  """
  mesh = mesh if mesh is not None else runtime.create_mesh()
  graphdef, abstract, _ = state_lib.abstract_train_state(config, mesh)
  state, step, manager, source = evaluate.restore_checkpoint(config, workdir, abstract)
  logging.info("self-training: teacher %s (step %d) labels %d target scans", source, step,
               len(volumes))
  reference = evaluate.checkpoint_reference(manager, step, data, config)
  if reference is not None:
    volumes = evaluate.harmonize_volumes(volumes, reference,
                                         float(config.eval.intensity_gamma))
  stats_fn = (state_lib.make_volume_stats_fn(graphdef, mesh)
              if config.eval.get("adapt_bn", "none") == "volume" else None)
  logits_fn = state_lib.make_logits_fn(graphdef, mesh)
  out = []
  tracker = progress.Progress(len(volumes), "labelled", "target scans")
  for v in volumes:
    s = state
    if stats_fn is not None:
      s = evaluate.adapted_state(stats_fn, state, v.image,
                                 int(config.eval.get("adapt_bn_slices", 64)), mesh)
    chunks = [np.asarray(runtime.gather(logits_fn(s, batch)))[:valid]
              for batch, valid in pipeline.eval_batches(v.image[..., None].astype(np.float32),
                                                        int(config.eval.batch_size), mesh)]
    out.append(np.asarray(jax.nn.sigmoid(jnp.asarray(np.concatenate(chunks)))))
    tracker.done(progress.volume_label(v))
  return out


def pseudo_labelled_slices(volumes: list, labels: list[PseudoLabel]) -> dict:
  """The kept pseudo-labelled slices, as `segmentation.train` takes them.

  Args:
    volumes: the target `PreparedVolume`s, in the order of `labels`.
    labels: their `PseudoLabel`s.

  Returns:
    {"image": f32[M,S,S,1], "mask": f32[M,S,S,1] in {0, 1, IGNORE}, "is_t2": f32[M]} over
    the slices of the kept volumes (M = 0 when none is kept).
  """
  kept = [(v, pl) for v, pl in zip(volumes, labels) if pl.kept]
  if not kept:
    size = volumes[0].image.shape[-1] if volumes else 1
    return {"image": np.zeros((0, size, size, 1), np.float32),
            "mask": np.zeros((0, size, size, 1), np.float32),
            "is_t2": np.zeros((0,), np.float32)}
  return {"image": np.concatenate([v.image for v, _ in kept])[..., None].astype(np.float32),
          "mask": np.concatenate([pl.mask for _, pl in kept])[..., None].astype(np.float32),
          "is_t2": dataset_lib.slice_is_t2([v for v, _ in kept])}


def adapt_domain(config, data: dataset_lib.Dataset) -> str:
  """The domain whose unlabelled scans self-training labels: the one other than
  `config.data.source`.

  Raises:
    ConfigError: naming `data.<target>.adapt_root` when the dataset holds no unlabelled scan
      of it.
  """
  target = "mr" if config.data.source == "ct" else "ct"
  if not data.select(target, "adapt", dataset_lib.domain_sequences(target, config.data)):
    raise configs.ConfigError(f"data.{target}.adapt_root", "self-training "
                              f"(self_training.rounds={int(config.self_training.rounds)}) needs "
                              f"unlabelled {target.upper()} scans; none were read",
                              config.data[target].get("adapt_root"))
  return target
