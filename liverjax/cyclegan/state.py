"""The CycleGAN's state, image pools and the jit-compiled sharded step.

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
The loop is `liverjax.cyclegan.train`; the losses `liverjax.cyclegan.losses`.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from liverjax import runtime
from liverjax import training
from liverjax.cyclegan import losses
from liverjax.models import cyclegan as cyclegan_models


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


GENERATORS = ("resnet", "unet")


def create_generator(cg_config, rngs: nnx.Rngs) -> nnx.Module:
  """The generator described by `config.cyclegan`: `generator` "resnet" (the paper's
  `ResnetGenerator`, `generator_blocks` residual blocks) or "unet" (`UNetGenerator`,
  `generator_depth` stages); `generator_features` channels in the first layer either way."""
  kind = cg_config.get("generator", "resnet")
  if kind == "unet":
    return cyclegan_models.UNetGenerator(
        features=cg_config.generator_features, depth=cg_config.get("generator_depth", 3),
        dtype=_dtype(cg_config.dtype), rngs=rngs)
  if kind != "resnet":
    raise ValueError(f"cyclegan.generator={kind!r}: expected one of {GENERATORS}")
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


def update_direction(cg_config) -> optax.GradientTransformation:
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
    mesh: the device mesh (`runtime.create_mesh()`).
    rng: PRNG key for the initialisation (turned into an rbg key, `init_key`).

  Returns:
    (graphs, state, (gen_tx, disc_tx)): the static `Graphs`, a `CycleGanState`
    of global replicated arrays, and the two optax transformations.
  """
  cg = config.cyclegan
  tx = update_direction(cg)
  arch = tuple((k, cg[k]) for k in ARCHITECTURE_KEYS)
  init = _compiled_init(arch, int(cg.pool_size), int(config.data.image_size), tx, mesh)
  return model_graphs(cg), init(rng), (tx, tx)


ARCHITECTURE_KEYS = ("generator", "generator_features", "generator_blocks", "generator_depth",
                     "discriminator_features", "discriminator_layers", "dtype")


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

  return jax.jit(init, out_shardings=runtime.replicated_sharding(mesh))


def abstract_cyclegan_state(config, mesh) -> Any:
  """The `CycleGanState` of `config` as `jax.ShapeDtypeStruct`s, replicated on `mesh`
  (what a checkpoint restores into; nothing is computed)."""
  return training.abstract_state(
      lambda: create_cyclegan_state(config, mesh, jax.random.key(0))[1], mesh=mesh)


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
                  lambda_identity: float, lambda_structure: float = 0.0, batch_sharding=None):
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
    gen_tx, disc_tx: the update directions, `update_direction` (static).
    lambda_cycle, lambda_identity, lambda_structure: loss weights (static;
      `losses.generator_losses`).
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
    total, terms, fakes = losses.generator_losses(
        g, f, d_a, d_b, batch_ct, batch_mr, lambda_cycle=lambda_cycle,
        lambda_identity=lambda_identity, lambda_structure=lambda_structure)
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
    d_a = losses.discriminator_loss(apply(disc_graph, disc_params["d_a"]), batch_ct, sample_a)
    d_b = losses.discriminator_loss(apply(disc_graph, disc_params["d_b"]), batch_mr, sample_b)
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
  cg = config.cyclegan
  weights = (float(cg.lambda_cycle), float(cg.lambda_identity),
             float(cg.get("lambda_structure", 0.0)))
  return _compiled_step(graphs, gen_tx, disc_tx, weights, mesh)


@functools.cache
def _compiled_step(graphs, gen_tx, disc_tx, weights, mesh):
  replicated = runtime.replicated_sharding(mesh)
  batch = runtime.batch_sharding(mesh)
  step = functools.partial(
      cyclegan_step, graphs=graphs, gen_tx=gen_tx, disc_tx=disc_tx,
      lambda_cycle=weights[0], lambda_identity=weights[1], lambda_structure=weights[2],
      batch_sharding=batch)
  return jax.jit(step, in_shardings=(replicated, batch, batch, replicated, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,),
                 compiler_options=runtime.compiler_options())


@functools.cache
def make_translate_fn(graphdef) -> Callable:
  """jit(params, images f32[B,H,W,1] in [0,1]) -> f32[B,H,W,1] in [0,1] (one generator).

  The output keeps the input's sharding (XLA propagates it from the batch).
  Cached per generator graph, so reloading generators does not recompile.
  """
  return jax.jit(lambda params, images: nnx.merge(graphdef, params)(images),
                 compiler_options=runtime.compiler_options())
