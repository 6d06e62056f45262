"""An advisory inter-process file lock (fcntl.flock) for the data caches.

Used around the synthetic dataset generation and the prepared-dataset cache
writes, so that two runs sharing a cache folder never read a half-written
dataset: the first takes the lock and builds, the second waits and then finds
the finished result. Linux / macOS only (fcntl).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import time
from typing import Iterator

from absl import logging


@contextlib.contextmanager
def locked(path, *, timeout: float | None = None, poll: float = 0.05) -> Iterator[pathlib.Path]:
  """Holds an exclusive lock on the file `path` (created if absent) for the `with` body.

  Args:
    path: the lock file; its parent folders are created. The file itself is
      never removed (removing a lock file races with processes waiting on it).
    timeout: seconds to wait for the lock before TimeoutError; None waits forever.
    poll: seconds between attempts while another process holds the lock.

  Yields:
    The lock file's path. The lock is released when the body exits (also on
    an exception) or when the process dies.

  Raises:
    TimeoutError: naming the lock file, when `timeout` passes first.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    start, warned = time.monotonic(), False
    while True:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if not warned:
          logging.info("waiting for %s (held by another process)", path)
          warned = True
        if timeout is not None and time.monotonic() - start > timeout:
          raise TimeoutError(f"{path}: lock still held by another process after "
                             f"{timeout:.0f}s") from None
        time.sleep(poll)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
      yield path
    finally:
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
