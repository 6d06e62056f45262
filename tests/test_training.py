"""Tests for liverjax/training.py's resume: metrics.jsonl never holds a step twice."""
import json

from liverjax import checkpointing
from liverjax import metric_writer
from liverjax import training


def _write(workdir, records):
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_resume_without_a_checkpoint_starts_the_metrics_afresh(tmp_path):
  # What a run killed before its first checkpoint leaves behind.
  _write(tmp_path, [{"step": 1, "split": "train", "total": 1.0},
                    {"step": 2, "split": "train", "total": 0.9}])
  manager = checkpointing.create_manager(tmp_path)
  state, step = training.resume(manager, tmp_path, abstract=None)
  assert (state, step) == (None, 0)
  assert metric_writer.read_scalars(tmp_path) == []
