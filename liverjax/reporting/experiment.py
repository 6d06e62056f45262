"""Tables and figures of an experiment: metrics.json, metrics.md, PNG figures."""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from liverjax import metric_writer
from liverjax.segmentation import losses

GROUP_NAMES = {"ct": "CT", "mr": "MR (all)", "mr/t1_in": "MR T1 in-phase",
               "mr/t1_out": "MR T1 out-phase", "mr/t2": "MR T2-SPIR"}
COLUMNS = (("dice", "Dice", 3), ("bce", "BCE", 3), ("dice_loss", "Dice loss", 3),
           ("jaccard_loss", "Jaccard loss", 3), ("total", "Total loss", 3),
           ("ravd", "RAVD %", 1), ("assd", "ASSD mm", 2), ("mssd", "MSSD mm", 1))
# The raw prediction's figures (before eval.postprocess), next to the post-processed ones.
RAW_COLUMNS = (("dice_raw", "Dice", 3), ("ravd_raw", "RAVD %", 1), ("assd_raw", "ASSD mm", 2),
               ("mssd_raw", "MSSD mm", 1))
# A run's results, written here and read back by `reporting.compare`.
METRICS_FILE = "metrics.json"


def format_stat(stat: dict | None, digits: int) -> str:
  """"mean ± std" from a `metrics.summarize` dict; "n/a" when absent or empty."""
  if not stat or stat.get("n", 0) == 0 or stat.get("mean") is None:
    return "n/a"
  mean, std = stat["mean"], stat.get("std", 0.0)
  if not math.isfinite(mean):
    return str(mean)
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_table(results: dict, columns=COLUMNS) -> str:
  """A Markdown table: one row per domain / MR sequence, mean ± std over volumes.

  Args:
    results: the results dict of `evaluate.evaluate_experiment`.
    columns: (key, header, digits) of the figures shown (default `COLUMNS`;
      `RAW_COLUMNS` for the raw prediction's CHAOS figures).
  """
  head = "| test data | patients | volumes | slices | " + " | ".join(
      c[1] for c in columns) + " |"
  lines = [head, "|" + "---|" * (4 + len(columns))]
  for group, s in results["summary"].items():
    cells = [GROUP_NAMES.get(group, group), str(s["patients"]), str(s["volumes"]),
             str(s["slices"])]
    cells += [format_stat(s.get(key), digits) for key, _, digits in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def has_raw(results: dict) -> bool:
  """Whether the results hold raw-prediction figures (post-processing was on)."""
  return any("dice_raw" in s for s in results["summary"].values())


def write_experiment_report(results: dict, examples: list, workdir) -> None:
  """Writes metrics.json, metrics.md, predictions.png and curves.png into workdir."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / METRICS_FILE).write_text(json.dumps(results, indent=1, default=_json_default))
  figures = []
  if examples:
    plot_predictions(examples, workdir / "predictions.png")
    figures.append("predictions.png")
  if plot_curves(metric_writer.read_scalars(workdir), workdir / "curves.png"):
    figures.append("curves.png")
  md = [f"# {results['experiment']}", "",
        f"Trained on **{results['source'].upper()}**, evaluated per 3D volume on the test "
        f"patients of {', '.join(t.upper() for t in results['targets'])}. "
        f"Normalisation: `{results['normalization']}`. Checkpoint: `{results['checkpoint']}` "
        f"(step {results['step']}). Data: `{results['data_root']}`. Post-processing: "
        f"`{results.get('postprocess', 'none')}`; test-time intensity: "
        f"`{results.get('intensity', 'none')}`. liverjax "
        f"{results.get('liverjax_version', '(version not recorded)')}.", "",
        "Mean ± std over test volumes (Dice: hard Dice score of the 3D volume; losses "
        "from the summed soft statistics of the volume, before post-processing; "
        "RAVD/ASSD/MSSD: CHAOS metrics).", "",
        summary_table(results), ""]
  if has_raw(results):
    md += ["The raw prediction (before post-processing), CHAOS metrics:", "",
           summary_table(results, RAW_COLUMNS), ""]
  md += [f"![{f}]({f})" for f in figures]
  (workdir / "metrics.md").write_text("\n".join(md) + "\n")


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  raise TypeError(f"not JSON serialisable: {type(x)}")


def pyplot():
  """matplotlib.pyplot on the Agg backend (imported here: matplotlib is optional)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _dice_axes(ax, xlabel: str, ylabel: str = "Dice") -> None:
  """Labels, the [0, 1] range, legend and grid of a Dice-over-steps panel."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_ylim(0, 1)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)


def save_figure(plt, fig, path) -> None:
  """Saves `fig` to `path` (PNG, 110 dpi) with a tight layout and closes it."""
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_predictions(examples: list, path) -> None:
  """A grid: one row per example, columns image / true mask / predicted mask.

  Each example: dict(image f32[S,S] in [0,1], mask {0,1}[S,S], prediction
  {0,1}[S,S], title str). Masks are drawn over the image (true green,
  predicted red) with the slice's Dice in the title.
  """
  plt = pyplot()
  n = len(examples)
  fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.6 * n), squeeze=False)
  for row, ex in zip(axes, examples):
    img, m, p = ex["image"], ex["mask"].astype(bool), ex["prediction"].astype(bool)
    inter = np.logical_and(m, p).sum()
    dice = 2 * inter / max(m.sum() + p.sum(), 1)
    row[0].imshow(img, cmap="gray", vmin=0, vmax=1)
    row[0].set_title(ex["title"], fontsize=7)
    for ax, mk, color, label in ((row[1], m, (0, 1, 0), "true mask"),
                                 (row[2], p, (1, 0, 0), f"prediction (Dice {dice:.2f})")):
      ax.imshow(img, cmap="gray", vmin=0, vmax=1)
      overlay = np.zeros(mk.shape + (4,))
      overlay[mk] = color + (0.45,)
      ax.imshow(overlay)
      ax.set_title(label, fontsize=7)
    for ax in row:
      ax.axis("off")
  save_figure(plt, fig, path)


def pseudo_label_panel(image: np.ndarray, mask: np.ndarray, probabilities: np.ndarray,
                       title: str, spacing=(1.0, 1.0, 1.0)) -> dict:
  """The two views of one pseudo-labelled scan to draw (`plot_pseudo_labels`): the axial slice
  where the teacher's liver (probability > 0.5) is largest, and the coronal section through the
  row (anterior-posterior position) where it is largest, which shows the slices the teacher
  stops short of (CT-trained teachers miss the lower end of T2 livers).

  Args:
    image: f32[Z,S,S] in [0,1], the scan as the student sees it, in the display orientation
      (`liverjax.data.orientation`: slices head -> feet).
    mask: u8[Z,S,S] in {0, 1, losses.IGNORE}, its pseudo-label.
    probabilities: f32[Z,S,S] in [0,1], the teacher's liver probability.
    title: the panel's title.
    spacing: (z, y, x) mm of a voxel (the coronal view's aspect ratio).

  Returns:
    dict(image f32[S,S], mask u8[S,S], liver bool[S,S] (the teacher's liver): the axial
    slice; coronal: dict(image f32[Z,S], mask u8[Z,S], liver bool[Z,S]), head at the top;
    aspect: the coronal view's height / width of a pixel; title). Without a predicted liver
    the middle slice and the middle row.
  """
  image, mask = np.asarray(image), np.asarray(mask)
  liver = np.asarray(probabilities) > 0.5
  z = int(np.argmax(liver.sum(axis=(1, 2)))) if liver.any() else image.shape[0] // 2
  y = int(np.argmax(liver.sum(axis=(0, 2)))) if liver.any() else image.shape[1] // 2
  coronal = dict(image=image[:, y, :], mask=mask[:, y, :], liver=liver[:, y, :])
  return dict(image=image[z], mask=mask[z], liver=liver[z], coronal=coronal,
              aspect=float(spacing[0]) / float(spacing[2]), title=title)


def plot_pseudo_labels(panels: list[dict], path, columns: int = 5) -> None:
  """Two views per target scan (`pseudo_label_panel`), the axial slice above the coronal
  section: labelled liver green, pixels left out of the student's loss yellow, labelled
  background as it is, the teacher's liver outlined in red (all that is left of a dropped
  scan, whose mask is all left out and not drawn)."""
  plt = pyplot()
  groups = max(1, math.ceil(len(panels) / columns))
  cols = min(columns, max(len(panels), 1))
  fig, axes = plt.subplots(2 * groups, cols, figsize=(2.6 * cols, 4.6 * groups), squeeze=False,
                           gridspec_kw=dict(height_ratios=[1.0, 0.7] * groups))
  for ax in axes.flat:
    ax.axis("off")
  for i, panel in enumerate(panels):
    group, col = divmod(i, columns)
    views = ((axes[2 * group, col], panel, 1.0, panel["title"]),
             (axes[2 * group + 1, col], panel["coronal"], panel["aspect"],
              "coronal, head at the top"))
    for ax, view, aspect, title in views:
      ax.imshow(view["image"], cmap="gray", vmin=0, vmax=1, aspect=aspect)
      mask = view["mask"]
      overlay = np.zeros(mask.shape + (4,))
      if (mask != losses.IGNORE).any():
        overlay[mask == 1] = (0, 1, 0, 0.45)
        overlay[mask == losses.IGNORE] = (1, 1, 0, 0.4)
      ax.imshow(overlay, aspect=aspect)
      if view["liver"].any():
        ax.contour(view["liver"].astype(float), levels=[0.5], colors="red", linewidths=0.8)
      ax.set_title(title, fontsize=6)
  fig.suptitle("pseudo-labels: liver (green), left out (yellow), teacher's liver (red)",
               fontsize=8)
  save_figure(plt, fig, path)


def plot_curves(records: list[dict], path) -> bool:
  """Training curves from metrics.jsonl records: total loss and each term, and
  validation Dice. Returns False (and writes nothing) without records."""
  train = [r for r in records if r.get("split") == "train"]
  val = [r for r in records if r.get("split") == "val" and "val_dice" in r]
  if not train:
    return False
  plt = pyplot()
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
  steps = [r["step"] for r in train]
  for key in ("total", "dice_loss", "bce", "jaccard_loss"):
    if key in train[0]:
      ax0.plot(steps, [r[key] for r in train], label=key)
  ax0.set_xlabel("step")
  ax0.set_ylabel("training loss")
  ax0.set_yscale("log")
  ax0.legend(fontsize=8)
  ax0.grid(alpha=0.3)
  if "dice" in train[0]:
    ax1.plot(steps, [r["dice"] for r in train], label="train Dice (batch)")
  if val:
    ax1.plot([r["step"] for r in val], [r["val_dice"] for r in val], "o-",
             label="validation Dice (per volume)")
  _dice_axes(ax1, "step")
  save_figure(plt, fig, path)
  return True


def _curve_groups(rows: list[dict]) -> list[str]:
  """The test groups ("ct", "mr", "mr/t2", ...) of `evaluate.checkpoint_curve` rows."""
  return [k[:-len("_dice")] for k in rows[0] if k.endswith("_dice") and k != "val_dice"]


def checkpoint_curve_table(rows: list[dict]) -> str:
  """Markdown: one line per checkpoint (`evaluate.checkpoint_curve` rows), source validation
  Dice and the mean ± std Dice of each test group."""
  groups = _curve_groups(rows)
  head = "| step | source val Dice | " + " | ".join(
      f"{GROUP_NAMES.get(g, g)} Dice" for g in groups) + " |"
  lines = [head, "|" + "---|" * (2 + len(groups))]
  for r in rows:
    val = "-" if r["val_dice"] is None else f"{r['val_dice']:.3f}"
    cells = [f"{r[g + '_dice']:.3f} ± {r[g + '_dice_std']:.3f}" for g in groups]
    lines.append(f"| {r['step']} | {val} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_checkpoint_curve(rows: list[dict], source: str, workdir) -> None:
  """Writes checkpoint_curve.json, checkpoint_curve.md and checkpoint_curve.png into
  `workdir`: the test Dice of each group and the source validation Dice per checkpoint."""
  workdir = pathlib.Path(workdir)
  (workdir / "checkpoint_curve.json").write_text(
      json.dumps(rows, indent=1, default=_json_default))
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 3.6))
  steps = [r["step"] for r in rows]
  val = [(r["step"], r["val_dice"]) for r in rows if r["val_dice"] is not None]
  if val:
    ax.plot(*zip(*val), "k--o", label=f"{source.upper()} validation (source)")
  for group in _curve_groups(rows):
    if "/" not in group:  # the domains; their sequences are in the table
      ax.plot(steps, [r[f"{group}_dice"] for r in rows], "o-",
              label=f"{GROUP_NAMES.get(group, group)} test")
  _dice_axes(ax, "checkpoint step", "mean Dice per volume")
  save_figure(plt, fig, workdir / "checkpoint_curve.png")
  (workdir / "checkpoint_curve.md").write_text(
      f"# Every kept checkpoint, trained on {source.upper()}\n\n"
      "Test patients per group; the run itself evaluates the checkpoint with the best source "
      "validation Dice.\n\n" + checkpoint_curve_table(rows)
      + "\n\n![checkpoint_curve.png](checkpoint_curve.png)\n")
