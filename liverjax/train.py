"""U-Net training: state, the jit-compiled sharded train step, the training loop.

The hot path is `train_step`, a pure function of (state, batch, key) compiled
once with `jax.jit`: the batch is split over the mesh's `data` axis, the state
is replicated and donated. The U-Net (Flax NNX) is split once into a static
graph definition and pytrees of parameters and batch statistics, so the step
never walks the object graph.
"""
from __future__ import annotations

import functools
import pathlib
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from liverjax import checkpointing
from liverjax import evaluate
from liverjax import input_pipeline
from liverjax import losses
from liverjax import metric_writer
from liverjax import train_cyclegan
from liverjax.data import dataset as dataset_lib
from liverjax.models import unet


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient."""


@flax.struct.dataclass
class TrainState:
  """Everything a training step updates; a pytree of arrays.

  Attributes:
    step: int32 scalar, optimizer steps taken.
    params: the U-Net's `nnx.Param` state (float32).
    batch_stats: the U-Net's `nnx.BatchStat` state (empty without BatchNorm).
    opt_state: the optax state.
    nonfinite_step: int32 scalar, the first step whose loss or gradients were
      not finite (that update was skipped), or -1.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  nonfinite_step: jax.Array


def create_optimizer(train_config) -> optax.GradientTransformation:
  """Adam at `train.learning_rate`, constant or cosine-decayed, optional warm-up."""
  lr = train_config.learning_rate
  if train_config.schedule == "constant":
    schedule = optax.constant_schedule(lr)
  elif train_config.schedule == "cosine":
    schedule = optax.cosine_decay_schedule(lr, max(train_config.steps, 1))
  else:
    raise ValueError(f"train.schedule={train_config.schedule!r}: "
                     "expected 'constant' or 'cosine'")
  if train_config.warmup_steps:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, train_config.warmup_steps), schedule],
        [train_config.warmup_steps])
  return optax.adam(schedule)


def prng_key(config, seed: int | None = None) -> jax.Array:
  """A typed PRNG key of `config.rng_impl` from `seed` (default `config.seed`).

  The default implementation is "rbg" (XLA's RngBitGenerator): threefry, JAX's
  default, compiles its unrolled hash into every program that draws random
  numbers, which costs ~1 s of XLA compile per parameter initialiser and per
  augmentation op on a small CPU. Both are deterministic for a given seed.
  """
  return jax.random.key(config.seed if seed is None else seed, impl=config.rng_impl)


def model_graphdef(model_config) -> nnx.GraphDef:
  """The static graph of the U-Net described by `config.model` (no arrays made)."""
  abstract = nnx.eval_shape(lambda: unet.create_unet(model_config, rngs=nnx.Rngs(0)))
  graphdef, _, _ = nnx.split(abstract, nnx.Param, nnx.BatchStat)
  return graphdef


def create_train_state(config: ml_collections.ConfigDict, mesh, rng: jax.Array):
  """Initialises the U-Net and Adam, replicated over `mesh`.

  Returns:
    (graphdef, state, tx): the static U-Net graph, a `TrainState` of global
    replicated arrays, and the optax transformation.
  """
  tx = create_optimizer(config.train)
  graphdef = model_graphdef(config.model)

  def init(key):
    model = unet.create_unet(config.model, rngs=nnx.Rngs(key))
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=batch_stats, opt_state=tx.init(params),
                      nonfinite_step=jnp.full((), -1, jnp.int32))

  replicated = input_pipeline.replicated_sharding(mesh)
  state = jax.jit(init, out_shardings=replicated)(rng)
  return graphdef, state, tx


def loss_weights(train_config) -> tuple[float, float, float]:
  return (train_config.dice_weight, train_config.bce_weight, train_config.jaccard_weight)


def train_step(state: TrainState, batch: dict, key: jax.Array, *, graphdef,
               tx: optax.GradientTransformation, weights, augment_fn=None):
  """One optimizer step on a global batch. Pure; jit it with `make_train_step`.

  Args:
    state: the `TrainState`.
    batch: {"image": f32[B,H,W,1] in [0,1], "mask": f32[B,H,W,1] in {0,1}},
      optionally "is_t2": f32[B] (1 for T2-SPIR slices, for the domain transform).
    key: PRNG key for this step (augmentation).
    graphdef: the U-Net graph (static).
    tx: the optimizer (static).
    weights: (dice, bce, jaccard) loss weights (static).
    augment_fn: None or `fn(key, images, masks, is_t2=None) -> (images, masks)`
      run on device before the forward pass.

  Returns:
    (new_state, metrics): metrics are scalars: the loss terms of
    `losses.segmentation_loss`, `grad_norm`, and `finite` (1.0 when the step
    was applied). A non-finite step leaves the state unchanged except for
    `step` and `nonfinite_step`.
  """
  images, masks = batch["image"], batch["mask"]
  if augment_fn is not None:
    images, masks = augment_fn(key, images, masks, is_t2=batch.get("is_t2"))

  def loss_fn(params):
    # copy=True: the batch statistics come from the outer (jit) trace; the
    # BatchNorm update inside the gradient trace must write to fresh Variables.
    model = nnx.merge(graphdef, params, state.batch_stats, copy=True)
    logits = model(images, train=True)
    total, terms = losses.segmentation_loss(logits, masks, weights=weights)
    return total, (terms, nnx.state(model, nnx.BatchStat))

  (total, (terms, new_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  grad_norm = optax.tree.norm(grads)
  updates, new_opt = tx.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
  new_state = TrainState(
      step=state.step + 1,
      params=keep(new_params, state.params),
      batch_stats=keep(new_stats, state.batch_stats),
      opt_state=keep(new_opt, state.opt_state),
      nonfinite_step=jnp.where(finite | (state.nonfinite_step >= 0),
                               state.nonfinite_step, state.step + 1))
  metrics = dict(terms, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
  return new_state, metrics


def make_augment_fn(config):
  """The on-device augmentation of `config.augment`, or None when it is off."""
  if not (config.augment.domain or config.augment.augmix):
    return None
  from liverjax.augment import pipeline  # pylint: disable=g-import-not-at-top
  return functools.partial(pipeline.augment_batch, augment_config=config.augment,
                           source=config.data.source)


def make_train_step(config, graphdef, tx, mesh):
  """`train_step` compiled with explicit shardings and the state donated."""
  replicated = input_pipeline.replicated_sharding(mesh)
  batch_sharding = input_pipeline.batch_sharding(mesh)
  step = functools.partial(train_step, graphdef=graphdef, tx=tx,
                           weights=loss_weights(config.train),
                           augment_fn=make_augment_fn(config))
  return jax.jit(step,
                 in_shardings=(replicated, batch_sharding, replicated),
                 out_shardings=(replicated, replicated),
                 donate_argnums=(0,))


def make_predict_fn(graphdef, mesh):
  """jit(state, images f32[B,H,W,1], masks) -> (prediction u8[B,H,W,1], loss sums).

  The prediction is `logits > 0` (probability > 0.5), the same threshold as the
  hard Dice of `losses.loss_sums`.
  """
  replicated = input_pipeline.replicated_sharding(mesh)
  batch_sharding = input_pipeline.batch_sharding(mesh)

  def predict(state, images, masks):
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    logits = model(images, train=False)
    return (logits > 0).astype(jnp.uint8), losses.loss_sums(logits, masks)

  return jax.jit(predict, in_shardings=(replicated, batch_sharding, batch_sharding),
                 out_shardings=(batch_sharding, batch_sharding))


def check_finite(state: TrainState) -> None:
  """Raises NonFiniteError naming the first bad step, if there was one."""
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    raise NonFiniteError(
        f"non-finite loss or gradients at step {bad}: training stopped (that "
        "update was skipped; the last checkpoint holds finite weights). Lower "
        "train.learning_rate, check the data, or use model.dtype='float32'.")


def _abstract_state(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      state)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains a U-Net on `config.data.source`, evaluates on `config.data.targets`.

  Resumes from the latest checkpoint in `workdir/checkpoints`. Writes
  `metrics.jsonl` (curves), TensorBoard scalars, checkpoints, and at the end
  the evaluation report (`metrics.json`, `metrics.md`, figures).

  Returns:
    The evaluation results (as written to `workdir/metrics.json`).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data = dataset_lib.load_dataset(config.data)
  logging.info("%s", dataset_lib.describe(data))
  source = config.data.source
  seqs = dataset_lib.domain_sequences(source, config.data)
  train_volumes = data.select(source, "train", seqs)
  val_volumes = data.select(source, "val", seqs)
  if not train_volumes:
    raise ValueError(f"no training volumes for source domain {source!r} in {data.root}")
  images, masks = dataset_lib.stack_slices(train_volumes)
  # The CycleGAN-based U-Net: source slices restyled as the target modality by a
  # trained CycleGAN (masks kept); a no-op unless augment.cyclegan_workdir is set.
  images = train_cyclegan.translate_slices(images, config)

  mesh = input_pipeline.create_mesh()
  rng = prng_key(config)
  init_rng, step_rng = jax.random.split(rng)
  graphdef, state, tx = create_train_state(config, mesh, init_rng)
  manager = checkpointing.create_manager(workdir, keep=config.train.keep_checkpoints)
  start_step = 0
  if manager.latest_step() is not None:
    state, start_step = checkpointing.restore(manager, _abstract_state(state))
    logging.info("resumed from the checkpoint at step %d in %s", start_step, manager.directory)
    metric_writer.truncate_after(workdir, start_step)
  writer = metric_writer.MetricWriter(workdir)
  train_step_fn = make_train_step(config, graphdef, tx, mesh)
  predict_fn = make_predict_fn(graphdef, mesh)
  config_dict = config.to_dict()

  total_steps = config.train.steps
  batches = input_pipeline.train_batches(
      images, masks, global_batch_size=config.train.batch_size, mesh=mesh,
      seed=config.seed, start_step=start_step, use_tf=config.data.use_tf,
      shuffle_buffer=config.data.shuffle_buffer,
      extras={"is_t2": dataset_lib.slice_is_t2(train_volumes)})
  logging.info("training on %d %s slices (%d volumes) for steps %d..%d, global batch %d "
               "over %d devices; augmentation: domain=%s augmix=%s cyclegan=%s", len(images),
               source, len(train_volumes), start_step, total_steps, config.train.batch_size,
               mesh.size, config.augment.domain, config.augment.augmix,
               config.augment.cyclegan_workdir)

  def validate(step):
    if not val_volumes:
      return {}
    results = evaluate.evaluate_volumes(predict_fn, state, val_volumes, mesh=mesh,
                                        batch_size=config.eval.batch_size,
                                        surface_metrics=False)
    val = {"val_dice": float(np.mean([r["dice"] for r in results])),
           "val_total": float(np.mean([r["total"] for r in results]))}
    writer.write_scalars(step, val, split="val")
    return val

  progress = metric_writer.Progress(start_step, total_steps)
  step = start_step
  while step < total_steps:
    batch = next(batches)
    state, metrics = train_step_fn(state, batch, jax.random.fold_in(step_rng, step))
    progress.append(metrics)
    step += 1
    is_last = step == total_steps
    if step % config.train.log_every == 0 or is_last:
      check_finite(state)
      means, rate, eta = progress.summarize(step)
      writer.write_scalars(step, {**means, "steps_per_sec": rate}, split="train")
      logging.info("step %d/%d  %.2f steps/s (%.0f slices/s)  ETA %s  loss %.4f "
                   "(dice_loss %.4f bce %.4f jaccard_loss %.4f) dice %.3f",
                   step, total_steps, rate, rate * config.train.batch_size, eta,
                   means["total"], means["dice_loss"], means["bce"], means["jaccard_loss"],
                   means["dice"])
    if step % config.train.eval_every == 0 or is_last:
      val = validate(step)
      if val:
        logging.info("step %d  validation: Dice %.4f  total loss %.4f", step,
                     val["val_dice"], val["val_total"])
      checkpointing.save(manager, step, state, config_dict,
                         metrics=val or {"val_dice": 0.0})
  writer.flush()
  if step > start_step:
    logging.info("training done: %d steps in %s", step - start_step,
                 metric_writer.format_seconds(time.time() - progress.start_time))
  return evaluate.evaluate_experiment(config, workdir, data=data, mesh=mesh,
                                      graphdef=graphdef, abstract_state=_abstract_state(state),
                                      predict_fn=predict_fn, manager=manager)

