"""The CycleGAN's report: `cyclegan_metrics.json` and the Markdown table `cyclegan.md`."""
from __future__ import annotations

import json
import pathlib


def quality_table(results: dict) -> str:
  """A Markdown table of `cyclegan_metrics.json`'s "quality" entry."""
  lines = ["| split | direction | slices | W1 translated vs real target | "
           "W1 untranslated (domain gap) | histogram intersection | cycle L1 |",
           "|---|---|---|---|---|---|---|"]
  for split, directions in results["quality"].items():
    for name, q in directions.items():
      lines.append(f"| {split} | {name.replace('_', ' ')} | {q['slices']} | "
                   f"{q['wasserstein']:.4f} | {q['wasserstein_untranslated']:.4f} | "
                   f"{q['intersection']:.3f} | {q['cycle_l1']:.4f} |")
  return "\n".join(lines)


def task_table(task: dict) -> str:
  """A Markdown table of the task-based score (`quality.task_score` per split and direction:
  a U-Net of the target modality segments translated source scans)."""
  lines = ["Task score: a U-Net trained on the target modality segments the translated source "
           "scans; Dice against the source's own liver masks (mean over scans). Untranslated: "
           "the same U-Net on the source scans as they are.", "",
           "| split | direction | scans | Dice, translated | Dice, untranslated |",
           "|---|---|---|---|---|"]
  for split, directions in task.items():
    for name, t in directions.items():
      lines.append(f"| {split} | {name.replace('_', ' ')} | {t['volumes']} | "
                   f"{t['translated']:.3f} | {t['untranslated']:.3f} |")
  return "\n".join(lines)


def write_report(results: dict, workdir) -> None:
  """Writes `workdir/cyclegan_metrics.json` and `workdir/cyclegan.md`."""
  workdir = pathlib.Path(workdir)
  (workdir / "cyclegan_metrics.json").write_text(json.dumps(results, indent=1))
  lines = [
      "# CycleGAN CT <-> MR translation", "",
      f"Checkpoint: `{results['checkpoint']}` (step {results['step']}); data: "
      f"`{results['data_root']}`; MR sequences: {', '.join(results['mr_sequences'])}.", "",
      "CT -> MR is G (CT slices restyled as MR, compared with real MR slices); MR -> CT is F.",
      f"W1: 1-D Wasserstein (earth mover's) distance between {results['bins']}-bin intensity "
      "histograms on [0,1] of body pixels (pixels whose source intensity is > "
      f"{results['body_threshold']}), in intensity units: 0 is identical, lower is better. "
      "The untranslated column is the same distance for the source slices as they are "
      "(the domain gap the translation should close). Histogram intersection: 1 is "
      "identical. Cycle L1: mean |F(G(ct)) - ct| (CT -> MR row) and |G(F(mr)) - mr| "
      "(MR -> CT row) over all pixels.", "",
      quality_table(results), ""]
  if results.get("task_score"):
    lines += [task_table(results["task_score"]), ""]
  samples = sorted((workdir / "samples").glob("step_*.png"))
  if samples:
    lines += [f"![samples, liver outlines of the real slices]"
              f"({samples[-1].relative_to(workdir)})", ""]
  (workdir / "cyclegan.md").write_text("\n".join(lines))
