"""The U-Net's train state, optimizer, the jit-compiled sharded train step and predictor.

The hot path is `train_step`, a pure function of (state, batch, key) compiled
once with `jax.jit`: the batch is split over the mesh's `data` axis, the state
is replicated and donated. The U-Net (Flax NNX) is split once into a static
graph definition and pytrees of parameters and batch statistics, so the step
never walks the object graph.
"""
from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from liverjax import runtime
from liverjax import training
from liverjax.augment import dg
from liverjax.augment import pipeline as augment_pipeline
from liverjax.models import unet
from liverjax.segmentation import losses
from liverjax.segmentation import organs as organs_lib


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
    ema_params: None (`train.ema_decay` = 0), else the exponential moving average
      of `params` (`update_ema`); validation, evaluation and prediction then use
      it (`inference_params`). A None field is not stored (`checkpointing.save`), so
      checkpoints made without an average restore as before.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  nonfinite_step: jax.Array
  ema_params: Any = None


def inference_params(state: TrainState):
  """The parameters a trained U-Net predicts with: the moving average when kept, else
  `state.params`."""
  return state.params if state.ema_params is None else state.ema_params


def update_ema(ema_params, params, step: jax.Array, decay: float):
  """One step of the parameters' exponential moving average.

  ema <- d * ema + (1 - d) * params with d = min(decay, (1 + step) / (10 + step)):
  the warm-up keeps the first steps from being dominated by the initial weights
  (after ~10 / (1 - decay) steps d = decay). `step` is the optimizer step just
  taken (int32 scalar); returns a pytree like `params` (float32).
  """
  t = step.astype(jnp.float32)
  d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
  return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema_params, params)


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


def model_graphdef(model_config) -> nnx.GraphDef:
  """The static graph of the U-Net described by `config.model` (no arrays made)."""
  abstract = nnx.eval_shape(lambda: unet.create_unet(model_config, rngs=nnx.Rngs(0)))
  graphdef, _, _ = nnx.split(abstract, nnx.Param, nnx.BatchStat)
  return graphdef


def _init_fn(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """key -> a fresh `TrainState` (the U-Net of `config.model`, `tx`'s state)."""

  def init(key):
    model = unet.create_unet(config.model, rngs=nnx.Rngs(key))
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    ema = jax.tree.map(jnp.copy, params) if config.train.get("ema_decay", 0.0) else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=batch_stats, opt_state=tx.init(params),
                      nonfinite_step=jnp.full((), -1, jnp.int32), ema_params=ema)

  return init


def create_train_state(config: ml_collections.ConfigDict, mesh, rng: jax.Array):
  """Initialises the U-Net and Adam, replicated over `mesh`.

  Returns:
    (graphdef, state, tx): the static U-Net graph, a `TrainState` of global
    replicated arrays, and the optax transformation.
  """
  tx = create_optimizer(config.train)
  init = _init_fn(config, tx)
  state = jax.jit(init, out_shardings=runtime.replicated_sharding(mesh))(rng)
  return model_graphdef(config.model), state, tx


def abstract_train_state(config: ml_collections.ConfigDict, mesh):
  """(graphdef, abstract `TrainState` as ShapeDtypeStructs replicated on `mesh`, tx).

  What a checkpoint restores into; nothing is computed.
  """
  tx = create_optimizer(config.train)
  abstract = training.abstract_state(_init_fn(config, tx), runtime.prng_key(config, 0),
                                     mesh=mesh)
  return model_graphdef(config.model), abstract, tx


def loss_weights(train_config) -> tuple[float, float, float]:
  """(dice, bce, jaccard) weights of the training loss, from `config.train`."""
  return (train_config.dice_weight, train_config.bce_weight, train_config.jaccard_weight)


def _loss_fn(params, images, masks, batch_stats, *, graphdef, weights, organ_ids=(),
             known=None):
  """Segmentation loss of the U-Net on one batch: (total, (terms, logits, new batch stats)).

  `masks` is the binary liver mask f32[B,H,W,1]; with `organ_ids` (multi-organ) it is the
  organ index map and `known` f32[B] marks the slices whose other organs are labelled.
  """
  # copy=True: the batch statistics come from the outer (jit) trace; the
  # BatchNorm update inside the gradient trace must write to fresh Variables.
  model = nnx.merge(graphdef, params, batch_stats, copy=True)
  logits = model(images, train=True)
  if organ_ids:
    targets, channel_weights = organs_lib.organ_targets(masks, known, organ_ids)
    total, terms = organs_lib.multi_organ_loss(logits, targets, channel_weights,
                                               loss_weights=weights)
  else:
    total, terms = losses.segmentation_loss(logits, masks, weights=weights)
  return total, (terms, logits, nnx.state(model, nnx.BatchStat))


def _ipa_loss_fn(params, view1, view2, masks, batch_stats, *, graphdef, weights,
                 consistency_weight, organ_ids=(), known=None):
  """GIN-IPA: the segmentation loss over both views (one 2B forward, the views of a slice
  side by side so each device keeps its slices) + weight x the consistency of the two
  predictions (`dg.consistency_loss`, sigmoid symmetric KL)."""
  b = view1.shape[0]
  both = jnp.stack([view1, view2], axis=1).reshape((2 * b,) + view1.shape[1:])
  masks2 = jnp.repeat(masks, 2, axis=0)
  known2 = None if known is None else jnp.repeat(known, 2, axis=0)
  seg, (terms, logits, stats) = _loss_fn(params, both, masks2, batch_stats,
                                         graphdef=graphdef, weights=weights,
                                         organ_ids=organ_ids, known=known2)
  pair = logits.reshape((b, 2) + logits.shape[1:])
  consistency = dg.consistency_loss(pair[:, 0], pair[:, 1], "sigmoid")
  total = seg + consistency_weight * consistency
  return total, (dict(terms, total=total, seg_total=seg, consistency=consistency), stats)


def train_step(state: TrainState, batch: dict, key: jax.Array, *, graphdef,
               tx: optax.GradientTransformation, weights, augment_fn=None,
               organ_ids: tuple[int, ...] = (),
               views: str | None = None, consistency_weight: float = 0.0,
               ema_decay: float = 0.0):
  """One optimizer step on a global batch. Pure; jit it with `make_train_step`.

  Args:
    state: the `TrainState`.
    batch: {"image": f32[B,H,W,1] in [0,1], "mask": f32[B,H,W,1] in {0,1}},
      optionally "is_t2": f32[B] (1 for T2-SPIR slices, for the domain
      transform) and "organs": int32[B,H,W] (organ labels of `nifti.ORGANS`, for
      the local location-scale and multi-organ training), with `organ_ids` also
      "organs_known": f32[B] (`organs.stack_labels`); with self-training
      "from_source": f32[B] (0 for pseudo-labelled target slices, whose masks
      hold `losses.IGNORE` pixels, left out of the loss).
    key: PRNG key for this step (augmentation).
    graphdef: the U-Net graph (static).
    tx: the optimizer (static).
    weights: (dice, bce, jaccard) loss weights (static).
    augment_fn: None or the on-device augmentation,
      `fn(key, images, masks, is_t2=None, organs=None, from_source=None)`, returning
      (images, masks) when `views` is None, else (view1, view2, masks)
      (`augment.pipeline.augment_batch` / `augment_views`).
    organ_ids: () for the liver model; else `organs.organ_ids(model.organs)`: the
      organ label map goes through `augment_fn` in place of the mask and the loss is
      `organs.multi_organ_loss` over the U-Net's channels.
    views: None (one view), "ipa" (GIN-IPA: loss over both views +
      `consistency_weight` x their consistency, metric "consistency"; ~2x the
      plain step) or "saliency" (SLAug: forward/backward on view1 (global) gives
      |d loss / d input|; `dg.saliency_fuse` blends view1 and view2 (local) by
      it; a second forward/backward on the fused image; the update is the sum
      of both gradients, the batch statistics those after both passes; metric
      "global_total" is the first pass's loss; ~2x the plain step). Static.
    consistency_weight: IPA's consistency weight (static).
    ema_decay: the decay of `update_ema` when `state.ema_params` is kept (static).

  Returns:
    (new_state, metrics): metrics are scalars: the loss terms of
    `losses.segmentation_loss` (of the fused image for "saliency"; over both
    views for "ipa", whose "total" includes the weighted consistency),
    `grad_norm`, and `finite` (1.0 when the step was applied). A non-finite
    step leaves the state unchanged except for `step` and `nonfinite_step`.
  """
  images, masks = batch["image"], batch["mask"]
  if organ_ids:
    masks = batch["organs"][..., None].astype(jnp.float32)
  aug_kwargs = dict(is_t2=batch.get("is_t2"), organs=batch.get("organs"),
                    from_source=batch.get("from_source"))
  loss_kw = dict(graphdef=graphdef, weights=weights, organ_ids=organ_ids,
                 known=batch.get("organs_known"))
  if views is None:
    if augment_fn is not None:
      images, masks = augment_fn(key, images, masks, **aug_kwargs)
    (total, (terms, _, new_stats)), grads = jax.value_and_grad(_loss_fn, has_aux=True)(
        state.params, images, masks, state.batch_stats, **loss_kw)
  elif views == "ipa":
    view1, view2, masks = augment_fn(key, images, masks, **aug_kwargs)
    (total, (terms, new_stats)), grads = jax.value_and_grad(_ipa_loss_fn, has_aux=True)(
        state.params, view1, view2, masks, state.batch_stats,
        consistency_weight=consistency_weight, **loss_kw)
  elif views == "saliency":
    global_img, local_img, masks = augment_fn(key, images, masks, **aug_kwargs)
    (total_g, (_, _, stats_g)), (grads_g, grad_x) = jax.value_and_grad(
        _loss_fn, argnums=(0, 1), has_aux=True)(state.params, global_img, masks,
                                                state.batch_stats, **loss_kw)
    fused = dg.saliency_fuse(global_img, local_img, grad_x)
    (total, (terms, _, new_stats)), grads_f = jax.value_and_grad(_loss_fn, has_aux=True)(
        state.params, fused, masks, stats_g, **loss_kw)
    grads = jax.tree.map(jnp.add, grads_g, grads_f)
    terms = dict(terms, global_total=total_g)
    total = total + total_g
  else:
    raise ValueError(f"train_step: views={views!r}; expected None, 'ipa' or 'saliency'")
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)

  # A non-finite step keeps the old parameters, statistics and optimizer state. `lax.cond`
  # runs only the branch taken; selecting every leaf with `jnp.where` instead made the CPU step
  # ~5 % slower at 64 px, batch 16 (the selects and layout copies of every parameter-sized
  # array), the same at 128 px. docs/results.md, "Speed on CPU and GPU", 2026-11-28.
  def apply(_):
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    new_ema = None
    if state.ema_params is not None:
      new_ema = update_ema(state.ema_params, new_params, state.step + 1, ema_decay)
    return new_params, new_stats, new_opt, new_ema

  def skip(_):
    return state.params, state.batch_stats, state.opt_state, state.ema_params

  new_params, kept_stats, new_opt, new_ema = jax.lax.cond(finite, apply, skip, None)
  new_state = TrainState(
      step=state.step + 1,
      params=new_params,
      batch_stats=kept_stats,
      opt_state=new_opt,
      nonfinite_step=jnp.where(finite | (state.nonfinite_step >= 0),
                               state.nonfinite_step, state.step + 1),
      ema_params=new_ema)
  metrics = dict(terms, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
  return new_state, metrics


def make_augment_fn(config):
  """The on-device augmentation of `config.augment`, or None when it is off.

  `augment.pipeline.augment_views` for a two-view recipe (`two_view_mode`),
  else `augment_batch`; closed over `config.augment` and `config.data.source`.
  """
  mode = augment_pipeline.two_view_mode(config.augment)
  if mode is None and not augment_pipeline.active_switches(config.augment):
    return None
  fn = augment_pipeline.augment_batch if mode is None else augment_pipeline.augment_views
  return functools.partial(fn, augment_config=config.augment, source=config.data.source)


def train_organ_ids(model_config) -> tuple[int, ...]:
  """() for the liver model (`model.organs` == ("liver",)), else `organs.organ_ids`."""
  ids = organs_lib.organ_ids(model_config.get("organs", ("liver",)))
  return ids if len(ids) > 1 else ()


def make_train_step(config, graphdef, tx, mesh):
  """`train_step` compiled with explicit shardings and the state donated."""
  replicated = runtime.replicated_sharding(mesh)
  batch_sharding = runtime.batch_sharding(mesh)
  step = functools.partial(train_step, graphdef=graphdef, tx=tx,
                           weights=loss_weights(config.train),
                           augment_fn=make_augment_fn(config),
                           organ_ids=train_organ_ids(config.model),
                           views=augment_pipeline.two_view_mode(config.augment),
                           consistency_weight=float(config.augment.get("ipa_weight", 0.0)),
                           ema_decay=float(config.train.get("ema_decay", 0.0)))
  return jax.jit(step,
                 in_shardings=(replicated, batch_sharding, replicated),
                 out_shardings=(replicated, replicated),
                 donate_argnums=(0,), compiler_options=runtime.compiler_options())


@functools.cache
def make_volume_stats_fn(graphdef, mesh):
  """jit(state, images f32[N,H,W,1]) -> batch_stats: every batch norm's mean and variance
  over these N slices (train-mode statistics, momentum 0), for test-time adaptation.

  The slices are one batch, replicated on every device (no padding slices may enter the
  statistics). Returns a state of the `state.batch_stats` structure; parameters are unused
  beyond the forward pass and nothing is learned.
  """
  replicated = runtime.replicated_sharding(mesh)

  def volume_stats(state, images):
    model = nnx.merge(graphdef, inference_params(state), state.batch_stats, copy=True)
    for _, module in nnx.iter_modules(model):
      if isinstance(module, nnx.BatchNorm):
        module.momentum = 0.0
    model(images, train=True)
    return nnx.state(model, nnx.BatchStat)

  return jax.jit(volume_stats, in_shardings=(replicated, replicated), out_shardings=replicated,
                 compiler_options=runtime.compiler_options())


@functools.cache
def make_predict_fn(graphdef, mesh):
  """jit(state, images f32[B,H,W,1], masks) -> (prediction u8[B,H,W,1], loss sums).

  The prediction is `logits > 0` (probability > 0.5) of channel 0 (the liver; a
  multi-organ U-Net's other channels are dropped), the same threshold as the
  hard Dice of `losses.loss_sums`. Cached per (graph, mesh): training's
  validation and the final evaluation share one compiled predictor.
  """
  replicated = runtime.replicated_sharding(mesh)
  batch_sharding = runtime.batch_sharding(mesh)

  def predict(state, images, masks):
    model = nnx.merge(graphdef, inference_params(state), state.batch_stats)
    logits = model(images, train=False)[..., :1]
    return (logits > 0).astype(jnp.uint8), losses.loss_sums(logits, masks)

  return jax.jit(predict, in_shardings=(replicated, batch_sharding, batch_sharding),
                 out_shardings=(batch_sharding, batch_sharding),
                 compiler_options=runtime.compiler_options())


@functools.cache
def make_logits_fn(graphdef, mesh):
  """jit(state, images f32[B,H,W,1]) -> liver logits f32[B,H,W] (channel 0), eval mode.

  The batch is split over the mesh's `data` axis (pad it to a multiple of the device count,
  `pipeline.eval_batches`). Cached per (graph, mesh). What `liverjax.predict` and the
  self-training teacher run (scripts/benchmark_vs_monai.py --mode=inference times it).
  """
  replicated = runtime.replicated_sharding(mesh)
  batch_sharding = runtime.batch_sharding(mesh)

  def logits(state, images):
    model = nnx.merge(graphdef, inference_params(state), state.batch_stats)
    return model(images, train=False)[..., 0].astype(jnp.float32)

  return jax.jit(logits, in_shardings=(replicated, batch_sharding), out_shardings=batch_sharding,
                 compiler_options=runtime.compiler_options())
