"""Report: the Markdown table and the figures."""
import json

import numpy as np

from liverjax.reporting import experiment as report
from liverjax.segmentation import losses


def _results():
  stat = lambda m: {"mean": m, "std": 0.01, "n": 2, "n_nan": 0}
  group = lambda d: {"volumes": 2, "patients": 2, "slices": 40, "dice": stat(d), "bce": stat(0.1),
                     "dice_loss": stat(1 - d), "jaccard_loss": stat(0.3), "total": stat(0.9),
                     "ravd": stat(5.0), "assd": stat(2.0), "mssd": stat(20.0)}
  return {"experiment": "ct_to_mr", "source": "ct", "targets": ["ct", "mr"],
          "normalization": "window", "checkpoint": "x/checkpoints/3", "step": 3,
          "data_root": "/data", "summary": {"ct": group(0.9), "mr": group(0.3),
                                            "mr/t2": group(0.2)}, "volumes": []}


def test_summary_table_has_a_row_per_group():
  table = report.summary_table(_results())
  lines = table.splitlines()
  assert len(lines) == 2 + 3
  assert lines[2].startswith("| CT | 2 | 2 | 40 | 0.900 ± 0.010 |")
  assert "MR T2-SPIR" in lines[4]
  assert report.format_stat(None, 3) == "n/a"
  assert report.format_stat({"mean": float("inf"), "std": 0, "n": 1}, 2) == "inf"


def test_write_experiment_report_writes_tables_and_figures(tmp_path):
  (tmp_path / "metrics.jsonl").write_text("".join(
      json.dumps({"step": s, "split": "train", "total": 2.0 / s, "dice_loss": 0.5 / s,
                  "bce": 0.7 / s, "jaccard_loss": 0.8 / s, "dice": 1 - 1 / s}) + "\n"
      for s in range(1, 6)) + json.dumps({"step": 5, "split": "val", "val_dice": 0.8}) + "\n")
  img = np.random.default_rng(0).random((16, 16)).astype(np.float32)
  mask = (img > 0.5).astype(np.uint8)
  examples = [dict(image=img, mask=mask, prediction=mask, title="CT ct patient 1 slice 0")]
  report.write_experiment_report(_results(), examples, tmp_path)
  md = (tmp_path / "metrics.md").read_text()
  assert "| MR (all) |" in md and "![predictions.png](predictions.png)" in md
  assert json.loads((tmp_path / "metrics.json").read_text())["summary"]["ct"]["dice"]["mean"] == 0.9
  for name in ("predictions.png", "curves.png"):
    data = (tmp_path / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_no_curves_without_records(tmp_path):
  assert not report.plot_curves([], tmp_path / "curves.png")
  assert not (tmp_path / "curves.png").exists()


def test_report_shows_the_raw_prediction_next_to_the_postprocessed(tmp_path):
  results = _results()
  assert not report.has_raw(results)
  for group in results["summary"].values():
    group.update(dice_raw={"mean": 0.25, "std": 0.05, "n": 2, "n_nan": 0},
                 assd_raw={"mean": 55.0, "std": 3.0, "n": 2, "n_nan": 0})
  results["postprocess"] = "largest_component"
  report.write_experiment_report(results, [], tmp_path)
  md = (tmp_path / "metrics.md").read_text()
  assert report.has_raw(results) and "`largest_component`" in md
  raw = md.split("before post-processing), CHAOS metrics:")[1]
  assert "| MR T2-SPIR | 2 | 2 | 40 | 0.250 ± 0.050 | n/a | 55.00 ± 3.00 | n/a |" in raw


def test_pseudo_label_panel_shows_the_slice_of_the_largest_teacher_liver(tmp_path):
  image = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
  probs = np.zeros((5, 16, 16), np.float32)
  probs[1, 4:8, 4:8] = 0.9  # 16 pixels
  probs[3, 2:12, 2:12] = 0.9  # 100 pixels: the panel's slice
  mask = np.full((5, 16, 16), losses.IGNORE, np.uint8)
  mask[3] = 0
  mask[3, 3:11, 3:11] = 1
  panel = report.pseudo_label_panel(image, mask, probs, "t2 001", spacing=(7.5, 5.0, 2.5))
  np.testing.assert_array_equal(panel["image"], image[3])
  np.testing.assert_array_equal(panel["mask"], mask[3])
  assert panel["liver"].sum() == 100 and panel["title"] == "t2 001"
  # The coronal section: the row with the most teacher liver (rows 4-7 hold 14 voxels, the
  # others of 2-11 ten), every slice of it, at the aspect of the slice spacing.
  coronal = panel["coronal"]
  np.testing.assert_array_equal(coronal["image"], image[:, 4, :])
  np.testing.assert_array_equal(coronal["mask"], mask[:, 4, :])
  assert coronal["liver"].sum(axis=1).tolist() == [0, 4, 0, 10, 0] and panel["aspect"] == 3.0
  dropped = report.pseudo_label_panel(image, np.full_like(mask, losses.IGNORE),
                                      np.zeros_like(probs), "t2 002: dropped")
  np.testing.assert_array_equal(dropped["image"], image[2])  # no liver: the middle slice
  np.testing.assert_array_equal(dropped["coronal"]["image"], image[:, 8, :])  # the middle row
  report.plot_pseudo_labels([panel, dropped], tmp_path / "pseudo_labels_round1.png")
  data = (tmp_path / "pseudo_labels_round1.png").read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
