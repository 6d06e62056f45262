"""Tests for liverjax/data/filelock.py."""
import multiprocessing
import os
import socket

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


def _try_held(path, results):
  try:
    with filelock.held(path):
      results.put("got it")
  except filelock.HeldError as e:
    results.put(f"refused: {e.holder}")


def test_held_refuses_at_once_naming_the_holder(tmp_path):
  path = tmp_path / "w" / ".lock"
  ctx = multiprocessing.get_context("spawn")
  results = ctx.Queue()
  with filelock.held(path) as held:
    assert held == path
    assert path.read_text().startswith(f"pid {os.getpid()} on host {socket.gethostname()} since ")
    with filelock.held(path):  # this process again: taken again, not refused
      pass
    p = ctx.Process(target=_try_held, args=(path, results))
    p.start()
    msg = results.get(timeout=60)
    p.join(30)
    assert msg == f"refused: {path.read_text().strip()}"
  p = ctx.Process(target=_try_held, args=(path, results))
  p.start()
  assert results.get(timeout=60) == "got it"
  p.join(30)
