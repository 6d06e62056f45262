"""Translation quality figures and sample grids of a CycleGAN (numpy, matplotlib).

Everything here works on numpy slices f32[N,H,W,1] in [0,1] and on numpy
translators (`translate.translate_array` bound to a generator), so it has no
JAX state of its own. The report around the figures is `liverjax.reporting.cyclegan`.
"""
from __future__ import annotations

import functools
import pathlib
from typing import Callable

import numpy as np

from liverjax import progress

SAMPLE_ROWS = ("real CT", "G(CT)", "F(G(CT))", "real MR", "F(MR)", "G(F(MR))")


# ---------------------------------------------------------------------- quality


def body_histogram(images: np.ndarray, support: np.ndarray, *, bins: int = 64,
                   threshold: float = 0.05) -> np.ndarray:
  """Normalised intensity histogram of body pixels.

  Args:
    images: f32[N,H,W,1] in [0,1], the intensities counted.
    support: f32[N,H,W,1] in [0,1]; pixels with support > threshold are body.
    bins: equal bins on [0,1].

  Returns:
    f64[bins] summing to 1 (all zeros when there is no body pixel).
  """
  values = np.asarray(images)[np.asarray(support) > threshold]
  hist, _ = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
  total = hist.sum()
  return hist / total if total else hist.astype(np.float64)


def wasserstein_1d(p: np.ndarray, q: np.ndarray) -> float:
  """Earth mover's distance between two normalised histograms on equal bins of [0,1].

  W1 = sum |CDF_p - CDF_q| * bin width, in intensity units (0 = identical
  distributions, at most 1).
  """
  return float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() / len(p))


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
  """sum min(p, q) of two normalised histograms (1 = identical, 0 = disjoint)."""
  return float(np.minimum(p, q).sum())


def translation_quality(translate_ab: Callable, translate_ba: Callable, real_a: np.ndarray,
                        real_b: np.ndarray, *, bins: int = 64, threshold: float = 0.05) -> dict:
  """Translation quality of one direction A -> B (with its cycle through B -> A).

  Args:
    translate_ab, translate_ba: f32[N,H,W,1] -> f32[N,H,W,1] numpy translators
      (e.g. `translate.translate_array` bound to a generator).
    real_a: f32[N,H,W,1] source slices; real_b: f32[M,H,W,1] real target slices.

  Returns:
    dict: wasserstein (W1 between the body-pixel histograms of translate_ab(a)
    and of real b; body = pixels of the translated slice whose source pixel
    is > threshold), wasserstein_untranslated (the same for untranslated a,
    the domain gap before translation), intersection (histogram intersection
    of translated vs real), cycle_l1 (mean |translate_ba(translate_ab(a)) - a|
    over all pixels), slices (N), target_slices (M).
  """
  fake_b = translate_ab(real_a)
  rec_a = translate_ba(fake_b)
  hist = functools.partial(body_histogram, bins=bins, threshold=threshold)
  h_fake, h_real, h_src = hist(fake_b, real_a), hist(real_b, real_b), hist(real_a, real_a)
  return dict(wasserstein=wasserstein_1d(h_fake, h_real),
              wasserstein_untranslated=wasserstein_1d(h_src, h_real),
              intersection=histogram_intersection(h_fake, h_real),
              cycle_l1=float(np.mean(np.abs(rec_a - real_a))),
              slices=int(len(real_a)), target_slices=int(len(real_b)))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
  a, b = np.asarray(a) > 0, np.asarray(b) > 0
  total = int(a.sum()) + int(b.sum())
  return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def task_score(translate: Callable, segment: Callable, volumes) -> dict:
  """Whether the liver survives translation: a U-Net trained on the target modality segments
  the translated source volumes, scored against the source's own liver masks.

  Args:
    translate: f32[N,H,W,1] -> f32[N,H,W,1] numpy translator (source -> target).
    segment: f32[Z,H,W] target-modality image -> u8[Z,H,W] liver prediction
      (`segmentation.evaluate.load_segmenter`).
    volumes: labelled source `PreparedVolume`s.

  Returns:
    {"translated": mean Dice over volumes, "untranslated": the same U-Net on the source
    volumes as they are (the gap the translation should close), "volumes": count,
    "per_volume": {patient_id: [translated, untranslated]}}.
  """
  rows = {}
  tracker = progress.Progress(len(volumes), "scored", "translated volumes")
  for v in volumes:
    moved = translate(v.image[..., None].astype(np.float32))[..., 0]
    rows[v.patient_id] = [_dice(segment(moved), v.mask), _dice(segment(v.image), v.mask)]
    tracker.done(progress.volume_label(v))
  values = np.asarray(list(rows.values()), np.float64).reshape(-1, 2)
  return dict(translated=float(values[:, 0].mean()) if len(values) else float("nan"),
              untranslated=float(values[:, 1].mean()) if len(values) else float("nan"),
              volumes=len(rows), per_volume=rows)


# ---------------------------------------------------------------------- samples


def pick_sample_slices(volumes, n: int) -> tuple[np.ndarray, np.ndarray]:
  """n slices spread over the volumes, each the slice with the most liver.

  Returns:
    (images f32[n,H,W,1], liver masks u8[n,H,W]); empty arrays without volumes.
  """
  if not volumes or n <= 0:
    return np.zeros((0, 1, 1, 1), np.float32), np.zeros((0, 1, 1), np.uint8)
  images, masks = [], []
  for i in range(n):
    v = volumes[i % len(volumes)]
    area = v.mask.reshape(v.mask.shape[0], -1).sum(1, dtype=np.int64)
    order = np.argsort(-area, kind="stable")
    z = order[(i // len(volumes)) % len(order)]
    images.append(v.image[z])
    masks.append(v.mask[z])
  return (np.stack(images)[..., None].astype(np.float32),
          (np.stack(masks) > 0).astype(np.uint8))


def sample_grid(translate_ab: Callable, translate_ba: Callable, ct: np.ndarray,
                mr: np.ndarray) -> np.ndarray:
  """The sample rows: real CT, G(CT), F(G(CT)), real MR, F(MR), G(F(MR)).

  Args:
    translate_ab, translate_ba: numpy translators CT -> MR (G) and MR -> CT (F).
    ct, mr: f32[n,H,W,1] in [0,1] (the same n).

  Returns:
    f32[6,n,H,W] in [0,1], rows in the order of `SAMPLE_ROWS`.
  """
  g_ct = translate_ab(ct)
  f_mr = translate_ba(mr)
  rows = [ct, g_ct, translate_ba(g_ct), mr, f_mr, translate_ab(f_mr)]
  return np.stack([r[..., 0] for r in rows])


def write_sample_png(grid: np.ndarray, path, step: int, ct_masks: np.ndarray | None = None,
                     mr_masks: np.ndarray | None = None) -> None:
  """Draws `sample_grid`'s f32[6,n,H,W] as a labelled PNG at `path`.

  With `ct_masks` / `mr_masks` (u8[n,H,W], the liver of the real CT / MR slices), the liver's
  outline is drawn in green on the three rows of its slice (real, translated, back): a
  translation that keeps the anatomy keeps the liver inside it.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows, cols = grid.shape[:2]
  outlines = [ct_masks] * 3 + [mr_masks] * 3
  fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols + 0.6, 1.8 * rows), squeeze=False)
  for r in range(rows):
    for c in range(cols):
      ax = axes[r, c]
      ax.imshow(grid[r, c], cmap="gray", vmin=0, vmax=1)
      mask = outlines[r][c] if outlines[r] is not None and c < len(outlines[r]) else None
      if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.7)
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(SAMPLE_ROWS[r], fontsize=8)
  fig.suptitle(f"CycleGAN samples, step {step}"
               + (" (liver outline of the real slice in green)"
                  if ct_masks is not None or mr_masks is not None else ""), fontsize=9)
  fig.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def grid_image(grid: np.ndarray) -> np.ndarray:
  """`sample_grid`'s f32[6,n,H,W] tiled into one f32[1, 6H, nW, 1] image (TensorBoard)."""
  rows, cols, h, w = grid.shape
  return grid.transpose(0, 2, 1, 3).reshape(1, rows * h, cols * w, 1)
