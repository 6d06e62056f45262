"""A small metric writer: JSON lines always, TensorBoard scalars and images where it can.

`workdir/metrics.jsonl` holds one `{"step": s, "split": ..., name: value, ...}`
object per call; the training curves in the report are drawn from it. The same
scalars (and sample images) go to TensorBoard event files in
`workdir/tensorboard/<split>`: through `tf.summary` where TensorFlow and TensorBoard
import, else through tensorboardX (a dependency, so also where TensorFlow is absent,
as on the GPU hosts); with neither, JSON lines only. Only process 0 writes.
"""
from __future__ import annotations

import itertools
import json
import os
import pathlib
import time

import jax
import numpy as np

from liverjax import progress
from liverjax import runtime


# Numbers tensorboardX event files apart (`MetricWriter.flush` closes and reopens them).
_TENSORBOARDX_FILES = itertools.count()


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


def _tensorboardx_or_none():
  """The tensorboardX module, or None where it does not import."""
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return tensorboardX


class MetricWriter:
  """Writes scalars (and images, to TensorBoard only) for one experiment."""

  def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
    self._enabled = jax.process_index() == 0
    self._path = pathlib.Path(workdir) / "metrics.jsonl"
    self._tb_root = pathlib.Path(workdir) / "tensorboard"
    self._tb = {}
    self._tf = self._tbx = None
    if self._enabled:
      self._path.parent.mkdir(parents=True, exist_ok=True)
      if tensorboard:
        self._tf = _tensorflow_with_tensorboard()
        if self._tf is None:
          self._tbx = _tensorboardx_or_none()

  def _summary_writer(self, split):
    """The event-file writer of `split` (tf.summary's or tensorboardX's), made once."""
    if split not in self._tb:
      logdir = str(self._tb_root / split)
      if self._tf is not None:
        self._tb[split] = self._tf.summary.create_file_writer(logdir)
      else:  # its file is named by the second: a suffix keeps a reopened writer's apart
        self._tb[split] = self._tbx.SummaryWriter(
            logdir, filename_suffix=f".{os.getpid()}.{next(_TENSORBOARDX_FILES)}")
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
    elif self._tbx is not None:
      writer = self._summary_writer(split)
      for k, v in scalars.items():
        writer.add_scalar(k, float(np.asarray(v)), global_step=int(step))

  def write_images(self, step: int, images: dict, split: str = "samples") -> None:
    """Writes images (name -> f32[N,H,W,C] in [0,1]; the first 8) to TensorBoard, if present."""
    if not self._enabled or (self._tf is None and self._tbx is None):
      return
    if self._tf is not None:
      with self._summary_writer(split).as_default():
        for k, v in images.items():
          self._tf.summary.image(k, np.asarray(v), step=int(step), max_outputs=8)
      return
    writer = self._summary_writer(split)
    for k, v in images.items():
      writer.add_images(k, np.asarray(v)[:8], global_step=int(step), dataformats="NHWC")

  def flush(self) -> None:
    """Writes every pending TensorBoard event to disk. tensorboardX's own flush leaves the
    events still queued for its writer thread, so its writers are closed instead (which
    drains the queue) and made anew, with a new event file, by the next write."""
    for w in self._tb.values():
      if self._tf is not None:
        w.flush()
      else:
        w.close()
    if self._tf is None:
      self._tb = {}


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
    eta = progress.format_seconds((self._total - step) / max(rate, 1e-9))
    self._last_step, self._last_time = step, now
    return means, rate, eta

