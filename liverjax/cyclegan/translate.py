"""Translation of slices by a trained CycleGAN: reloading its generators, batch translation.

`translate_slices` is a data step: the CycleGAN-based U-Net trains on its
source slices restyled as the other modality (`config.translate`); the U-Net
trainer does not know about it, `liverjax.experiment` arranges it.
"""
from __future__ import annotations

import functools
import time
from typing import Callable

import ml_collections
import numpy as np
from absl import logging

from liverjax import checkpointing
from liverjax import runtime
from liverjax.cyclegan import state as state_lib
from liverjax.data import pipeline


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
  for batch, valid in pipeline.eval_batches(np.asarray(images, np.float32),
                                                  batch_size, mesh):
    out.append(np.asarray(runtime.gather(translate(batch)))[:valid])
  if not out:
    return np.zeros_like(images, np.float32)
  return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)


def _saved_config(config, saved: dict | None) -> ml_collections.ConfigDict:
  """The CycleGAN and image-size settings a checkpoint was made with (else `config`'s)."""
  out = ml_collections.ConfigDict()
  out.cyclegan = ml_collections.ConfigDict(config.cyclegan.to_dict())
  out.data = ml_collections.ConfigDict({"image_size": config.data.image_size})
  if saved:
    if saved.get("cyclegan") and "generator" not in saved["cyclegan"]:
      out.cyclegan.generator = "resnet"  # made before the U-Net generator existed
    for k, v in (saved.get("cyclegan") or {}).items():
      if k in out.cyclegan and v is not None:
        current = out.cyclegan[k]
        out.cyclegan[k] = (tuple(v) if isinstance(v, list) else
                           v if current is None else type(current)(v))
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
  directory, step = checkpointing.checkpoint_location(checkpoint_workdir_or_path)
  manager = checkpointing.open_read_only(directory, best_metric=None)
  if step is None:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no CycleGAN checkpoint in {directory}")
  ckpt_config = _saved_config(config, checkpointing.restore_config(manager, step))
  for k in ("generator", "generator_features", "generator_blocks", "generator_depth", "dtype"):
    if ckpt_config.cyclegan[k] != config.cyclegan[k]:
      logging.info("CycleGAN checkpoint %s/%d has cyclegan.%s=%r (config: %r); using the "
                   "checkpoint's", directory, step, k, ckpt_config.cyclegan[k],
                   config.cyclegan[k])
  if mesh is None:
    mesh = runtime.create_mesh()
  graphs = state_lib.model_graphs(ckpt_config.cyclegan)
  state, step = checkpointing.restore(manager, state_lib.abstract_cyclegan_state(ckpt_config, mesh), step)
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
  apply = state_lib.make_translate_fn(graphs.generator)
  g, f = state.g, state.f
  return functools.partial(apply, g), functools.partial(apply, f)


def translate_slices(images: np.ndarray, config, *, source: str | None = None
                     ) -> np.ndarray:
  """The data step of the CycleGAN-based U-Net: restyles its source-domain training slices.

  Loads the generators of the trained CycleGAN at `config.translate.cyclegan_workdir`,
  translates every slice to the other domain's style (G: CT -> MR for source
  "ct", F: MR -> CT for "mr") on the devices in batches of
  `config.translate.batch_size`, and, when `config.translate.mix` > 0, keeps
  that fraction of slices (a fixed random subset drawn from `config.seed`) in
  their original style. Masks are untouched: the translation keeps the anatomy.
  `liverjax.experiment` arranges this step when `translate.cyclegan_workdir` is set.

  Args:
    images: f32[N,H,W,1] in [0,1], the source-domain training slices.
    config: the U-Net experiment config (`translate`, `cyclegan`, `data`, `seed`).
    source: the slices' domain ("ct" | "mr"); default `config.data.source`.

  Returns:
    f32[N,H,W,1] in [0,1].
  """
  workdir = config.translate.cyclegan_workdir
  if not workdir:
    raise ValueError("translate_slices: config.translate.cyclegan_workdir is not set")
  source = source or config.data.source
  if source not in ("ct", "mr"):
    raise ValueError(f"translate_slices: unknown source domain {source!r}")
  mesh = runtime.create_mesh()
  ct_to_mr, mr_to_ct = load_generators(workdir, config, mesh)
  translate = ct_to_mr if source == "ct" else mr_to_ct
  start = time.time()
  out = translate_array(translate, images, mesh=mesh, batch_size=config.translate.batch_size)
  mix = float(config.translate.mix)
  kept = 0
  if mix > 0:
    keep = np.random.default_rng([int(config.seed), 7919]).random(len(images)) < mix
    out[keep] = images[keep]
    kept = int(keep.sum())
  logging.info("CycleGAN: translated %d %s training slices to %s style in %.1fs "
               "(%d kept original, translate.mix=%.2f)", len(images) - kept, source,
               "mr" if source == "ct" else "ct", time.time() - start, kept, mix)
  return out
