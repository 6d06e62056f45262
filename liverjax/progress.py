"""Progress lines for the long loops that are not training steps: reading and preparing a
dataset (per scan), evaluating (per volume), a teacher labelling target scans, the CycleGAN's
task score (per volume).

`Progress(total, "read", "scans")`, then `done(label)` after each item, logs a line such as

  read 3/19 scans (CT btcv_ct_006), 0:00:12 so far, ETA 0:01:04

when at least `interval` seconds (`INTERVAL_SECONDS`) have passed since the previous line (or
the start): a loop that ends within the interval logs nothing (its summary line says enough),
a slow one one line per interval at most, never one per item. The ETA is the mean time per
item so far times the items left. The training loop's own progress (steps/s, ETA) is
`metric_writer.Progress`; both format durations with `format_seconds`.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from absl import logging

# The least time between two progress lines of one loop.
INTERVAL_SECONDS = 10.0


def format_seconds(s: float) -> str:
  """Seconds as "h:mm:ss" (rounded to the second; hours unbounded)."""
  s = int(round(max(s, 0.0)))
  return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
  """Counts the items of a loop of known length and logs throttled progress lines.

  Args:
    total: the number of items.
    verb: what is done to each ("read", "evaluated").
    noun: the items, plural ("scans", "volumes").
    interval: the least seconds between two lines (default `INTERVAL_SECONDS`, read when
      the object is made); 0 logs a line per item.
    log: where a line goes (default absl `logging.info`).
    clock: seconds, monotonic (default `time.monotonic`).
  """

  def __init__(self, total: int, verb: str, noun: str, *, interval: float | None = None,
               log: Callable[[str], None] | None = None,
               clock: Callable[[], float] = time.monotonic):
    self.total = int(total)
    self.count = 0
    self._verb, self._noun = verb, noun
    self._interval = INTERVAL_SECONDS if interval is None else float(interval)
    self._log = log or (lambda line: logging.info("%s", line))
    self._clock = clock
    self._start = self._last = clock()

  def line(self, label: str = "") -> str:
    """The progress line for the items counted so far, `label` naming the latest."""
    elapsed = self._clock() - self._start
    left = max(self.total - self.count, 0)
    eta = elapsed / self.count * left if self.count else 0.0
    what = f" ({label})" if label else ""
    return (f"{self._verb} {self.count}/{self.total} {self._noun}{what}, "
            f"{format_seconds(elapsed)} so far, ETA {format_seconds(eta)}")

  def done(self, label: str = "") -> None:
    """Counts one more item done (`label` names it, e.g. "CT btcv_ct_006") and logs the
    progress line if `interval` seconds have passed since the last one."""
    self.count += 1
    now = self._clock()
    if now - self._last >= self._interval:
      self._last = now
      self._log(self.line(label))


def scan_label(modality: str, patient_id: str, sequence: str) -> str:
  """The short name of a scan in progress lines: "CT btcv_ct_006", "MR 3 t2" (the sequence
  for MR only)."""
  return f"{modality} {patient_id} {sequence}" if modality == "MR" else f"{modality} {patient_id}"


def volume_label(item) -> str:
  """`scan_label` of anything with `modality`, `patient_id` and `sequence` attributes
  (`Volume`, `PreparedVolume`, `chaos.SeriesRef`)."""
  return scan_label(item.modality, item.patient_id, item.sequence)
