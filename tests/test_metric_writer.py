"""Tests for liverjax/metric_writer.py: records survive a kill mid-write, and are replaced."""
import json

import pytest

from liverjax import metric_writer


def test_a_last_line_cut_short_by_a_kill_is_skipped(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text(json.dumps({"step": 1, "split": "train", "total": 1.0}) + "\n"
                  + '{"step": 2, "split": "tr')
  assert metric_writer.read_scalars(tmp_path) == [{"step": 1, "split": "train", "total": 1.0}]
  metric_writer.truncate_after(tmp_path, 1)  # a resume rewrites the file without it
  assert path.read_text() == json.dumps({"step": 1, "split": "train", "total": 1.0}) + "\n"
  path.write_text('{"step": 1\n' + json.dumps({"step": 2, "split": "train"}) + "\n")
  with pytest.raises(ValueError, match=rf"^{path}:1: not a JSON record"):
    metric_writer.read_scalars(tmp_path)


def test_truncate_clear_and_drop(tmp_path):
  writer = metric_writer.MetricWriter(tmp_path, tensorboard=False)
  for step in (1, 2, 3):
    writer.write_scalars(step, {"total": float(step)})
  writer.write_scalars(3, {"dice": 0.5}, split="val")
  writer.write_scalars(3, {"dice": 0.4}, split="test")

  def keys():
    return [(r["split"], r["step"]) for r in metric_writer.read_scalars(tmp_path)]

  metric_writer.drop_records(tmp_path, 3, ("val", "test"))
  assert keys() == [("train", 1), ("train", 2), ("train", 3)]
  metric_writer.truncate_after(tmp_path, 2)
  assert keys() == [("train", 1), ("train", 2)]
  metric_writer.clear(tmp_path)
  assert keys() == [] and not (tmp_path / "metrics.jsonl.tmp").exists()
