"""Tests for liverjax/metric_writer.py: records survive a kill mid-write, and are replaced;
TensorBoard event files without TensorFlow."""
import json

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

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


def test_tensorboard_scalars_and_images_without_tensorflow(tmp_path, monkeypatch):
  """Where TensorFlow is absent (the GPU hosts), tensorboardX writes the event files; they
  read back as TensorBoard reads them."""
  monkeypatch.setattr(metric_writer, "_tensorflow_with_tensorboard", lambda: None)
  writer = metric_writer.MetricWriter(tmp_path)
  for step in (1, 2):
    writer.write_scalars(step, {"total": 0.5 / step, "dice": np.float32(0.25 * step)})
  writer.write_scalars(2, {"dice": 0.75}, split="val")
  writer.write_images(2, {"samples": np.random.default_rng(0).random((10, 8, 8, 1))})
  writer.flush()
  train = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard" / "train"))
  train.Reload()
  assert [(e.step, e.value) for e in train.Scalars("total")] == [(1, 0.5), (2, 0.25)]
  assert [e.value for e in train.Scalars("dice")] == [0.25, 0.5]
  val = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard" / "val"))
  val.Reload()
  assert [(e.step, e.value) for e in val.Scalars("dice")] == [(2, 0.75)]
  samples = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard" / "samples"))
  samples.Reload()
  assert samples.Tags()["images"] == ["samples"]
  # The JSON lines are written as before.
  assert len(metric_writer.read_scalars(tmp_path)) == 3


def test_a_flush_without_tensorflow_leaves_nothing_queued(tmp_path, monkeypatch):
  """tensorboardX queues events for a writer thread; after `flush` all are on disk, however
  slow that thread, and writing goes on afterwards (into a new event file)."""
  monkeypatch.setattr(metric_writer, "_tensorflow_with_tensorboard", lambda: None)
  writer = metric_writer.MetricWriter(tmp_path)
  for step in range(1, 201):
    writer.write_scalars(step, {"total": float(step)})
  writer.flush()
  train = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard" / "train"),
                                             size_guidance={"scalars": 0})
  train.Reload()
  assert [e.step for e in train.Scalars("total")] == list(range(1, 201))
  writer.write_scalars(201, {"total": 201.0})
  writer.flush()
  train.Reload()
  assert train.Scalars("total")[-1].step == 201
