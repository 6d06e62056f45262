"""CycleGAN training (unpaired CT <-> MR slice translation) and its use by the U-Net.

Naming follows the paper: domain A = CT, domain B = MR; generator G: CT -> MR,
generator F: MR -> CT; discriminator D_A judges CT (real CT vs F(mr)), D_B
judges MR (real MR vs G(ct)). Networks are `liverjax.models.cyclegan`.

The hot path is `cyclegan_step`, one pure function of (state, CT batch, MR
batch, key, learning rate) compiled once with `jax.jit` (batches split over the mesh's `data`
axis, the state replicated and donated). One step is
  1. the generator update (G and F, one Adam): LSGAN adversarial terms
     mean((D_B(G(a)) - 1)^2) and mean((D_A(F(b)) - 1)^2), the cycle L1
     lambda_cycle * (|F(G(a)) - a| + |G(F(b)) - b|) and the identity L1
     lambda_identity * lambda_cycle * (|G(b) - b| + |F(a) - a|);
  2. the image pools: the fakes of step 1 go through the history pools (50
     images; once full, each new image is with probability 1/2 swapped for a
     random stored one, which it replaces) - pure, with `jax.random`;
  3. the discriminator update (D_A and D_B, one Adam): LSGAN
     0.5 * (mean((D(real) - 1)^2) + mean(D(pool sample)^2)).
Adam has lr 2e-4, b1 0.5, constant then linearly decayed to 0 over the second
half of training (`config.cyclegan`); the loop evaluates the schedule and
passes the step's learning rate to the compiled step, so one compiled step
serves runs of any length.

`train_and_evaluate` trains with resume, logging, sample grids and checkpoints
and ends with the translation-quality report (`cyclegan_metrics.json`,
`cyclegan.md`). `load_generators` reloads a trained CycleGAN's generators;
`translate_slices` uses them to restyle the U-Net's training slices (the
CycleGAN-based U-Net, `config.augment.cyclegan_workdir`).
"""
from __future__ import annotations

import functools
import pathlib
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from liverjax import checkpointing
from liverjax import cyclegan_report
from liverjax import input_pipeline
from liverjax import metric_writer
from liverjax.data import dataset as dataset_lib
from liverjax.models import cyclegan as cyclegan_models

METRIC_KEYS = ("g_adv", "f_adv", "cycle", "identity", "total_g", "d_a", "d_b")


class NonFiniteError(FloatingPointError):
  """CycleGAN training produced a non-finite loss or gradient."""


# ---------------------------------------------------------------------- state


@flax.struct.dataclass
class ImagePool:
  """A history of generated images (Shrivastava et al. 2017), as arrays.

  Attributes:
    images: f32[P,H,W,1], the stored images (the first `count` are valid).
    count: int32 scalar, how many are stored (grows to P, then stays).
  """
  images: jax.Array
  count: jax.Array


@flax.struct.dataclass
class CycleGanState:
  """Everything a CycleGAN step updates; a pytree of arrays.

  Attributes:
    step: int32 scalar, steps taken.
    g: params (`nnx.Param` state) of G, CT -> MR.
    f: params of F, MR -> CT.
    d_a: params of D_A (judges CT).
    d_b: params of D_B (judges MR).
    gen_opt_state: Adam state over {"g": ..., "f": ...}.
    disc_opt_state: Adam state over {"d_a": ..., "d_b": ...}.
    pool_a: `ImagePool` of generated CT images F(mr) shown to D_A.
    pool_b: `ImagePool` of generated MR images G(ct) shown to D_B.
    nonfinite_step: int32 scalar, the first step whose losses or gradients
      were not finite (that update was skipped), or -1.
  """
  step: jax.Array
  g: Any
  f: Any
  d_a: Any
  d_b: Any
  gen_opt_state: Any
  disc_opt_state: Any
  pool_a: ImagePool
  pool_b: ImagePool
  nonfinite_step: jax.Array


@flax.struct.dataclass
class Graphs:
  """The static halves of the networks: G and F share one graph, D_A and D_B another."""
  generator: Any = flax.struct.field(pytree_node=False)
  discriminator: Any = flax.struct.field(pytree_node=False)


def _dtype(name: str):
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"cyclegan.dtype={name!r}: expected 'float32' or 'bfloat16'")
  return jnp.dtype(name)


def create_generator(cg_config, rngs: nnx.Rngs) -> cyclegan_models.ResnetGenerator:
  """The ResnetGenerator described by `config.cyclegan`."""
  return cyclegan_models.ResnetGenerator(
      features=cg_config.generator_features, n_blocks=cg_config.generator_blocks,
      dtype=_dtype(cg_config.dtype), rngs=rngs)


def create_discriminator(cg_config, rngs: nnx.Rngs) -> cyclegan_models.PatchDiscriminator:
  """The PatchDiscriminator described by `config.cyclegan`."""
  return cyclegan_models.PatchDiscriminator(
      features=cg_config.discriminator_features, n_layers=cg_config.discriminator_layers,
      dtype=_dtype(cg_config.dtype), rngs=rngs)


def model_graphs(cg_config) -> Graphs:
  """The static graphs of the generator and discriminator (no arrays made)."""
  gen = nnx.eval_shape(lambda: create_generator(cg_config, nnx.Rngs(0)))
  disc = nnx.eval_shape(lambda: create_discriminator(cg_config, nnx.Rngs(0)))
  return Graphs(generator=nnx.split(gen, nnx.Param)[0],
                discriminator=nnx.split(disc, nnx.Param)[0])


def learning_rate_schedule(cg_config) -> Callable[[int], float]:
  """step -> learning rate (a Python float; host-side, evaluated by the loop).

  `learning_rate` until `decay_start_fraction * steps`, then linearly down to
  0 at `steps` (0 after). With the defaults: constant over the first half,
  linear decay to 0 over the second half, as in the CycleGAN paper.
  """
  lr, steps = float(cg_config.learning_rate), max(int(cg_config.steps), 1)
  start = min(max(int(round(cg_config.decay_start_fraction * steps)), 0), steps)

  def schedule(step: int) -> float:
    if step < start:
      return lr
    return lr * max(0.0, 1.0 - (step - start) / max(steps - start, 1))

  return schedule


def create_optimizer(cg_config) -> optax.GradientTransformation:
  """Adam's update direction, `optax.scale_by_adam(beta1, beta2)` (G+F share one, D_A+D_B one).

  The learning rate is not part of it: `cyclegan_step` takes the step's rate
  as an argument (the loop evaluates `learning_rate_schedule`), so one
  compiled step serves runs of any length. Cached per (beta1, beta2).
  """
  return _adam(float(cg_config.beta1), float(cg_config.beta2))


@functools.cache
def _adam(b1: float, b2: float) -> optax.GradientTransformation:
  return optax.scale_by_adam(b1=b1, b2=b2)


def empty_pool(pool_size: int, image_size: int) -> ImagePool:
  """An empty `ImagePool` of `pool_size` f32[image_size, image_size, 1] images."""
  return ImagePool(images=jnp.zeros((pool_size, image_size, image_size, 1), jnp.float32),
                   count=jnp.zeros((), jnp.int32))


def init_key(rng: jax.Array) -> jax.Array:
  """An "rbg" PRNG key derived from any key, for the weight initialisation.

  XLA:CPU compiles threefry normal sampling slowly (about 0.5-1.5 s per weight
  shape; ~10 s for a small generator) and rbg about 7x faster; weights only
  need a well-mixed, seed-determined draw. The same `rng` gives the same key.
  """
  data = jax.random.key_data(rng).reshape(-1).astype(jnp.uint32)
  data = jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9), data, data])[:4]
  return jax.random.wrap_key_data(data, impl="rbg")


def create_cyclegan_state(config: ml_collections.ConfigDict, mesh, rng: jax.Array):
  """Initialises G, F, D_A, D_B, both Adams and the empty pools, replicated over `mesh`.

  Args:
    config: the experiment config (`config.cyclegan`, `config.data.image_size`).
    mesh: the device mesh (`input_pipeline.create_mesh()`).
    rng: PRNG key for the initialisation (turned into an rbg key, `init_key`).

  Returns:
    (graphs, state, (gen_tx, disc_tx)): the static `Graphs`, a `CycleGanState`
    of global replicated arrays, and the two optax transformations.
  """
  cg = config.cyclegan
  tx = create_optimizer(cg)
  arch = tuple((k, cg[k]) for k in ARCHITECTURE_KEYS)
  init = _compiled_init(arch, int(cg.pool_size), int(config.data.image_size), tx, mesh)
  return model_graphs(cg), init(rng), (tx, tx)


ARCHITECTURE_KEYS = ("generator_features", "generator_blocks", "discriminator_features",
                     "discriminator_layers", "dtype")


@functools.cache
def _compiled_init(arch: tuple, pool_size: int, image_size: int,
                   tx: optax.GradientTransformation, mesh) -> Callable:
  """jit(rng) -> a new `CycleGanState`, replicated; cached per setting (compiles once)."""
  cg = ml_collections.ConfigDict(dict(arch))

  def init(key):
    kg, kf, ka, kb = jax.random.split(init_key(key), 4)
    params = lambda model: nnx.split(model, nnx.Param)[1]  # noqa: E731
    g = params(create_generator(cg, nnx.Rngs(kg)))
    f = params(create_generator(cg, nnx.Rngs(kf)))
    d_a = params(create_discriminator(cg, nnx.Rngs(ka)))
    d_b = params(create_discriminator(cg, nnx.Rngs(kb)))
    return CycleGanState(
        step=jnp.zeros((), jnp.int32), g=g, f=f, d_a=d_a, d_b=d_b,
        gen_opt_state=tx.init({"g": g, "f": f}),
        disc_opt_state=tx.init({"d_a": d_a, "d_b": d_b}),
        pool_a=empty_pool(pool_size, image_size), pool_b=empty_pool(pool_size, image_size),
        nonfinite_step=jnp.full((), -1, jnp.int32))

  return jax.jit(init, out_shardings=input_pipeline.replicated_sharding(mesh))


def abstract_cyclegan_state(config, mesh) -> Any:
  """The `CycleGanState` of `config` as `jax.ShapeDtypeStruct`s, replicated on `mesh`
  (what a checkpoint restores into; nothing is computed)."""
  abstract = jax.eval_shape(lambda: create_cyclegan_state(config, mesh, jax.random.key(0))[1])
  replicated = input_pipeline.replicated_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract)


# ---------------------------------------------------------------------- losses


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


# ---------------------------------------------------------------------- pool


def pool_query(pool: ImagePool, images: jax.Array, key: jax.Array
               ) -> tuple[ImagePool, jax.Array]:
  """Passes a batch of generated images through the history pool; pure.

  Images are handled one after the other (a `lax.scan`), as in the reference
  implementation: while the pool is not full, the image is stored and
  returned; once full, with probability 1/2 a uniformly chosen stored image is
  returned and the new image takes its place, otherwise the new image is
  returned and the pool is unchanged. A pool of size 0 returns `images`.

  Args:
    pool: the `ImagePool` (P images).
    images: f32[B,H,W,1] generated images (gradients are stopped).
    key: PRNG key.

  Returns:
    (new_pool, out): out f32[B,H,W,1] mixes stored and new images.
  """
  images = jax.lax.stop_gradient(images).astype(jnp.float32)
  size = pool.images.shape[0]
  if size == 0:
    return pool, images

  def body(carry, x):
    stored, count = carry
    image, k = x
    k_coin, k_idx = jax.random.split(k)
    filling = count < size
    swap = jnp.logical_and(~filling, jax.random.uniform(k_coin) < 0.5)
    idx = jnp.where(filling, count, jax.random.randint(k_idx, (), 0, size))
    old = stored[idx]
    out = jnp.where(swap, old, image)
    stored = stored.at[idx].set(jnp.where(filling | swap, image, old))
    return (stored, jnp.minimum(count + 1, size)), out

  keys = jax.random.split(key, images.shape[0])
  (stored, count), out = jax.lax.scan(body, (pool.images, pool.count), (images, keys))
  return ImagePool(images=stored, count=count), out


# ---------------------------------------------------------------------- step


def cyclegan_step(state: CycleGanState, batch_ct: jax.Array, batch_mr: jax.Array,
                  key: jax.Array, learning_rate: jax.Array, *, graphs: Graphs,
                  gen_tx: optax.GradientTransformation,
                  disc_tx: optax.GradientTransformation, lambda_cycle: float,
                  lambda_identity: float, batch_sharding=None):
  """One CycleGAN step (generator update, pools, discriminator update). Pure.

  Jit it with `make_cyclegan_step`.

  Args:
    state: the `CycleGanState`.
    batch_ct: f32[B,H,W,1] CT slices in [0,1] (domain A).
    batch_mr: f32[B,H,W,1] MR slices in [0,1] (domain B), unpaired with batch_ct.
    key: PRNG key of this step (the pools).
    learning_rate: f32 scalar, this step's Adam learning rate (both optimizers;
      `learning_rate_schedule(config.cyclegan)(state.step)`).
    graphs: the static `Graphs`.
    gen_tx, disc_tx: the update directions, `create_optimizer` (static).
    lambda_cycle, lambda_identity: loss weights (static).
    batch_sharding: optional sharding the pool outputs are constrained to
      (the batch sharding, so the discriminators run data-parallel).

  Returns:
    (new_state, metrics): metrics are float32 scalars g_adv, f_adv, cycle,
    identity, total_g (see `generator_losses`), d_a, d_b (discriminator losses
    on real and pool images, before their update), gen_grad_norm,
    disc_grad_norm, learning_rate, finite (1.0 when the step was applied).
    A non-finite step leaves the state unchanged except for `step` and
    `nonfinite_step`.
  """
  gen_graph, disc_graph = graphs.generator, graphs.discriminator
  k_pool_a, k_pool_b = jax.random.split(key)
  apply = nnx.merge  # (graph, params) -> module

  def gen_loss_fn(gen_params):
    g = apply(gen_graph, gen_params["g"])
    f = apply(gen_graph, gen_params["f"])
    d_a = apply(disc_graph, state.d_a)
    d_b = apply(disc_graph, state.d_b)
    total, terms, fakes = generator_losses(
        g, f, d_a, d_b, batch_ct, batch_mr, lambda_cycle=lambda_cycle,
        lambda_identity=lambda_identity)
    return total, (terms, fakes)

  gen_params = {"g": state.g, "f": state.f}
  (total_g, (terms, (fake_a, fake_b))), gen_grads = jax.value_and_grad(
      gen_loss_fn, has_aux=True)(gen_params)
  gen_updates, new_gen_opt = gen_tx.update(gen_grads, state.gen_opt_state, gen_params)
  scale = lambda tree: jax.tree.map(lambda u: -learning_rate * u, tree)  # noqa: E731
  new_gen = optax.apply_updates(gen_params, scale(gen_updates))

  pool_a, sample_a = pool_query(state.pool_a, fake_a, k_pool_a)
  pool_b, sample_b = pool_query(state.pool_b, fake_b, k_pool_b)
  if batch_sharding is not None:
    sample_a = jax.lax.with_sharding_constraint(sample_a, batch_sharding)
    sample_b = jax.lax.with_sharding_constraint(sample_b, batch_sharding)

  def disc_loss_fn(disc_params):
    d_a = discriminator_loss(apply(disc_graph, disc_params["d_a"]), batch_ct, sample_a)
    d_b = discriminator_loss(apply(disc_graph, disc_params["d_b"]), batch_mr, sample_b)
    return d_a + d_b, (d_a, d_b)

  disc_params = {"d_a": state.d_a, "d_b": state.d_b}
  (total_d, (loss_d_a, loss_d_b)), disc_grads = jax.value_and_grad(
      disc_loss_fn, has_aux=True)(disc_params)
  disc_updates, new_disc_opt = disc_tx.update(disc_grads, state.disc_opt_state, disc_params)
  new_disc = optax.apply_updates(disc_params, scale(disc_updates))

  gen_norm = optax.tree.norm(gen_grads)
  disc_norm = optax.tree.norm(disc_grads)
  finite = (jnp.isfinite(total_g) & jnp.isfinite(total_d) & jnp.isfinite(gen_norm)
            & jnp.isfinite(disc_norm))
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
  new_state = CycleGanState(
      step=state.step + 1,
      g=keep(new_gen["g"], state.g), f=keep(new_gen["f"], state.f),
      d_a=keep(new_disc["d_a"], state.d_a), d_b=keep(new_disc["d_b"], state.d_b),
      gen_opt_state=keep(new_gen_opt, state.gen_opt_state),
      disc_opt_state=keep(new_disc_opt, state.disc_opt_state),
      pool_a=keep(pool_a, state.pool_a), pool_b=keep(pool_b, state.pool_b),
      nonfinite_step=jnp.where(finite | (state.nonfinite_step >= 0),
                               state.nonfinite_step, state.step + 1))
  metrics = dict(terms, total_g=total_g, d_a=loss_d_a, d_b=loss_d_b,
                 gen_grad_norm=gen_norm, disc_grad_norm=disc_norm,
                 learning_rate=jnp.asarray(learning_rate, jnp.float32),
                 finite=finite.astype(jnp.float32))
  return new_state, metrics


def make_cyclegan_step(config, graphs: Graphs, txs, mesh):
  """`cyclegan_step` compiled with explicit shardings and the state donated.

  Returns:
    jit(state, batch_ct f32[B,H,W,1], batch_mr f32[B,H,W,1], key, learning_rate)
    -> (state, metrics); batches split over `data`, the rest replicated. Cached
    per (graphs, optimizers, loss weights, mesh): it compiles once per process.
  """
  gen_tx, disc_tx = txs
  return _compiled_step(graphs, gen_tx, disc_tx, float(config.cyclegan.lambda_cycle),
                        float(config.cyclegan.lambda_identity), mesh)


@functools.cache
def _compiled_step(graphs, gen_tx, disc_tx, lambda_cycle, lambda_identity, mesh):
  replicated = input_pipeline.replicated_sharding(mesh)
  batch = input_pipeline.batch_sharding(mesh)
  step = functools.partial(
      cyclegan_step, graphs=graphs, gen_tx=gen_tx, disc_tx=disc_tx,
      lambda_cycle=lambda_cycle, lambda_identity=lambda_identity, batch_sharding=batch)
  return jax.jit(step, in_shardings=(replicated, batch, batch, replicated, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


@functools.cache
def make_translate_fn(graphdef) -> Callable:
  """jit(params, images f32[B,H,W,1] in [0,1]) -> f32[B,H,W,1] in [0,1] (one generator).

  The output keeps the input's sharding (XLA propagates it from the batch).
  Cached per generator graph, so reloading generators does not recompile.
  """
  return jax.jit(lambda params, images: nnx.merge(graphdef, params)(images))


def check_finite(state: CycleGanState) -> None:
  """Raises NonFiniteError naming the first bad step, if there was one."""
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    raise NonFiniteError(
        f"non-finite CycleGAN loss or gradients at step {bad}: training stopped (that "
        "update was skipped; the last checkpoint holds finite weights). Lower "
        "cyclegan.learning_rate or use cyclegan.dtype='float32'.")


# ---------------------------------------------------------------------- translation


def translate_array(translate: Callable, images: np.ndarray, *, mesh,
                    batch_size: int = 32) -> np.ndarray:
  """Runs `translate` (a batch function) over slices in fixed-size sharded batches.

  Args:
    translate: f32[B,H,W,1] -> f32[B,H,W,1], e.g. from `load_generators`.
    images: f32[N,H,W,1] in [0,1] (every process holds all of them).
    mesh: the device mesh.
    batch_size: slices per call (rounded up to the device count; the last
      batch is zero-padded so there is one compiled shape).

  Returns:
    f32[N,H,W,1] numpy array, clipped to [0,1].
  """
  out = []
  for batch, valid in input_pipeline.eval_batches(np.asarray(images, np.float32),
                                                  batch_size, mesh):
    out.append(np.asarray(input_pipeline.gather(translate(batch)))[:valid])
  if not out:
    return np.zeros_like(images, np.float32)
  return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)


def _checkpoint_location(path) -> tuple[pathlib.Path, int | None]:
  """(checkpoints folder, step or None for latest) of a workdir, checkpoints/ or step folder."""
  path = dataset_lib.expand_path(path).absolute()
  if (path / "checkpoints").is_dir():
    return path / "checkpoints", None
  if path.name.isdigit() and path.is_dir():
    return path.parent, int(path.name)
  if path.is_dir():
    return path, None
  raise FileNotFoundError(f"CycleGAN checkpoint not found: {path} (expected a CycleGAN "
                          "workdir, its checkpoints/ folder, or a checkpoints/<step> folder)")


def _saved_config(config, saved: dict | None) -> ml_collections.ConfigDict:
  """The CycleGAN and image-size settings a checkpoint was made with (else `config`'s)."""
  out = ml_collections.ConfigDict()
  out.cyclegan = ml_collections.ConfigDict(config.cyclegan.to_dict())
  out.data = ml_collections.ConfigDict({"image_size": config.data.image_size})
  if saved:
    for k, v in (saved.get("cyclegan") or {}).items():
      if k in out.cyclegan and v is not None:
        out.cyclegan[k] = type(out.cyclegan[k])(v) if not isinstance(v, list) else tuple(v)
    if "image_size" in (saved.get("data") or {}):
      out.data.image_size = int(saved["data"]["image_size"])
  return out


def load_cyclegan_state(checkpoint_workdir_or_path, config, mesh=None):
  """Restores a trained CycleGAN's state.

  Args:
    checkpoint_workdir_or_path: a CycleGAN workdir (latest checkpoint), its
      `checkpoints/` folder, or one `checkpoints/<step>` folder.
    config: a config with a `cyclegan` section; the architecture stored with
      the checkpoint takes precedence (a differing field is logged).
    mesh: the mesh to restore onto (default: all devices), replicated.

  Returns:
    (graphs, state, step, ckpt_config): `ckpt_config` has the `cyclegan` and
    `data.image_size` the checkpoint was made with.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory, step = _checkpoint_location(checkpoint_workdir_or_path)
  manager = ocp.CheckpointManager(directory, item_names=("state", "config"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  if step is None:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no CycleGAN checkpoint in {directory}")
  ckpt_config = _saved_config(config, checkpointing.restore_config(manager, step))
  for k in ("generator_features", "generator_blocks", "dtype"):
    if ckpt_config.cyclegan[k] != config.cyclegan[k]:
      logging.info("CycleGAN checkpoint %s/%d has cyclegan.%s=%r (config: %r); using the "
                   "checkpoint's", directory, step, k, ckpt_config.cyclegan[k],
                   config.cyclegan[k])
  if mesh is None:
    mesh = input_pipeline.create_mesh()
  graphs = model_graphs(ckpt_config.cyclegan)
  state, step = checkpointing.restore(manager, abstract_cyclegan_state(ckpt_config, mesh), step)
  return graphs, state, step, ckpt_config


def load_generators(checkpoint_workdir_or_path, config, mesh=None
                    ) -> tuple[Callable, Callable]:
  """Reloads a trained CycleGAN's generators.

  Args:
    checkpoint_workdir_or_path: a CycleGAN workdir, its `checkpoints/` folder
      or a `checkpoints/<step>` folder.
    config: a config with a `cyclegan` section (the checkpoint's own settings win).
    mesh: where the parameters live (default: all devices, replicated).

  Returns:
    (translate_ct_to_mr, translate_mr_to_ct): jit-compiled batch functions
    f32[B,H,W,1] in [0,1] -> f32[B,H,W,1] in [0,1] (G and F).
  """
  graphs, state, step, _ = load_cyclegan_state(checkpoint_workdir_or_path, config, mesh)
  logging.info("loaded the CycleGAN generators of step %d from %s", step,
               checkpoint_workdir_or_path)
  apply = make_translate_fn(graphs.generator)
  g, f = state.g, state.f
  return functools.partial(apply, g), functools.partial(apply, f)


def translate_slices(images: np.ndarray, config, *, source: str | None = None
                     ) -> np.ndarray:
  """Restyles the U-Net's source-domain training slices with a trained CycleGAN.

  With `config.augment.cyclegan_workdir` unset, returns `images` unchanged.
  Otherwise loads the generators, translates every slice to the other
  domain's style (G: CT -> MR for source "ct", F: MR -> CT for "mr") on the
  devices in batches of `config.eval.batch_size`, and, when
  `config.augment.cyclegan_mix` > 0, keeps that fraction of slices (a fixed
  random subset drawn from `config.seed`) in their original style. Masks are
  untouched: the translation keeps the anatomy.

  Args:
    images: f32[N,H,W,1] in [0,1], the source-domain training slices.
    config: the U-Net experiment config.
    source: the slices' domain ("ct" | "mr"); default `config.data.source`.

  Returns:
    f32[N,H,W,1] in [0,1].
  """
  workdir = config.augment.get("cyclegan_workdir")
  if not workdir:
    return images
  source = source or config.data.source
  if source not in ("ct", "mr"):
    raise ValueError(f"translate_slices: unknown source domain {source!r}")
  mesh = input_pipeline.create_mesh()
  ct_to_mr, mr_to_ct = load_generators(workdir, config, mesh)
  translate = ct_to_mr if source == "ct" else mr_to_ct
  start = time.time()
  out = translate_array(translate, images, mesh=mesh, batch_size=config.eval.batch_size)
  mix = float(config.augment.get("cyclegan_mix", 0.0))
  kept = 0
  if mix > 0:
    keep = np.random.default_rng([int(config.seed), 7919]).random(len(images)) < mix
    out[keep] = images[keep]
    kept = int(keep.sum())
  logging.info("CycleGAN: translated %d %s training slices to %s style in %.1fs "
               "(%d kept original, cyclegan_mix=%.2f)", len(images) - kept, source,
               "mr" if source == "ct" else "ct", time.time() - start, kept, mix)
  return out


# ---------------------------------------------------------------------- loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains a CycleGAN between CT and MR training slices, then reports translation quality.

  Unpaired data: CT training slices and MR training slices (the sequences of
  `data.mr_sequences`) come from two independent input pipelines (seeds
  `seed` and `seed + 1`). Resumes from the latest checkpoint in
  `workdir/checkpoints`. Writes `metrics.jsonl` and TensorBoard scalars,
  sample grids `workdir/samples/step_XXXXXX.png` (and TensorBoard images),
  checkpoints every `cyclegan.checkpoint_every` steps and at the end, then
  `cyclegan_metrics.json` and `cyclegan.md` on the validation and test
  patients.

  Returns:
    The results dict written to `workdir/cyclegan_metrics.json`.
  """
  cg = config.cyclegan
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data = dataset_lib.load_dataset(config.data, trained_domains=("ct", "mr"))
  logging.info("%s", dataset_lib.describe(data))
  mr_seqs = dataset_lib.domain_sequences("mr", config.data)
  ct_train = data.select("ct", "train", ("ct",))
  mr_train = data.select("mr", "train", mr_seqs)
  if not ct_train or not mr_train:
    raise ValueError(f"the CycleGAN needs CT and MR training volumes; {data.root} has "
                     f"{len(ct_train)} CT and {len(mr_train)} MR ({mr_seqs})")
  ct_images, ct_masks = dataset_lib.stack_slices(ct_train)
  mr_images, mr_masks = dataset_lib.stack_slices(mr_train)

  # Imported here: liverjax.train may import this module (translate_slices).
  from liverjax import train  # pylint: disable=g-import-not-at-top
  mesh = input_pipeline.create_mesh()
  init_rng, step_rng = jax.random.split(train.prng_key(config))
  manager = checkpointing.create_manager(workdir, keep=cg.keep_checkpoints, best_metric=None)
  start_step = 0
  if manager.latest_step() is not None:
    graphs, txs = model_graphs(cg), (create_optimizer(cg),) * 2
    state, start_step = checkpointing.restore(manager, abstract_cyclegan_state(config, mesh))
    logging.info("resumed from the checkpoint at step %d in %s", start_step, manager.directory)
    metric_writer.truncate_after(workdir, start_step)
  else:
    graphs, state, txs = create_cyclegan_state(config, mesh, init_rng)
  writer = metric_writer.MetricWriter(workdir)
  step_fn = make_cyclegan_step(config, graphs, txs, mesh)
  schedule = learning_rate_schedule(cg)
  apply = make_translate_fn(graphs.generator)
  config_dict = config.to_dict()
  eval_bs = config.eval.batch_size

  total_steps = int(cg.steps)
  pipeline = functools.partial(
      input_pipeline.train_batches, global_batch_size=cg.batch_size, mesh=mesh,
      start_step=start_step, use_tf=config.data.use_tf, shuffle_buffer=config.data.shuffle_buffer)
  ct_batches = pipeline(ct_images, ct_masks, seed=config.seed)
  mr_batches = pipeline(mr_images, mr_masks, seed=config.seed + 1)
  logging.info("CycleGAN: %d CT slices (%d volumes), %d MR slices (%d volumes, %s); steps "
               "%d..%d, global batch %d over %d devices", len(ct_images), len(ct_train),
               len(mr_images), len(mr_train), ",".join(mr_seqs), start_step, total_steps,
               cg.batch_size, mesh.size)

  def held_out(domain, seqs):
    return data.select(domain, "val", seqs) or data.select(domain, "train", seqs)

  sample_ct = cyclegan_report.pick_sample_slices(held_out("ct", ("ct",)), cg.sample_slices)
  sample_mr = cyclegan_report.pick_sample_slices(held_out("mr", mr_seqs), cg.sample_slices)

  def write_samples(step):
    n = min(len(sample_ct), len(sample_mr))
    if not n:
      return
    run = functools.partial(translate_array, mesh=mesh, batch_size=eval_bs)
    grid = cyclegan_report.sample_grid(functools.partial(run, functools.partial(apply, state.g)),
                                       functools.partial(run, functools.partial(apply, state.f)),
                                       sample_ct[:n], sample_mr[:n])
    if jax.process_index() == 0:
      cyclegan_report.write_sample_png(grid, workdir / "samples" / f"step_{step:06d}.png", step)
    writer.write_images(step, {"translations": cyclegan_report.grid_image(grid)})

  progress = metric_writer.Progress(start_step, total_steps)
  step = start_step
  while step < total_steps:
    ct_batch, mr_batch = next(ct_batches), next(mr_batches)
    state, metrics = step_fn(state, ct_batch["image"], mr_batch["image"],
                             jax.random.fold_in(step_rng, step), np.float32(schedule(step)))
    progress.append(metrics)
    step += 1
    is_last = step == total_steps
    if step % cg.log_every == 0 or is_last:
      check_finite(state)
      means, rate, eta = progress.summarize(step)
      writer.write_scalars(step, {**means, "steps_per_sec": rate}, split="train")
      logging.info("step %d/%d  %.2f steps/s (%.0f image pairs/s)  ETA %s  lr %.2e  G total "
                   "%.4f (g_adv %.4f f_adv %.4f cycle %.4f identity %.4f)  D_A %.4f  D_B %.4f",
                   step, total_steps, rate, rate * cg.batch_size, eta,
                   means["learning_rate"], means["total_g"], means["g_adv"], means["f_adv"],
                   means["cycle"], means["identity"], means["d_a"], means["d_b"])
    if step % cg.sample_every == 0 or is_last:
      write_samples(step)
    if step % cg.checkpoint_every == 0 or is_last:
      checkpointing.save(manager, step, state, config_dict)
  writer.flush()
  if step > start_step:
    logging.info("CycleGAN training done: %d steps in %s", step - start_step,
                 metric_writer.format_seconds(time.time() - progress.start_time))

  # Translation quality on the held-out patients, with the final state.
  run = functools.partial(translate_array, mesh=mesh, batch_size=eval_bs)
  translate_ab = functools.partial(run, functools.partial(apply, state.g))
  translate_ba = functools.partial(run, functools.partial(apply, state.f))
  quality = {}
  for split in ("val", "test"):
    ct_vols = data.select("ct", split, ("ct",))
    mr_vols = data.select("mr", split, mr_seqs)
    if not ct_vols or not mr_vols:
      logging.warning("no CT or MR %s volumes: no translation quality for that split", split)
      continue
    ct_split, _ = dataset_lib.stack_slices(ct_vols)
    mr_split, _ = dataset_lib.stack_slices(mr_vols)
    q = functools.partial(cyclegan_report.translation_quality, bins=int(cg.histogram_bins),
                          threshold=float(cg.body_threshold))
    quality[split] = {"ct_to_mr": q(translate_ab, translate_ba, ct_split, mr_split),
                      "mr_to_ct": q(translate_ba, translate_ab, mr_split, ct_split)}
    writer.write_scalars(step, {f"{d}_{k}": v for d, r in quality[split].items()
                                for k, v in r.items()}, split=split)
  writer.flush()
  results = dict(experiment="cyclegan", checkpoint=f"{manager.directory}/{step}",
                 step=int(step), data_root=data.root, mr_sequences=list(mr_seqs),
                 bins=int(cg.histogram_bins), body_threshold=float(cg.body_threshold),
                 quality=quality)
  if jax.process_index() == 0:
    cyclegan_report.write_report(results, workdir)
  logging.info("\n%s", cyclegan_report.quality_table(results))
  return results
