"""A picture of the augmentations on real training slices of an experiment.

  python -m liverjax.augment.preview --config=configs/ct_to_mri_domain_augmix.py --out=grid.png

One row per slice (the source-domain training slices with the most liver);
columns: the original, each AugMix op alone (at `augment.augmix_severity`),
the geometric step (rotation / translation / flip, mask moved with the image),
the domain transformation (to T1-like and T2-like from CT, CT-like from MR,
each MR slice read by its own sequence), two AugMix results, GIN, and the
global and per-organ location-scale. The liver mask is outlined in green on
every panel.
"""
from __future__ import annotations

import pathlib
import sys

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from liverjax import configs
from liverjax import runtime
from liverjax.augment import augmix as augmix_lib
from liverjax.augment import dg
from liverjax.augment import domain
from liverjax.augment import ops
from liverjax.data import dataset as dataset_lib

# Each augmentation compiled once per image shape and setting (eagerly, every op of
# every call would be dispatched, and every lax loop compiled, one by one).
_random_affine = jax.jit(ops.random_affine, static_argnums=(3, 4))
_random_spatial = jax.jit(ops.random_spatial,
                          static_argnames=("max_rotate", "scale_range", "max_translate"))
_domain_transform = jax.jit(domain.domain_transform, static_argnames=("source", "target"))
_augmix = jax.jit(augmix_lib.augmix, static_argnames=("width", "depth", "alpha", "severity",
                                                       "flip_prob"))
_gin = jax.jit(dg.gin)
_location_scale = jax.jit(dg.location_scale, static_argnames=("num_labels",))


def preview_panels(key, image, mask, augment_config, source: str,
                   organs=None) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """The panels of one row.

  Args:
    key: PRNG key.
    image: f32[H,W,1] in [0,1]; mask: f32[H,W,1] in {0,1}.
    augment_config: `config.augment`.
    source: the slice's domain-transform source, "ct" | "t1" | "t2"
      (`domain.source_of_sequence` of its volume's sequence).
    organs: int[H,W] organ labels for the local location-scale (None: the mask as label 1).

  Returns:
    A list of (title, image f32[H,W], mask f32[H,W]).
  """
  severity = int(augment_config.augmix_severity)
  keys = iter(jax.random.split(key, 32))
  panels = [("original", image, mask)]
  for name, fn in ops.RANDOM_PHOTOMETRIC_OPS:
    panels.append((name, jax.jit(fn, static_argnums=2)(next(keys), image, severity), mask))
  flip_prob = float(augment_config.get("flip_prob", 0.5))
  geo_img, geo_mask = _random_affine(next(keys), image, mask, severity, flip_prob)
  panels.append(("rotate/translate" + (f"/flip (p={flip_prob:g})" if flip_prob else ""),
                 geo_img, geo_mask))
  sp_img, sp_mask = _random_spatial(
      next(keys), image, mask, max_rotate=float(augment_config.spatial_rotate),
      scale_range=tuple(float(v) for v in augment_config.spatial_scale),
      max_translate=float(augment_config.spatial_translate))
  panels.append(("spatial (rotate/zoom/shift)", sp_img, sp_mask))
  targets = ("t1", "t2") if source == "ct" else ("ct",)
  for target in targets:
    out = _domain_transform(next(keys), image, source=source, target=target)
    panels.append((f"domain: {source.upper()}->{target.upper()}-like", out, mask))
  for i in range(2):
    depth = tuple(int(d) for d in augment_config.augmix_depth)
    a_img, a_mask = _augmix(
        next(keys), image, mask, width=int(augment_config.augmix_width), depth=depth,
        alpha=float(augment_config.augmix_alpha), severity=severity,
        flip_prob=float(augment_config.get("flip_prob", 0.5)))
    panels.append((f"AugMix #{i + 1}", a_img, a_mask))
  labels = (mask[..., 0] > 0.5).astype(np.int32) if organs is None else np.asarray(organs)
  panels.append(("GIN", _gin(next(keys), image[None])[0], mask))
  panels.append(("location-scale (global)", _location_scale(next(keys), image[None])[0], mask))
  panels.append(("location-scale (organs)",
                 _location_scale(next(keys), image[None], labels=labels[None],
                                   num_labels=int(augment_config.get("ls_num_labels", 16)))[0],
                 mask))
  return [(t, np.asarray(im)[..., 0], np.asarray(m)[..., 0]) for t, im, m in panels]


def write_preview(config, out_path, *, rows: int = 3, seed: int = 0) -> pathlib.Path:
  """Writes the preview grid of `config`'s source-domain training slices to `out_path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  data = dataset_lib.load_dataset(config.data)
  source = config.data.source
  volumes = data.select(source, "train", dataset_lib.domain_sequences(source, config.data))
  picks = []
  for v in volumes:  # the slice with the most liver of each volume
    z = int(np.argmax(v.mask.reshape(v.mask.shape[0], -1).sum(1)))
    picks.append((v, z))
  picks = picks[::max(1, len(picks) // rows)][:rows]
  key = jax.random.key(seed)
  grid = [preview_panels(jax.random.fold_in(key, i), v.image[z][..., None].astype(np.float32),
                         v.mask[z][..., None].astype(np.float32), config.augment,
                         domain.source_of_sequence(v.sequence),
                         None if v.organs is None else v.organs[z])
          for i, (v, z) in enumerate(picks)]
  n_cols = len(grid[0])
  fig, axes = plt.subplots(len(grid), n_cols, figsize=(1.6 * n_cols, 1.75 * len(grid)),
                           squeeze=False)
  for r, (row, (v, z)) in enumerate(zip(grid, picks)):
    for c, (title, img, msk) in enumerate(row):
      ax = axes[r, c]
      ax.imshow(img, cmap="gray", vmin=0, vmax=1)
      if msk.any():
        ax.contour(msk, levels=[0.5], colors="lime", linewidths=0.6)
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(title, fontsize=6)
      if c == 0:
        ax.set_ylabel(f"{v.sequence} p{v.patient_id} z{z}", fontsize=6)
  fig.tight_layout()
  out_path = pathlib.Path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out_path, dpi=120)
  plt.close(fig)
  return out_path


def main(argv):
  del argv
  fl = flags.FLAGS
  runtime.setup_compilation_cache(fl.config.data.cache_dir)
  path = write_preview(fl.config, fl.out, rows=fl.rows, seed=fl.seed)
  logging.info("wrote %s", path)
  print(f"wrote {path}")


if __name__ == "__main__":
  # Flags are defined only for the command line, so that importing this module
  # (the study does) does not clash with another program's --config.
  config_flags.DEFINE_config_file("config", str(configs.DIRECTORY / "default.py"),
                                  "Experiment config.")
  flags.DEFINE_string("out", "augment_preview.png", "Output PNG.")
  flags.DEFINE_integer("rows", 3, "Number of slices (rows).")
  flags.DEFINE_integer("seed", 0, "PRNG seed of the samples.")
  sys.argv = configs.resolve_argv(sys.argv)
  app.run(main)
