"""A trained U-Net restored from its checkpoint, and its prediction of one scan.

The preprocessing (normalisation, CT window, MR percentiles, image size) is the
one saved with the checkpoint, never a flag; so are the training domain's intensity
quantiles that histogram matching maps a scan to. Each scan is read in the display
orientation of `liverjax.data.orientation`, preprocessed as in training,
predicted slice by slice in batches on the device (channel 0 of the logits:
the liver), the logits resized back to the scan's native in-plane size
(bilinear) before the threshold (logit > 0, probability > 0.5), the largest 3D
connected component kept (`predict_volume`).

Python API (notebooks): `model = load_model(path)`, then
`predict_volume(model, volume) -> mask` on a `liverjax.data.chaos.Volume`.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import cv2
import ml_collections
import numpy as np
from absl import logging

from liverjax import checkpointing
from liverjax import runtime
from liverjax.configs import default as default_config
from liverjax.data import chaos
from liverjax.data import harmonize
from liverjax.data import pipeline
from liverjax.data import preprocess
from liverjax.data import volume as volume_lib
from liverjax.predict.errors import PredictError
from liverjax.segmentation import evaluate
from liverjax.segmentation import postprocess
from liverjax.segmentation import state as state_lib


@dataclasses.dataclass
class Model:
  """A trained U-Net restored for prediction.

  Attributes:
    config: the config saved with the checkpoint (over the defaults).
    state: the restored `TrainState`, replicated on `mesh`.
    graphdef: the U-Net's static graph.
    mesh: the device mesh the slices are split over.
    step: the checkpoint's step.
    checkpoint: the checkpoint folder.
    source_stats: what the checkpoint keeps of its training data
      (`{"intensity_quantiles": [101 floats]}`), or None for a checkpoint made
      before it was kept.
  """
  config: ml_collections.ConfigDict
  state: Any
  graphdef: Any
  mesh: Any
  step: int
  checkpoint: str
  source_stats: dict | None = None


def config_from_saved(saved: dict) -> ml_collections.ConfigDict:
  """The config of a checkpoint: its saved dict, with fields it lacks from the defaults.

  Args:
    saved: the JSON dict saved beside the checkpoint (`config.to_dict()`).

  Returns:
    A ConfigDict; fields added since the checkpoint was made take their defaults.
  """
  config = ml_collections.ConfigDict(saved)

  def fill(target, defaults):
    for key, value in defaults.items():
      if key not in target:
        target[key] = value
      elif isinstance(value, ml_collections.ConfigDict) and isinstance(
          target[key], ml_collections.ConfigDict):
        fill(target[key], value)

  fill(config, default_config.get_config())
  return config


def load_model(path: str | pathlib.Path, mesh=None) -> Model:
  """Restores a trained U-Net and the config it was trained with.

  Args:
    path: a U-Net workdir (its best checkpoint by validation Dice), its
      `checkpoints/` folder (the same), or one `checkpoints/<step>` folder.
    mesh: where the parameters live (default: all devices, replicated).

  Returns:
    A Model.

  Raises:
    PredictError: naming the folder: no checkpoint there, no config saved
      with it, a CycleGAN checkpoint.
  """
  try:
    directory, step = checkpointing.checkpoint_location(path)
  except FileNotFoundError as e:
    raise PredictError(str(e)) from e
  manager = checkpointing.open_read_only(directory)
  if step is None:
    step = checkpointing.best_step(manager)
  if step is None or not (directory / str(step)).is_dir():
    raise PredictError(f"{directory}: no checkpoint here (expected a U-Net workdir, its "
                       "checkpoints/ folder, or a checkpoints/<step> folder)")
  saved = checkpointing.restore_config(manager, step)
  if not saved:
    raise PredictError(f"{directory / str(step)}: checkpoint without a saved config; the "
                       "preprocessing it was trained with is unknown")
  config = config_from_saved(saved)
  if config.experiment != "segmentation":
    raise PredictError(f"{directory / str(step)}: a {config.experiment!r} checkpoint, "
                       "not a U-Net (segmentation) one")
  mesh = mesh if mesh is not None else runtime.create_mesh()
  graphdef, abstract, _ = state_lib.abstract_train_state(config, mesh)
  state, step = checkpointing.restore(manager, abstract, step)
  return Model(config=config, state=state, graphdef=graphdef, mesh=mesh, step=int(step),
               checkpoint=str(directory / str(step)),
               source_stats=checkpointing.restore_source_stats(manager, step))


BACKGROUND_LOGIT = -20.0  # where the field-of-view crop cut the scan: surely not liver


def prepare(model: Model, volume: chaos.Volume) -> np.ndarray:
  """The model's input: `volume` normalised and resized as in training.

  Args:
    model: from `load_model` (its saved `config.data` decides everything).
    volume: a scan in the display orientation (CT in HU, MR raw).

  Returns:
    f32 [Z,S,S] in [0,1], S = the checkpoint's `data.image_size`.

  Raises:
    chaos.ChaosError: more than half of the voxels non-finite. Fewer are replaced by the
      lowest finite value and logged (`volume.finite_image`, the readers' rule: a volume
      built in memory, not read by `scans`, gets it here).
  """
  data = model.config.data
  image, note = volume_lib.finite_image(
      volume.image, volume.image_files[0] if volume.image_files else volume.patient_id)
  if note:
    logging.warning("%s", note)
    volume = dataclasses.replace(volume, image=image)
  return preprocess.prepare_volume(
      volume, image_size=int(data.image_size), normalization=data.normalization,
      ct_window=tuple(data.ct_window), ct_window_from_dicom=bool(data.ct_window_from_dicom),
      mr_percentiles=tuple(data.mr_percentiles),
      field_of_view=data.get("field_of_view")).image


def _off_source(model: Model, volume: chaos.Volume) -> bool:
  return str(volume.modality).lower() != str(model.config.data.source).lower()


def matches_histogram(model: Model, volume: chaos.Volume, intensity: str = "auto") -> bool:
  """Whether `volume`'s intensities are histogram-matched to the training domain's.

  intensity: "histogram_match", "none", or "auto": as the checkpoint was evaluated,
  i.e. its `eval.intensity` is "histogram_match" and the scan's modality is not the
  training source's.
  """
  if intensity not in ("auto", "histogram_match", "none"):
    raise PredictError(f"intensity={intensity!r}: expected auto, histogram_match or none")
  if intensity != "auto":
    return intensity == "histogram_match"
  return (model.config.eval.get("intensity", "none") == "histogram_match"
          and _off_source(model, volume))


def prepare_input(model: Model, volume: chaos.Volume, intensity: str = "auto") -> np.ndarray:
  """`prepare`, then histogram matching where `matches_histogram` says so (to the
  checkpoint's saved quantiles, then its `eval.intensity_gamma`, as in the evaluation).

  Returns:
    f32 [Z,S,S] in [0,1], the slices the model sees.

  Raises:
    PredictError: matching asked for, and the checkpoint holds no intensity quantiles
      (made before they were kept: retrain, or pass intensity="none").
  """
  images = prepare(model, volume)
  if not matches_histogram(model, volume, intensity):
    return images
  quantiles = (model.source_stats or {}).get("intensity_quantiles")
  if quantiles is None:
    raise PredictError(f"{model.checkpoint}: histogram matching needs the training domain's "
                       "intensity quantiles, which this checkpoint (made before they were kept) "
                       "does not hold; retrain it, or pass --intensity=none")
  return harmonize.histogram_match(images, None, np.asarray(quantiles, np.float32),
                                   float(model.config.eval.get("intensity_gamma", 1.0)))


def adapts_batch_norm(model: Model, volume: chaos.Volume, adapt_bn: str = "auto") -> bool:
  """Whether `volume` is predicted with batch-norm statistics of its own slices.

  adapt_bn: "on", "off", or "auto": as the checkpoint was evaluated, i.e. its
  `eval.adapt_bn` is "volume" and the scan's modality is not the training source's.
  """
  if adapt_bn not in ("auto", "on", "off"):
    raise PredictError(f"adapt_bn={adapt_bn!r}: expected auto, on or off")
  if adapt_bn != "auto":
    return adapt_bn == "on"
  return model.config.eval.get("adapt_bn", "none") == "volume" and _off_source(model, volume)


def predict_logits(model: Model, volume: chaos.Volume, batch_size: int | None = None,
                   adapt_bn: str = "auto", intensity: str = "auto") -> np.ndarray:
  """Liver logits of a scan on its own grid.

  Args:
    model: from `load_model`.
    volume: a scan in the display orientation, image [Z,H,W].
    batch_size: slices per device call (default the checkpoint's
      `eval.batch_size`; rounded up to the device count).
    adapt_bn: see `adapts_batch_norm` (test-time batch-norm adaptation on this scan).
    intensity: see `matches_histogram` (test-time histogram matching, before the
      batch-norm adaptation, as in the evaluation).

  Returns:
    f32 [Z,H,W]: the model's logits at S x S, resized bilinearly to H x W
    (probability = sigmoid; liver where > 0). With the checkpoint's `data.field_of_view`,
    the S x S grid is first put back where `preprocess.crop_or_pad` took it from (what was
    cropped away gets the background logit -20), then resized.
  """
  images = prepare_input(model, volume, intensity)[..., None]
  batch_size = int(batch_size or model.config.eval.batch_size)
  fn = state_lib.make_logits_fn(model.graphdef, model.mesh)
  state = model.state
  if adapts_batch_norm(model, volume, adapt_bn):
    state = evaluate.adapted_state(
        state_lib.make_volume_stats_fn(model.graphdef, model.mesh), state, images[..., 0],
        int(model.config.eval.get("adapt_bn_slices", 64)), model.mesh)
  small = [np.asarray(runtime.gather(fn(state, batch)))[:valid]
           for batch, valid in pipeline.eval_batches(images, batch_size, model.mesh)]
  small = np.concatenate(small)
  h, w = volume.image.shape[1:]
  fov = model.config.data.get("field_of_view")
  if fov is not None:
    grid = preprocess.field_of_view_shape((h, w), volume.spacing[1:], small.shape[-1], fov)
    small = preprocess.uncrop_or_pad(small, grid, BACKGROUND_LOGIT)
  if small.shape[1:] == (h, w):
    return small
  return np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR) for s in small])


def predict_volume(model: Model, volume: chaos.Volume, *, keep_largest: bool = True,
                   batch_size: int | None = None, adapt_bn: str = "auto",
                   intensity: str = "auto") -> np.ndarray:
  """The predicted liver mask of a scan, on the scan's own grid.

  Args:
    model: from `load_model`.
    volume: a `liverjax.data.chaos.Volume` (or `nifti.NiftiVolume`) in the display
      orientation, as the readers return it: image [Z,H,W] (CT in HU, MR raw).
    keep_largest: keep only the largest 3D connected component.
    batch_size, adapt_bn, intensity: see `predict_logits`.

  Returns:
    uint8 [Z,H,W] 0/1.
  """
  mask = (predict_logits(model, volume, batch_size, adapt_bn, intensity) > 0).astype(np.uint8)
  return postprocess.largest_component(mask) if keep_largest else mask
