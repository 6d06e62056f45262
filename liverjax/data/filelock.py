"""Advisory inter-process file locks (fcntl.flock): the data caches and the run workdirs.

`locked` waits: used around the synthetic dataset generation and the
prepared-dataset cache writes, so that two runs sharing a cache folder never
read a half-written dataset (the first takes the lock and builds, the second
waits and then finds the finished result).

`held` refuses: used for a run's workdir (`liverjax.experiment.workdir_lock`),
so that a second run on the same workdir stops at once with a `HeldError`
naming the holder (pid, host, start time and command, written into the lock
file by whoever holds it).

The kernel releases a flock when its process dies (also on kill -9), so a lock
file left behind by a dead process never blocks anyone. Linux / macOS only
(fcntl); on a shared file system the lock works where the file system supports
flock across hosts (NFS, Lustre with `-o flock`).
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import pathlib
import socket
import sys
import time
from typing import Iterator

from absl import logging

# Lock files this process holds (resolved path -> depth): taking one again in the
# same process (a nested `held`) succeeds instead of refusing the process itself.
_HELD: dict[str, int] = {}


class HeldError(RuntimeError):
  """The lock file is held by another process; the message names it and the holder."""

  def __init__(self, path: pathlib.Path, holder: str):
    self.path = path
    self.holder = holder
    super().__init__(f"{path} is held by {holder}")


def holder_description() -> str:
  """This process as the lock file records it: "pid P on host H since T: COMMAND"."""
  start = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
  command = " ".join(sys.argv) or sys.executable
  return f"pid {os.getpid()} on host {socket.gethostname()} since {start}: {command}"


def _open(path: pathlib.Path) -> int:
  path.parent.mkdir(parents=True, exist_ok=True)
  return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try_lock(fd: int) -> bool:
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    return False


def _record_holder(fd: int) -> None:
  os.ftruncate(fd, 0)
  os.pwrite(fd, (holder_description() + "\n").encode(), 0)


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
  fd = _open(path)
  try:
    start, warned = time.monotonic(), False
    while not _try_lock(fd):
      if not warned:
        logging.info("waiting for %s (held by another process)", path)
        warned = True
      if timeout is not None and time.monotonic() - start > timeout:
        raise TimeoutError(f"{path}: lock still held by another process after "
                           f"{timeout:.0f}s") from None
      time.sleep(poll)
    _record_holder(fd)
    try:
      yield path
    finally:
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


@contextlib.contextmanager
def held(path) -> Iterator[pathlib.Path]:
  """Takes the exclusive lock on `path` now, for the `with` body, or refuses.

  The holder's description (`holder_description`) is written into the file
  while the lock is held. A process that already holds `path` (an outer
  `held` of the same file) takes it again at no cost.

  Args:
    path: the lock file; its parent folders are created.

  Yields:
    The lock file's path (absolute).

  Raises:
    HeldError: naming `path` and the holder, when another process holds it.
    OSError: when the file cannot be created (read-only folder, full disk).
  """
  path = pathlib.Path(path).absolute()
  key = str(path.resolve())
  if key in _HELD:
    _HELD[key] += 1
    try:
      yield path
    finally:
      _HELD[key] -= 1
    return
  fd = _open(path)
  try:
    if not _try_lock(fd):
      # The holder writes its description right after locking; give it a moment.
      holder = ""
      for _ in range(20):
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if holder:
          break
        time.sleep(0.05)
      raise HeldError(path, holder or "another process (it has not written its name)")
    _record_holder(fd)
    _HELD[key] = 1
    try:
      yield path
    finally:
      del _HELD[key]
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
