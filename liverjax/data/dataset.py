"""The prepared dataset of an experiment: volumes read, preprocessed, split, cached.

`load_dataset(config.data)` is the one entry point. It resolves the data root
(the CHAOS folder, or the synthetic CHAOS dataset generated into the cache when
`root` is None), reads every series with `liverjax.data.chaos`, prepares each
volume with `liverjax.data.preprocess`, splits patients per modality into
train/val/test, and caches the result so a dataset is decoded once per
preprocessing setting. No TensorFlow, no JAX.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time

import numpy as np
from absl import logging

from liverjax.data import cache
from liverjax.data import chaos
from liverjax.data import filelock
from liverjax.data import preprocess

CACHE_VERSION = 2  # 2: .npz + JSON (was a pickle)
DOMAINS = ("ct", "mr")


@dataclasses.dataclass
class Dataset:
  """Prepared volumes with their split.

  Attributes:
    root: the CHAOS folder the data came from.
    volumes: every prepared volume (`preprocess.PreparedVolume`: image f32
      [Z,S,S] in [0,1], mask u8 [Z,S,S] in {0,1}, spacing (z,y,x) mm).
    splits: modality ("CT"/"MR") -> split ("train"/"val"/"test") -> patient ids.
    problems: what the reader reported and skipped.
  """
  root: str
  volumes: list
  splits: dict
  problems: list

  def select(self, domain: str, split: str, sequences=None) -> list:
    """The volumes of `domain` ("ct" | "mr") in `split`, MR restricted to `sequences`."""
    modality = domain_modality(domain)
    ids = set(self.splits.get(modality, {}).get(split, []))
    out = []
    for v in self.volumes:
      if v.modality != modality or v.patient_id not in ids:
        continue
      if modality == "MR" and sequences is not None and v.sequence not in sequences:
        continue
      out.append(v)
    return out


def domain_modality(domain: str) -> str:
  """Maps a domain name ("ct" | "mr") to the CHAOS modality ("CT" | "MR")."""
  if domain not in DOMAINS:
    raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
  return domain.upper()


def domain_sequences(domain: str, data_config) -> tuple[str, ...]:
  """The sequences that make up `domain` under `data_config.mr_sequences`."""
  if domain == "ct":
    return ("ct",)
  domain_modality(domain)
  seqs = tuple(data_config.mr_sequences)
  bad = [s for s in seqs if s not in chaos.SEQUENCES or s == "ct"]
  if bad or not seqs:
    raise ValueError(f"data.mr_sequences={seqs!r}: expected a non-empty subset of "
                     "('t1_in', 't1_out', 't2')")
  return seqs


def stack_slices(volumes) -> tuple[np.ndarray, np.ndarray]:
  """Concatenates volumes into slices: (images f32[N,S,S,1] in [0,1], masks f32[N,S,S,1] in {0,1})."""
  if not volumes:
    raise ValueError("no volumes to stack")
  images = np.concatenate([v.image for v in volumes])[..., None].astype(np.float32)
  masks = np.concatenate([v.mask for v in volumes])[..., None].astype(np.float32)
  return images, masks


def slice_is_t2(volumes) -> np.ndarray:
  """f32[N]: 1.0 for the slices (in `stack_slices` order) of T2-SPIR volumes, else 0.0."""
  return np.concatenate([np.full(v.image.shape[0], float(v.sequence == "t2"), np.float32)
                         for v in volumes])


def expand_path(path) -> pathlib.Path:
  return pathlib.Path(os.path.expandvars(os.path.expanduser(str(path))))


def resolve_root(data_config) -> pathlib.Path:
  """Returns the CHAOS folder to read: `data.root`, or the synthetic default.

  With `data.root` None, the synthetic CHAOS dataset described by
  `data.synthetic` is generated once into `data.cache_dir` (and reused).
  """
  if data_config.root:
    return chaos.find_root(expand_path(data_config.root))
  from liverjax.data import synthetic  # pylint: disable=g-import-not-at-top
  s = data_config.synthetic
  out = expand_path(data_config.cache_dir) / (
      f"synthetic-ct{s.ct}-mr{s.mr}-{s.size}px-{s.slices}sl-seed{s.seed}")
  logging.info("data.root is unset: using the synthetic CHAOS dataset (%d CT + %d MR "
               "patients, %d px, %d slices, seed %d) in %s (generated if absent)",
               s.ct, s.mr, s.size, s.slices, s.seed, out)
  start = time.time()
  root = synthetic.cached_chaos(out, n_ct=s.ct, n_mr=s.mr, size=s.size,
                                slices=s.slices, seed=s.seed)
  logging.info("synthetic dataset ready in %.1fs", time.time() - start)
  return chaos.find_root(root)


def _cache_key(root: pathlib.Path, data_config, sequences) -> str:
  """A key that changes when the files (symlinked folders followed), the
  preprocessing settings or the data-shaping code change."""
  h = hashlib.sha256()
  cache.digest_tree(h, root)
  settings = dict(
      version=CACHE_VERSION, code=cache.code_digest(), root=str(root.absolute()),
      sequences=list(sequences),
      image_size=data_config.image_size, normalization=data_config.normalization,
      ct_window=list(data_config.ct_window),
      ct_window_from_dicom=data_config.ct_window_from_dicom,
      mr_percentiles=list(data_config.mr_percentiles))
  h.update(json.dumps(settings, sort_keys=True).encode())
  return h.hexdigest()[:16]


def _read_and_prepare(root, data_config, sequences):
  start = time.time()
  volumes, problems = chaos.load_volumes(root, sequences=sequences)
  prepared = [
      preprocess.prepare_volume(
          v, image_size=data_config.image_size,
          normalization=data_config.normalization,
          ct_window=tuple(data_config.ct_window),
          ct_window_from_dicom=data_config.ct_window_from_dicom,
          mr_percentiles=tuple(data_config.mr_percentiles))
      for v in volumes]
  n_slices = sum(v.image.shape[0] for v in prepared)
  seconds = time.time() - start
  logging.info("read and prepared %d volumes (%d slices) from %s in %.1fs "
               "(%.0f slices/s); %d problems", len(prepared), n_slices, root,
               seconds, n_slices / max(seconds, 1e-9), len(problems))
  return prepared, problems


def load_dataset(data_config) -> Dataset:
  """Reads, prepares, splits and caches the dataset described by `config.data`.

  Returns:
    A `Dataset`. Raises `chaos.ChaosError` when the folder holds no usable
    series of a modality the experiment needs.
  """
  root = resolve_root(data_config)
  sequences = tuple(dict.fromkeys(
      ("ct",) + tuple(domain_sequences("mr", data_config))))
  key = _cache_key(root, data_config, sequences)
  prepared, problems = _cached(expand_path(data_config.cache_dir) / "prepared", key,
                               lambda: _read_and_prepare(root, data_config, sequences))
  for p in problems:
    logging.warning("skipped: %s", p)
  splits = {}
  for modality in ("CT", "MR"):
    ids = sorted({v.patient_id for v in prepared if v.modality == modality},
                 key=_patient_sort_key)
    if ids:
      splits[modality] = chaos.split_patients(
          ids, fractions=tuple(data_config.split), seed=data_config.split_seed)
  return Dataset(root=str(root), volumes=prepared, splits=splits, problems=problems)


def _cached(folder: pathlib.Path, key: str, build):
  """(volumes, problems) from the cache file `folder/<key>.npz`, or `build()`'s,
  then written there; under the lock `folder/<key>.lock`, so a second process
  waits for the first's build and reads it instead of building it again."""
  path = folder / f"{key}.npz"
  with filelock.locked(folder / f"{key}.lock"):
    hit = cache.read(path, key, preprocess.PreparedVolume)
    if hit is not None:
      logging.info("loaded %d prepared volumes from the cache %s", len(hit[0]), path)
      return hit
    prepared, problems = build()
    try:
      cache.write(path, key, prepared, problems)
    except OSError as e:  # a full or read-only disk: run on, uncached
      logging.warning("%s: could not write the dataset cache (%s); continuing without it",
                      path, e)
  return prepared, problems


def _patient_sort_key(pid: str):
  return (0, int(pid), pid) if pid.isdigit() else (1, 0, pid)


def describe(dataset: Dataset) -> str:
  """A few lines on the dataset: patients and slices per modality and split."""
  lines = [f"data root: {dataset.root}"]
  for modality, splits in dataset.splits.items():
    parts = []
    for split, ids in splits.items():
      members = set(ids)
      n = sum(v.image.shape[0] for v in dataset.volumes
              if v.modality == modality and v.patient_id in members)
      parts.append(f"{split}: {len(ids)} patients / {n} slices")
    lines.append(f"  {modality}: " + ", ".join(parts))
  return "\n".join(lines)
