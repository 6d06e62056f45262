"""Tests for liverjax/data/cache.py and the cache in liverjax/data/dataset.py (load_dataset)."""
import logging
import multiprocessing
import os
import pathlib
import pickle

import cv2
import numpy as np
import pytest

from liverjax.data import cache
from liverjax.data import dataset
from liverjax.data import sources as sources_lib
from liverjax.data import preprocess
from liverjax.data import synthetic
from tests.conftest import make_tiny_config


class _Planted:
  """Unpickling this creates the file `path`: code run by a cache load."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _cache_files(config):
  folder = pathlib.Path(config.data.cache_dir) / "prepared"
  return sorted(f for f in folder.iterdir() if not f.name.endswith(".lock"))


def _same(a, b):
  assert [(v.modality, v.patient_id, v.sequence) for v in a.volumes] == [
      (v.modality, v.patient_id, v.sequence) for v in b.volumes]
  for x, y in zip(a.volumes, b.volumes):
    np.testing.assert_array_equal(x.image, y.image)
    np.testing.assert_array_equal(x.mask, y.mask)
    assert x.spacing == y.spacing and isinstance(y.spacing, tuple)


def test_planted_cache_runs_no_code_and_is_rebuilt(tmp_path, caplog):
  config = make_tiny_config(tmp_path)
  first = dataset.load_dataset(config.data)
  files = _cache_files(config)
  assert files
  ran = tmp_path / "code_ran"
  for f in files:  # a pickle in place of the cache file
    f.write_bytes(pickle.dumps(_Planted(ran)))
  with caplog.at_level(logging.WARNING):
    again = dataset.load_dataset(config.data)
  assert not ran.exists()
  assert any(str(f) in r.getMessage() and "rebuilding" in r.getMessage()
             for f in files for r in caplog.records)
  _same(first, again)
  for f in _cache_files(config):  # an npz holding a pickled object array
    with open(f, "wb") as fh:
      np.savez(fh, meta=np.array([_Planted(ran)], dtype=object))
  _same(first, dataset.load_dataset(config.data))
  assert not ran.exists()


def test_truncated_cache_is_rebuilt_once(tmp_path, monkeypatch, caplog):
  config = make_tiny_config(tmp_path)
  first = dataset.load_dataset(config.data)
  (f,) = _cache_files(config)
  f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  builds = []
  build = dataset._read_and_prepare
  monkeypatch.setattr(dataset, "_read_and_prepare",
                      lambda *a: builds.append(1) or build(*a))
  with caplog.at_level(logging.WARNING):
    _same(first, dataset.load_dataset(config.data))
  assert builds == [1] and f"{f}: unusable dataset cache" in caplog.text
  _same(first, dataset.load_dataset(config.data))  # the rebuilt file reads back
  assert builds == [1]


def test_cache_key_follows_the_data_shaping_code(tmp_path, monkeypatch):
  sources = sorted(pathlib.Path(cache.__file__).parent.glob("*.py"))
  copies = []
  for f in sources:
    (tmp_path / f.name).write_bytes(f.read_bytes())
    copies.append(tmp_path / f.name)
  before = cache.code_digest(copies)
  assert before == cache.code_digest(copies)
  with open(tmp_path / "preprocess.py", "a") as fh:
    fh.write("\n# a change\n")
  assert cache.code_digest(copies) != before
  config = make_tiny_config(tmp_path)
  sources = sources_lib.resolve_sources(config.data)
  key = dataset._cache_key(sources, config.data, ("ct",))
  monkeypatch.setattr(cache, "code_digest", lambda files=None: "another version")
  assert dataset._cache_key(sources, config.data, ("ct",)) != key


def test_cache_sees_changes_inside_symlinked_patient_folders(tmp_path):
  src = synthetic.generate_chaos(tmp_path / "src", n_ct=3, n_mr=3, size=32, slices=8)
  root = tmp_path / "linked"
  for modality in ("CT", "MR"):
    (root / modality).mkdir(parents=True)
    for p in (src / modality).iterdir():
      (root / modality / p.name).symlink_to(p, target_is_directory=True)
  pid = synthetic.patient_ids("CT", 1)[0]
  (src / "CT" / pid / "loop").symlink_to(src / "CT", target_is_directory=True)  # a link loop
  config = make_tiny_config(tmp_path)
  config.data.root = str(root)

  def liver(data):
    (v,) = [v for v in data.volumes if v.modality == "CT" and v.patient_id == pid]
    return int(v.mask.sum())

  before = liver(dataset.load_dataset(config.data))
  ground = src / "CT" / pid / "Ground"
  hit = max(ground.iterdir(), key=lambda f: (cv2.imread(str(f), 0) > 0).sum())
  assert cv2.imwrite(str(hit), np.zeros((32, 32), np.uint8))
  st = hit.stat()
  os.utime(hit, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
  assert liver(dataset.load_dataset(config.data)) < before


def _load_counting(cache_dir, root, start, results):
  """A child: waits for `start`, loads the dataset, reports (volumes, built)."""
  config = make_tiny_config(pathlib.Path(cache_dir).parent)
  config.data.cache_dir = cache_dir
  config.data.root = root
  builds = []
  build = dataset._read_and_prepare
  dataset._read_and_prepare = lambda *a: builds.append(1) or build(*a)
  start.wait(60)
  data = dataset.load_dataset(config.data)
  results.put((len(data.volumes), sum(v.image.shape[0] for v in data.volumes), len(builds)))


def test_two_runs_build_the_cache_once(tmp_path):
  root = synthetic.generate_chaos(tmp_path / "src", n_ct=3, n_mr=3, size=32, slices=8)
  ctx = multiprocessing.get_context("spawn")
  start, results = ctx.Event(), ctx.Queue()
  procs = [ctx.Process(target=_load_counting,
                       args=(str(tmp_path / "cache"), str(root), start, results))
           for _ in range(2)]
  for p in procs:
    p.start()
  start.set()
  got = [results.get(timeout=120) for _ in procs]
  for p in procs:
    p.join(60)
    assert p.exitcode == 0
  assert [g[:2] for g in got] == [(12, 96), (12, 96)]
  assert sorted(g[2] for g in got) == [0, 1]  # one built, the other waited and read it


def test_organ_maps_round_trip_and_may_be_absent(tmp_path):
  organs = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4) % 5
  vols = [preprocess.PreparedVolume("a", "CT", "ct", np.zeros((2, 4, 4), np.float32),
                                    (organs == 1).astype(np.uint8), (1.0, 1.0, 1.0), organs),
          preprocess.PreparedVolume("b", "MR", "t2", np.zeros((1, 4, 4), np.float32),
                                    np.zeros((1, 4, 4), np.uint8), (1.0, 1.0, 1.0))]
  cache.write(tmp_path / "c.npz", "k", vols, [])
  got, _ = cache.read(tmp_path / "c.npz", "k", preprocess.PreparedVolume)
  np.testing.assert_array_equal(got[0].organs, organs)
  assert got[0].organs.dtype == np.uint8 and got[1].organs is None
