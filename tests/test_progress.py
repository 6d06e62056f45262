"""Tests for liverjax/progress.py: counts, ETA, and no more than one line per interval."""
import types

from liverjax import progress


class _Clock:
  """A clock that moves only when told."""

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_lines_count_time_and_eta():
  clock, lines = _Clock(), []
  tracker = progress.Progress(4, "read", "scans", interval=10, log=lines.append, clock=clock)
  clock.now += 12
  tracker.done("CT btcv_ct_000")  # 12 s for 1 of 4: 36 s left
  assert lines == ["read 1/4 scans (CT btcv_ct_000), 0:00:12 so far, ETA 0:00:36"]
  clock.now += 3
  tracker.done("CT btcv_ct_003")  # 3 s since the last line: quiet
  assert len(lines) == 1 and tracker.count == 2
  clock.now += 3600 + 1
  tracker.done("MR 3 t2")
  assert lines[-1] == "read 3/4 scans (MR 3 t2), 1:00:16 so far, ETA 0:20:05"
  clock.now += 10
  tracker.done()
  assert lines[-1] == "read 4/4 scans, 1:00:26 so far, ETA 0:00:00"


def test_a_fast_loop_logs_at_most_one_line_per_interval():
  clock, lines = _Clock(), []
  tracker = progress.Progress(1000, "evaluated", "volumes", interval=10, log=lines.append,
                              clock=clock)
  for _ in range(1000):  # 0.125 s each: 125 s in all
    clock.now += 0.125
    tracker.done("CT 1")
  assert len(lines) == 12  # one per 10 s
  assert lines[0] == "evaluated 80/1000 volumes (CT 1), 0:00:10 so far, ETA 0:01:55"
  done_quickly = progress.Progress(5, "read", "scans", log=lines.append, clock=clock)
  for _ in range(5):
    clock.now += 1  # 5 s in all, under INTERVAL_SECONDS: only the summary line a caller logs
    done_quickly.done()
  assert len(lines) == 12 and progress.INTERVAL_SECONDS > 5


def test_format_seconds():
  assert progress.format_seconds(0) == "0:00:00"
  assert progress.format_seconds(59.6) == "0:01:00"
  assert progress.format_seconds(3 * 3600 + 25 * 60 + 7) == "3:25:07"
  assert progress.format_seconds(-4) == "0:00:00"


def test_scan_labels_name_the_sequence_of_mr_only():
  assert progress.scan_label("CT", "btcv_ct_006", "ct") == "CT btcv_ct_006"
  assert progress.scan_label("MR", "3", "t2") == "MR 3 t2"
  volume = types.SimpleNamespace(modality="MR", patient_id="5", sequence="t1_in")
  assert progress.volume_label(volume) == "MR 5 t1_in"
