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


# ---------------------------------------------------------------------- samples


def pick_sample_slices(volumes, n: int) -> np.ndarray:
  """n slices spread over the volumes, each the slice with the most liver: f32[n,H,W,1]."""
  if not volumes or n <= 0:
    return np.zeros((0, 1, 1, 1), np.float32)
  picks = []
  for i in range(n):
    v = volumes[i % len(volumes)]
    area = v.mask.reshape(v.mask.shape[0], -1).sum(1, dtype=np.int64)
    order = np.argsort(-area, kind="stable")
    picks.append(v.image[order[(i // len(volumes)) % len(order)]])
  return np.stack(picks)[..., None].astype(np.float32)


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


def write_sample_png(grid: np.ndarray, path, step: int) -> None:
  """Draws `sample_grid`'s f32[6,n,H,W] as a labelled PNG at `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows, cols = grid.shape[:2]
  fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols + 0.6, 1.8 * rows), squeeze=False)
  for r in range(rows):
    for c in range(cols):
      ax = axes[r, c]
      ax.imshow(grid[r, c], cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(SAMPLE_ROWS[r], fontsize=8)
  fig.suptitle(f"CycleGAN samples, step {step}", fontsize=9)
  fig.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def grid_image(grid: np.ndarray) -> np.ndarray:
  """`sample_grid`'s f32[6,n,H,W] tiled into one f32[1, 6H, nW, 1] image (TensorBoard)."""
  rows, cols, h, w = grid.shape
  return grid.transpose(0, 2, 1, 3).reshape(1, rows * h, cols * w, 1)
