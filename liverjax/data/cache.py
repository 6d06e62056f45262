"""The prepared-dataset cache: a key over files, settings and code; a format that runs no code.

A cache entry is one `.npz` file (read with `allow_pickle=False`): the arrays
of every volume (`v<i>.<field>`) and one JSON document (`meta`, stored as
UTF-8 bytes in a uint8 array) holding each volume's other fields, the
problems list, the key and the format version. Nothing in it can execute code
when loaded, and any read error (truncated, planted, wrong format, wrong key)
makes `read` return None after a warning naming the file, so the caller
rebuilds it. Writes go to a temporary file in the same folder and are renamed
into place (`os.replace`); callers hold a `filelock.locked` lock around the
read-or-build-and-write, so two runs never build the same entry twice.

The key (`digest_tree` + `code_digest` + the settings, see `dataset._cache_key`)
covers the data files (path, size, mtime, following directory symlinks, as the
reader does) and the source of the modules that shape the data, so a code
change cannot serve stale data.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Any, Callable, Sequence

import numpy as np
from absl import logging

FORMAT_VERSION = 2
# Modules of liverjax/data that do not shape the prepared arrays (every other
# .py file there is hashed into the key, new ones included).
_NOT_DATA_SHAPING = frozenset({"__init__.py", "verify.py", "filelock.py", "synthetic.py",
                               "phantom.py", "pipeline.py"})
_DATA_PACKAGE = pathlib.Path(__file__).resolve().parent


def digest_tree(h, root: pathlib.Path) -> None:
  """Feeds every file below `root` into the hash `h`: relative path, size, mtime.

  Args:
    h: a hashlib object (updated in place).
    root: a folder. Directory symlinks are followed (as the reader follows
      them), each real folder visited once, so a link loop ends.
  """
  root = pathlib.Path(root)
  seen = set()
  entries = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    st = os.stat(dirpath)
    if (st.st_dev, st.st_ino) in seen:
      dirnames[:] = []
      continue
    seen.add((st.st_dev, st.st_ino))
    dirnames.sort()
    for name in filenames:
      path = pathlib.Path(dirpath) / name
      try:
        fst = path.stat()
      except OSError:  # a dangling link: its name still counts
        entries.append(f"{path.relative_to(root)}:missing")
        continue
      entries.append(f"{path.relative_to(root)}:{fst.st_size}:{fst.st_mtime_ns}")
  for e in sorted(entries):
    h.update(f"{e}\n".encode())


def code_digest(files: Sequence[pathlib.Path] | None = None) -> str:
  """sha256 (hex, 16 characters) of the source of the modules that shape the data.

  Args:
    files: the source files; default every liverjax/data/*.py except those in
      `_NOT_DATA_SHAPING`.
  """
  if files is None:
    files = sorted(p for p in _DATA_PACKAGE.glob("*.py") if p.name not in _NOT_DATA_SHAPING)
  h = hashlib.sha256()
  for f in files:
    h.update(pathlib.Path(f).name.encode() + b"\0" + pathlib.Path(f).read_bytes() + b"\0")
  return h.hexdigest()[:16]


def _to_json(value):
  if isinstance(value, tuple):
    return {"tuple": [_to_json(v) for v in value]}
  if isinstance(value, list):
    return [_to_json(v) for v in value]
  if isinstance(value, dict):
    return {"dict": {k: _to_json(v) for k, v in value.items()}}
  if isinstance(value, np.generic):
    return value.item()
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  raise TypeError(f"cannot store a {type(value).__name__} in the dataset cache")


def _from_json(value):
  if isinstance(value, dict) and set(value) == {"tuple"}:
    return tuple(_from_json(v) for v in value["tuple"])
  if isinstance(value, dict) and set(value) == {"dict"}:
    return {k: _from_json(v) for k, v in value["dict"].items()}
  if isinstance(value, list):
    return [_from_json(v) for v in value]
  return value


def write(path, key: str, volumes: Sequence[Any], problems: Sequence[str]) -> None:
  """Writes volumes (dataclass records) and problems to the `.npz` file `path` atomically.

  Args:
    path: the cache file (its folder is created).
    key: the cache key, stored and checked by `read`.
    volumes: dataclass instances (e.g. `preprocess.PreparedVolume`); ndarray
      fields are stored as arrays, the others as JSON (None, numbers, strings,
      and lists / tuples / dicts of them).
    problems: strings.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays, records = {}, []
  for i, v in enumerate(volumes):
    fields, array_names = {}, []
    for f in dataclasses.fields(v):
      value = getattr(v, f.name)
      if isinstance(value, np.ndarray):
        if value.dtype == object:
          raise TypeError(f"field {f.name}: object arrays cannot be cached")
        arrays[f"v{i}.{f.name}"] = value
        array_names.append(f.name)
      else:
        fields[f.name] = _to_json(value)
    records.append({"fields": fields, "arrays": array_names})
  meta = {"format": FORMAT_VERSION, "key": key, "volumes": records,
          "problems": [str(p) for p in problems]}
  arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  try:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def read(path, key: str, make: Callable[..., Any]) -> tuple[list, list[str]] | None:
  """Reads a cache file written by `write`.

  Args:
    path: the `.npz` file.
    key: the expected key.
    make: builds one volume from its fields as keyword arguments (e.g. the
      dataclass `preprocess.PreparedVolume`).

  Returns:
    (volumes, problems), or None when the file is absent or unusable for any
    reason (not an npz, truncated, pickled content, another format version or
    key, missing arrays): a warning naming the file and the reason is logged.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(bytes(data["meta"]).decode())
      if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT_VERSION}")
      if meta.get("key") != key:
        raise ValueError(f"key {meta.get('key')!r}, expected {key!r}")
      volumes = []
      for i, rec in enumerate(meta["volumes"]):
        kwargs = {k: _from_json(v) for k, v in rec["fields"].items()}
        for name in rec["arrays"]:
          kwargs[name] = data[f"v{i}.{name}"]
        volumes.append(make(**kwargs))
      problems = [str(p) for p in meta["problems"]]
  except Exception as e:  # pylint: disable=broad-except  (any damage: rebuild)
    logging.warning("%s: unusable dataset cache (%s: %s); rebuilding it", path,
                    type(e).__name__, e)
    return None
  return volumes, problems
