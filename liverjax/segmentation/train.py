"""The U-Net training run: data, resume, the loop with validation and checkpoints.

The step itself (pure, jit-compiled, sharded, donated) is in
`liverjax.segmentation.state`; the loop pieces shared with the CycleGAN are in
`liverjax.training`. Data steps before training (the CycleGAN translation of
the training slices) are arranged by the caller (`liverjax.experiment`) and
passed in as `slice_transform`.
"""
from __future__ import annotations

import pathlib
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from liverjax import checkpointing
from liverjax import configs
from liverjax import metric_writer
from liverjax import runtime
from liverjax import training
from liverjax.augment import pipeline as augment_pipeline
from liverjax.data import dataset as dataset_lib
from liverjax.data import harmonize
from liverjax.data import pipeline
from liverjax.segmentation import evaluate
from liverjax.segmentation import organs as organs_lib
from liverjax.segmentation import state as state_lib

NONFINITE_HINT = ("Lower train.learning_rate, check the data, or use "
                  "model.dtype='float32'.")


def mix_repeats(source_slices: int, target_slices: int, fraction: float) -> tuple[int, int]:
  """(source repeats, target repeats) so that the pseudo-labelled target slices are about
  `fraction` (in (0, 1)) of the slices drawn: the smaller side is repeated, the other kept
  once (an integer number of whole copies, each at least 1).

  Returns:
    (r_s, r_t) with r_t * target / (r_s * source + r_t * target) close to `fraction`;
    (1, 0) without target slices.
  """
  if target_slices <= 0:
    return 1, 0
  ratio = fraction / (1.0 - fraction) * source_slices / target_slices  # wanted r_t / r_s
  if ratio >= 1.0:
    return 1, int(round(ratio))
  return max(1, int(round(1.0 / ratio))), 1


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
          data: dataset_lib.Dataset | None = None,
          slice_transform: Callable[[np.ndarray], np.ndarray] | None = None,
          pseudo_labelled: dict | None = None) -> None:
  """Trains a U-Net on `config.data.source`, resuming from `workdir/checkpoints`.

  Writes `metrics.jsonl` (curves), TensorBoard scalars, and checkpoints every
  `train.eval_every` steps (and at the end) with the validation Dice that
  selects the best one.

  Args:
    config: the experiment config (`data`, `model`, `train`, `augment`, `eval`).
    workdir: the experiment folder.
    data: the loaded dataset (default: `dataset.load_dataset(config.data)`).
    slice_transform: optional data step on the stacked training slices,
      f32[N,H,W,1] in [0,1] -> the same (masks kept), e.g. the CycleGAN
      translation of `liverjax.cyclegan.translate`.
    pseudo_labelled: optional target-modality slices for self-training
      (`self_training.pseudo_labelled_slices`): {"image": f32[M,H,W,1] in [0,1],
      "mask": f32[M,H,W,1] in {0, 1, losses.IGNORE}, "is_t2": f32[M]}, trained on
      beside the source slices (after `slice_transform`, which they do not go
      through), repeated to be about `self_training.target_fraction` of the
      slices drawn (`mix_repeats`); the domain transform leaves them as they
      are (batch key "from_source" 0).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if data is None:
    data = dataset_lib.load_dataset(config.data)
  source = config.data.source
  seqs = dataset_lib.domain_sequences(source, config.data)
  train_volumes = data.select(source, "train", seqs)
  val_volumes = data.select(source, "val", seqs)
  if not train_volumes:
    raise configs.ConfigError("data.split", f"no {source} training patients in {data.root} "
                              f"(data.source={source!r}, data.mr_sequences="
                              f"{tuple(config.data.mr_sequences)})", tuple(config.data.split))
  images, masks = dataset_lib.stack_slices(train_volumes)
  # What `liverjax.predict` needs from the training data to prepare a new scan as the
  # evaluation does (`eval.intensity`): the source domain's intensity quantiles
  # (`evaluate.intensity_reference`), computed before any translation of the slices.
  source_stats = {"intensity_quantiles": harmonize.reference_quantiles(images).tolist()}
  if slice_transform is not None:
    images = slice_transform(images)

  mesh = runtime.create_mesh()
  init_rng, step_rng = jax.random.split(runtime.prng_key(config))
  graphdef, state, tx = state_lib.create_train_state(config, mesh, init_rng)
  manager = checkpointing.create_manager(workdir, keep=config.train.keep_checkpoints)
  restored, start_step = training.resume(
      manager, workdir, state_lib.abstract_train_state(config, mesh)[1], config,
      "segmentation")
  if restored is not None:
    state = restored
  writer = metric_writer.MetricWriter(workdir)
  train_step_fn = state_lib.make_train_step(config, graphdef, tx, mesh)
  predict_fn = state_lib.make_predict_fn(graphdef, mesh)
  config_dict = config.to_dict()

  extras = {"is_t2": dataset_lib.slice_is_t2(train_volumes)}
  if pseudo_labelled is not None and len(pseudo_labelled["image"]):
    r_s, r_t = mix_repeats(len(images), len(pseudo_labelled["image"]),
                           float(config.self_training.target_fraction))
    logging.info("self-training: %d pseudo-labelled target slices (x%d) beside %d source "
                 "slices (x%d)", len(pseudo_labelled["image"]), r_t, len(images), r_s)
    n_source = r_s * len(images)
    extras["from_source"] = np.concatenate([
        np.ones(n_source, np.float32),
        np.zeros(r_t * len(pseudo_labelled["image"]), np.float32)])
    extras["is_t2"] = np.concatenate([np.tile(extras["is_t2"], r_s),
                                      np.tile(pseudo_labelled["is_t2"], r_t)])
    images = np.concatenate([np.tile(images, (r_s, 1, 1, 1)),
                             np.tile(pseudo_labelled["image"], (r_t, 1, 1, 1))])
    masks = np.concatenate([np.tile(masks, (r_s, 1, 1, 1)),
                            np.tile(pseudo_labelled["mask"], (r_t, 1, 1, 1))])
  if state_lib.train_organ_ids(config.model):
    extras["organs"], extras["organs_known"] = organs_lib.stack_labels(train_volumes)
    logging.info("multi-organ training on %s: organ labels on %d of %d slices",
                 tuple(config.model.organs), int(extras["organs_known"].sum()), len(images))
  elif config.augment.get("location_scale_local", False):  # the only other reader of organs
    extras["organs"] = dataset_lib.stack_organs(train_volumes)
  batches = pipeline.train_batches(
      images, masks, global_batch_size=config.train.batch_size, mesh=mesh,
      seed=config.seed, start_step=start_step, use_tf=config.data.use_tf,
      shuffle_buffer=config.data.shuffle_buffer, extras=extras)
  logging.info("training on %d %s slices (%d volumes) for steps %d..%d, global batch %d "
               "over %d devices; augmentation: %s; translated by the CycleGAN: %s", len(images),
               source, len(train_volumes), start_step, config.train.steps,
               config.train.batch_size, mesh.size,
               ", ".join(augment_pipeline.active_switches(config.augment)) or "none",
               slice_transform is not None)

  def step_fn(state, step):
    return train_step_fn(state, next(batches), jax.random.fold_in(step_rng, step))

  def log_line(step, means, rate, eta):
    logging.info("step %d/%d  %.2f steps/s (%.0f slices/s)  ETA %s  loss %.4f "
                 "(dice_loss %.4f bce %.4f jaccard_loss %.4f) dice %.3f",
                 step, config.train.steps, rate, rate * config.train.batch_size, eta,
                 means["total"], means["dice_loss"], means["bce"], means["jaccard_loss"],
                 means["dice"])

  def validate_and_save(step, state):
    val = {}
    if val_volumes:
      results = evaluate.evaluate_volumes(predict_fn, state, val_volumes, mesh=mesh,
                                          batch_size=config.eval.batch_size,
                                          surface_metrics=False)
      val = {"val_dice": float(np.mean([r["dice"] for r in results])),
             "val_total": float(np.mean([r["total"] for r in results]))}
      writer.write_scalars(step, val, split="val")
      logging.info("step %d  validation: Dice %.4f  total loss %.4f", step,
                   val["val_dice"], val["val_total"])
    checkpointing.save(manager, step, state, config_dict, metrics=val or {"val_dice": 0.0},
                       source_stats=source_stats)

  training.train_loop(state, step_fn, start_step=start_step, total_steps=config.train.steps,
                      log_every=config.train.log_every, writer=writer, log_line=log_line,
                      actions=[(config.train.eval_every, validate_and_save)],
                      nonfinite_hint=NONFINITE_HINT)
