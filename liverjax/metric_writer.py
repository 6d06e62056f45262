"""A small metric writer: JSON lines always, TensorBoard when TensorFlow is present.

`workdir/metrics.jsonl` holds one `{"step": s, "split": ..., name: value, ...}`
object per call; the training curves in the report are drawn from it. When
TensorFlow imports, the same scalars go to `workdir/tensorboard/<split>`.
Only process 0 writes.
"""
from __future__ import annotations

import json
import os
import pathlib
import time

import jax
import numpy as np

from liverjax import runtime


def _tensorflow_with_tensorboard():
  """TensorFlow when both it and TensorBoard import (tf.summary needs both), else None."""
  tf = runtime.tensorflow_or_none()
  if tf is None:
    return None
  try:
    import tensorboard  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return None
  return tf


class MetricWriter:
  """Writes scalars (and images, to TensorBoard only) for one experiment."""

  def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
    self._enabled = jax.process_index() == 0
    self._path = pathlib.Path(workdir) / "metrics.jsonl"
    self._tb_root = pathlib.Path(workdir) / "tensorboard"
    self._tb = {}
    self._tf = None
    if self._enabled:
      self._path.parent.mkdir(parents=True, exist_ok=True)
      if tensorboard:
        self._tf = _tensorflow_with_tensorboard()

  def _summary_writer(self, split):
    if split not in self._tb:
      self._tb[split] = self._tf.summary.create_file_writer(str(self._tb_root / split))
    return self._tb[split]

  def write_scalars(self, step: int, scalars: dict, split: str = "train") -> None:
    """Appends `scalars` (name -> number) at `step` under `split`."""
    if not self._enabled:
      return
    record = {"step": int(step), "split": split}
    record.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tf is not None:
      with self._summary_writer(split).as_default():
        for k, v in scalars.items():
          self._tf.summary.scalar(k, float(np.asarray(v)), step=int(step))

  def write_images(self, step: int, images: dict, split: str = "samples") -> None:
    """Writes images (name -> f32[N,H,W,C] in [0,1]) to TensorBoard, if present."""
    if not self._enabled or self._tf is None:
      return
    with self._summary_writer(split).as_default():
      for k, v in images.items():
        self._tf.summary.image(k, np.asarray(v), step=int(step), max_outputs=8)

  def flush(self) -> None:
    for w in self._tb.values():
      w.flush()


def read_scalars(workdir: str | pathlib.Path) -> list[dict]:
  """Reads back `workdir/metrics.jsonl` (empty list when absent).

  A last line cut short (a run killed while writing it) is skipped; a bad
  line elsewhere raises ValueError naming the file and the line.
  """
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  text = path.read_text()
  lines = text.split("\n")
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:  # no newline after it: the write was interrupted
        continue
      raise ValueError(f"{path}:{i + 1}: not a JSON record ({e})") from None
  return records


def keep_records(workdir: str | pathlib.Path, keep) -> None:
  """Rewrites `workdir/metrics.jsonl` with the records for which `keep(record)`
  is true (atomically: a kill meanwhile leaves the old or the new file).
  Process 0 only; nothing happens when the file is absent."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if jax.process_index() != 0 or not path.exists():
    return
  kept = [r for r in read_scalars(workdir) if keep(r)]
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
  os.replace(tmp, path)


def truncate_after(workdir: str | pathlib.Path, step: int) -> None:
  """Drops records after `step` (a run resumed from the checkpoint at `step`
  will write them again)."""
  keep_records(workdir, lambda r: r["step"] <= step)


def clear(workdir: str | pathlib.Path) -> None:
  """Drops every record (a run starting afresh, with no checkpoint to resume from)."""
  keep_records(workdir, lambda r: False)


def drop_records(workdir: str | pathlib.Path, step: int, splits) -> None:
  """Drops the records at `step` of `splits` (about to be written again)."""
  splits = set(splits)
  keep_records(workdir, lambda r: not (r["step"] == step and r["split"] in splits))


class Progress:
  """Per-step metrics of a training loop, fetched from the device once per log.

  `append(metrics)` keeps the step's (device) metrics without a host sync;
  `summarize(step)` fetches them all, and returns their means, the steps/s
  since the previous summary and the ETA to `total_steps` as "h:mm:ss".
  """

  def __init__(self, start_step: int, total_steps: int):
    self._pending = []
    self._total = total_steps
    self._last_step = start_step
    self._last_time = self.start_time = time.time()

  def append(self, metrics: dict) -> None:
    self._pending.append(metrics)

  def summarize(self, step: int) -> tuple[dict, float, str]:
    fetched = jax.device_get(self._pending)
    self._pending = []
    means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    now = time.time()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    eta = format_seconds((self._total - step) / max(rate, 1e-9))
    self._last_step, self._last_time = step, now
    return means, rate, eta


def format_seconds(s: float) -> str:
  """Seconds as "h:mm:ss"."""
  s = int(round(s))
  return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
