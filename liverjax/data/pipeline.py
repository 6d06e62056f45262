"""Input pipeline: shuffled global batches of slices laid out over the device mesh.

`train_batches` yields `{"image": f32[B,H,W,1], "mask": f32[B,H,W,1]}` as global
`jax.Array`s sharded along the mesh's `data` axis. Each process reads its own
shard of the slices (`jax.process_index()`), batches `B / process_count`
of them and the global batch is assembled with
`jax.make_array_from_process_local_data`.

Two interchangeable back ends produce the process-local batches:
  * tf.data (`from_tensor_slices -> shuffle -> repeat -> batch -> prefetch`),
    used when TensorFlow is importable and `data.use_tf` is set;
  * a plain numpy iterator (per-epoch permutations), for machines without
    TensorFlow (the GPU hosts).
Both are deterministic for a given seed; both resume at a step by skipping
the batches already consumed.
"""
from __future__ import annotations

from typing import Iterator

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding

from liverjax import configs
from liverjax import runtime


def process_shard(arrays: dict) -> dict:
  """This process's share of the slices (every process_count-th, from process_index)."""
  i, n = jax.process_index(), jax.process_count()
  return {name: a[i::n] for name, a in arrays.items()}


def local_batch_size(global_batch_size: int, mesh: Mesh,
                     batch_field: str = "train.batch_size") -> int:
  """The per-process batch; checks the global batch divides over devices and processes.

  Raises:
    configs.ConfigError: naming `batch_field` when it does not divide.
  """
  if global_batch_size % mesh.size:
    raise configs.ConfigError(batch_field, f"must be divisible by the number of devices "
                              f"({mesh.size})", global_batch_size)
  return global_batch_size // jax.process_count()


def numpy_batches(arrays: dict, batch_size: int, *, seed: int,
                  start_step: int = 0) -> Iterator[dict]:
  """Endless shuffled batches from in-memory arrays, without TensorFlow.

  Args:
    arrays: name -> array with the slices along axis 0 (all the same length),
      e.g. {"image": f32[N,H,W,1], "mask": f32[N,H,W,1]}.

  Epoch e uses the permutation drawn from `(seed, e)`; batches never straddle
  epochs (the remainder of an epoch is dropped, as with drop_remainder). The
  batch at step s is a pure function of (seed, s), so resuming is exact.
  """
  n = _check_lengths(arrays, batch_size)
  per_epoch = n // batch_size
  step = start_step
  while True:
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    idx = np.sort(perm[k * batch_size:(k + 1) * batch_size])
    yield {name: a[idx] for name, a in arrays.items()}
    step += 1


def tf_batches(arrays: dict, batch_size: int, *, seed: int, start_step: int = 0,
               shuffle_buffer: int = 2048) -> Iterator[dict]:
  """Endless shuffled batches through tf.data (the same contract as numpy_batches)."""
  tf = runtime.tensorflow_or_none()
  n = _check_lengths(arrays, batch_size)
  ds = tf.data.Dataset.from_tensor_slices(arrays)
  ds = ds.shuffle(min(shuffle_buffer, n), seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().batch(batch_size, drop_remainder=True)
  if start_step:
    ds = ds.skip(start_step)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()


def _check_lengths(arrays: dict, batch_size: int) -> int:
  lengths = {name: len(a) for name, a in arrays.items()}
  n = min(lengths.values())
  if len(set(lengths.values())) != 1:
    raise ValueError(f"arrays of different lengths: {lengths}")
  if n < batch_size:
    raise ValueError(f"only {n} training slices for a per-process batch of {batch_size}")
  return n


def to_global(local_batch: dict, sharding: NamedSharding) -> dict:
  """Assembles process-local numpy batches into global jax.Arrays."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def train_batches(images: np.ndarray, masks: np.ndarray, *, global_batch_size: int,
                  mesh: Mesh, seed: int, start_step: int = 0, use_tf: bool = True,
                  shuffle_buffer: int = 2048, extras: dict | None = None,
                  batch_field: str = "train.batch_size") -> Iterator[dict]:
  """Global training batches sharded over `mesh`.

  Args:
    images: f32[N,H,W,1] in [0,1], all training slices (every process holds them).
    masks: f32[N,H,W,1] in {0,1}.
    global_batch_size: B, divisible by the number of devices.
    mesh: the device mesh (`runtime.create_mesh()`).
    seed: shuffling seed.
    start_step: batches already consumed (resume).
    use_tf: tf.data when TensorFlow is importable, else numpy.
    extras: more per-slice arrays batched alongside (name -> [N,...]); the
      U-Net run passes {"is_t2": f32[N], "organs": int32[N,H,W]} (organ labels
      numbered by `nifti.ORGANS`, see `dataset.stack_organs`), plus
      "organs_known": f32[N] for multi-organ training.
    batch_field: the config field of `global_batch_size`, for the errors.

  Yields:
    {"image": f32[B,H,W,1], "mask": f32[B,H,W,1], **extras} global jax.Arrays.

  Raises:
    configs.ConfigError: naming `batch_field`, when the batch does not divide
      over the devices or is larger than this process's training slices.
  """
  local_bs = local_batch_size(global_batch_size, mesh, batch_field)
  arrays = process_shard({"image": images, "mask": masks, **(extras or {})})
  n = len(arrays["image"])
  if n < local_bs:
    raise configs.ConfigError(batch_field, f"larger than the training set: {n} slices on "
                              f"this process for a per-process batch of {local_bs}",
                              global_batch_size)
  sharding = runtime.batch_sharding(mesh)
  if use_tf and runtime.tensorflow_or_none() is not None:
    local = tf_batches(arrays, local_bs, seed=seed, start_step=start_step,
                       shuffle_buffer=shuffle_buffer)
    logging.info("input pipeline: tf.data, %d slices on this process", n)
  else:
    local = numpy_batches(arrays, local_bs, seed=seed, start_step=start_step)
    logging.info("input pipeline: numpy, %d slices on this process", n)
  for batch in local:
    yield to_global(batch, sharding)


def eval_batches(images: np.ndarray, batch_size: int, mesh: Mesh) -> Iterator[tuple]:
  """Fixed-size global batches over a volume's slices, in order, padded.

  Every process holds all slices; each contributes its contiguous part of
  every global batch. Yields (global f32[B,H,W,1] array, number of real
  slices in it). `batch_size` is rounded up to a multiple of the device count.
  """
  batch_size = -(-batch_size // mesh.size) * mesh.size
  n = images.shape[0]
  sharding = runtime.batch_sharding(mesh)
  per_process = batch_size // jax.process_count()
  pi = jax.process_index()
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    valid = chunk.shape[0]
    if valid < batch_size:
      pad = np.zeros((batch_size - valid,) + chunk.shape[1:], chunk.dtype)
      chunk = np.concatenate([chunk, pad])
    local = chunk[pi * per_process:(pi + 1) * per_process]
    yield jax.make_array_from_process_local_data(sharding, local), valid
