"""Tests for liverjax/data/filelock.py."""
import multiprocessing

import pytest

from liverjax.data import filelock


def _try_lock(path, results):
  try:
    with filelock.locked(path, timeout=0.3, poll=0.01):
      results.put("got it")
  except TimeoutError as e:
    results.put(str(e))


def test_a_second_process_waits_for_the_lock(tmp_path):
  path = tmp_path / "sub" / "x.lock"
  ctx = multiprocessing.get_context("spawn")
  results = ctx.Queue()
  with filelock.locked(path) as held:
    assert held == path and path.exists()
    p = ctx.Process(target=_try_lock, args=(path, results))
    p.start()
    msg = results.get(timeout=60)
    p.join(30)
  assert msg.startswith(f"{path}: lock still held")
  p = ctx.Process(target=_try_lock, args=(path, results))
  p.start()
  assert results.get(timeout=60) == "got it"
  p.join(30)
  with pytest.raises(RuntimeError):  # released on an exception too
    with filelock.locked(path):
      raise RuntimeError("boom")
  with filelock.locked(path, timeout=0):
    pass
