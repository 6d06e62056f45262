"""The prepared dataset of an experiment: volumes read, preprocessed, split, cached.

`load_dataset(config.data)` is the one entry point. It resolves the data
sources (`resolve_sources`: `data.root`, a CHAOS or NIfTI folder holding either
modality; `data.ct.root` / `data.mr.root`, one or more folders per modality;
the synthetic CHAOS dataset generated into the cache when none is set), reads
every series with `liverjax.data.chaos` or `liverjax.data.nifti`, prepares each
volume with `liverjax.data.preprocess`, splits patients per modality into
train/val/test (`split_dataset`: a modality that is only evaluated puts all its
patients in test), and caches the result so a dataset is decoded once per
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
from liverjax.data import nifti
from liverjax.data import preprocess
from liverjax.data import synthetic

CACHE_VERSION = 2  # 2: .npz + JSON (was a pickle)
DOMAINS = ("ct", "mr")


@dataclasses.dataclass
class Dataset:
  """Prepared volumes with their split.

  Attributes:
    root: the folder(s) the data came from ("; "-separated when several).
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


def stack_organs(volumes) -> np.ndarray:
  """int32[N,S,S]: the organ label maps (`nifti.ORGANS` numbering) in `stack_slices` order.

  A volume without an organ map (CHAOS DICOM + PNG) contributes its liver mask
  as label 1 (`nifti.ORGANS[1]` is the liver): its other organs count as
  background 0. Labels are 0 wherever nothing is known.
  """
  if not volumes:
    raise ValueError("no volumes to stack")
  return np.concatenate([
      (v.organs if getattr(v, "organs", None) is not None else v.mask).astype(np.int32)
      for v in volumes])


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


@dataclasses.dataclass(frozen=True)
class Source:
  """One data folder to read.

  Attributes:
    path: a CHAOS folder (as `chaos.find_root` returns it) or a NIfTI dataset folder.
    kind: "chaos" | "nifti".
    modality: "CT" | "MR" for a per-modality source (`data.ct.root` /
      `data.mr.root`: only that modality is read, and a NIfTI dataset must be
      of it); None for `data.root` (whatever the folder holds).
    liver_label: NIfTI liver label override (None: dataset.json `labels["liver"]`).
    sequence: NIfTI MR sequence override (None: from dataset.json).
  """
  path: pathlib.Path
  kind: str
  modality: str | None = None
  liver_label: int | None = None
  sequence: str | None = None


def _as_paths(value) -> list:
  if value is None or value == "":
    return []
  if isinstance(value, (list, tuple)):
    return [v for v in value if v]
  return [value]


def make_source(path, modality: str | None = None, liver_label=None,
                sequence: str | None = None) -> Source:
  """A Source for `path`, its kind auto-detected: a NIfTI dataset (dataset.json or
  NIfTI image/label pairs) or a CHAOS folder.

  Raises:
    chaos.ChaosError: naming `path`, when it is neither.
  """
  p = expand_path(path)
  if not p.is_dir():
    raise chaos.ChaosError(f"{p}: no such folder (expected a CHAOS or NIfTI dataset folder)")
  if nifti.is_nifti_dataset(p):
    return Source(p.resolve(), "nifti", modality, liver_label, sequence)
  try:
    return Source(chaos.find_root(p), "chaos", modality)
  except chaos.ChaosError as e:
    raise chaos.ChaosError(f"{p}: neither a CHAOS folder (no CT/ or MR/) nor a NIfTI dataset "
                           "(no dataset.json, no NIfTI image/label pairs)") from e


def resolve_sources(data_config) -> list[Source]:
  """The folders to read: `data.root`, `data.ct.root`, `data.mr.root`, or the synthetic default.

  `data.root` is one folder (CHAOS, or a NIfTI dataset whose dataset.json names
  its modality); `data.ct.root` / `data.mr.root` are each a path or a tuple of
  paths, CHAOS or NIfTI, read for that modality only, with the NIfTI overrides
  `data.<ct|mr>.liver_label` and `data.mr.sequence`. With none of them set,
  the synthetic CHAOS dataset (`resolve_root`).

  Returns:
    The sources in order: data.root, then the CT roots, then the MR roots.
  """
  sources = []
  if data_config.root:
    sources.append(make_source(data_config.root))
  for domain in DOMAINS:
    section = data_config.get(domain)
    if section is None:
      continue
    for path in _as_paths(section.get("root")):
      sources.append(make_source(path, domain_modality(domain), section.get("liver_label"),
                                 section.get("sequence")))
  if not sources:
    sources.append(Source(resolve_root(data_config), "chaos"))
  return sources


def describe_sources(data_config) -> str:
  """The configured data folders in one line (no file access), for reports."""
  parts = [str(data_config.root)] if data_config.root else []
  for domain in DOMAINS:
    section = data_config.get(domain)
    paths = _as_paths(section.get("root")) if section is not None else []
    parts += [f"{domain.upper()}: {p}" for p in paths]
  return "; ".join(parts) or "synthetic CHAOS (embedded default)"


def _read_source(source: Source, sequences) -> tuple[list, list[str]]:
  """Volumes and problems of one source, restricted to its modality and `sequences`."""
  if source.kind == "nifti":
    volumes, problems = nifti.load_volumes(source.path, source.modality, source.liver_label,
                                           source.sequence)
    return [v for v in volumes if v.sequence in sequences], problems
  seqs = tuple(s for s in sequences
               if source.modality is None or (s == "ct") == (source.modality == "CT"))
  return chaos.load_volumes(source.path, sequences=seqs)


def _unique_ids(per_source: list[tuple[Source, list]]) -> list:
  """All volumes, a patient id already used by an earlier source (same modality)
  prefixed with its source folder's name (`<folder>/<id>`)."""
  seen, out = set(), []
  for source, volumes in per_source:
    ids = {(v.modality, v.patient_id) for v in volumes}
    for v in volumes:
      if (v.modality, v.patient_id) in seen:
        v = dataclasses.replace(v, patient_id=f"{source.path.name}/{v.patient_id}")
      out.append(v)
    seen |= ids
  return out


def _cache_key(sources: list[Source], data_config, sequences) -> str:
  """A key that changes when the files of any source (symlinked folders followed),
  the preprocessing settings or the data-shaping code change."""
  h = hashlib.sha256()
  for source in sources:
    cache.digest_tree(h, source.path)
  settings = dict(
      version=CACHE_VERSION, code=cache.code_digest(), sequences=list(sequences),
      sources=[[str(s.path.absolute()), s.kind, s.modality, s.liver_label, s.sequence]
               for s in sources],
      image_size=data_config.image_size, normalization=data_config.normalization,
      ct_window=list(data_config.ct_window),
      ct_window_from_dicom=data_config.ct_window_from_dicom,
      mr_percentiles=list(data_config.mr_percentiles),
      field_of_view=data_config.get("field_of_view"))
  h.update(json.dumps(settings, sort_keys=True).encode())
  return h.hexdigest()[:16]


def _read_and_prepare(sources, data_config, sequences):
  start = time.time()
  per_source, problems = [], []
  for source in sources:
    vols, probs = _read_source(source, sequences)
    per_source.append((source, vols))
    problems += probs
  volumes = _unique_ids(per_source)
  prepared = [
      preprocess.prepare_volume(
          v, image_size=data_config.image_size,
          normalization=data_config.normalization,
          ct_window=tuple(data_config.ct_window),
          ct_window_from_dicom=data_config.ct_window_from_dicom,
          mr_percentiles=tuple(data_config.mr_percentiles),
          field_of_view=data_config.get("field_of_view"))
      for v in volumes]
  n_slices = sum(v.image.shape[0] for v in prepared)
  seconds = time.time() - start
  logging.info("read and prepared %d volumes (%d slices) from %s in %.1fs "
               "(%.0f slices/s); %d problems", len(prepared), n_slices,
               ", ".join(str(s.path) for s in sources),
               seconds, n_slices / max(seconds, 1e-9), len(problems))
  return prepared, problems


def load_dataset(data_config, trained_domains=None) -> Dataset:
  """Reads, prepares, splits and caches the dataset described by `config.data`.

  Args:
    data_config: `config.data`.
    trained_domains: the domains the experiment trains on (None: `data.source`;
      the CycleGAN trains on both); see `split_dataset`.

  Returns:
    A `Dataset`. Raises `chaos.ChaosError` naming the folder when a data root
    is not a CHAOS / NIfTI folder, or a NIfTI dataset.json is bad.
  """
  sources = resolve_sources(data_config)
  sequences = tuple(dict.fromkeys(
      ("ct",) + tuple(domain_sequences("mr", data_config))))
  key = _cache_key(sources, data_config, sequences)
  prepared, problems = _cached(expand_path(data_config.cache_dir) / "prepared", key,
                               lambda: _read_and_prepare(sources, data_config, sequences))
  for p in problems:
    logging.warning("skipped: %s", p)
  for v in prepared:
    if v.liver_cut > 0:
      logging.warning("%s (%s): the %g mm field of view (data.field_of_view) cuts %.1f %% of "
                      "its liver; training and evaluation see the rest", v.patient_id,
                      v.modality, data_config.field_of_view, 100 * v.liver_cut)
  splits = split_dataset(prepared, data_config, trained_domains)
  return Dataset(root="; ".join(str(s.path) for s in sources), volumes=prepared,
                 splits=splits, problems=problems)


def test_only_modalities(data_config, trained_domains=None) -> set[str]:
  """Modalities whose patients all go to the test split.

  With `data.target_test_only` (default True), every target domain that is not
  trained on (`trained_domains`, default `(data.source,)`): it is only
  evaluated, so every one of its patients is a test patient.
  """
  if not data_config.get("target_test_only", True):
    return set()
  trained = tuple(trained_domains) if trained_domains is not None else (data_config.source,)
  return {domain_modality(d) for d in data_config.targets if d not in trained}


def split_dataset(volumes, data_config, trained_domains=None) -> dict:
  """Patient splits per modality.

  Args:
    volumes: prepared volumes (patient_id, modality).
    data_config: `config.data` (split, split_seed, source, targets, target_test_only).
    trained_domains: see `test_only_modalities`.

  Returns:
    modality -> {"train", "val", "test"} -> sorted patient ids: a test-only
    modality has every patient in "test"; the others follow `data.split`
    (`chaos.split_patients`).
  """
  test_only = test_only_modalities(data_config, trained_domains)
  splits = {}
  for modality in ("CT", "MR"):
    ids = sorted({v.patient_id for v in volumes if v.modality == modality},
                 key=_patient_sort_key)
    if not ids:
      continue
    if modality in test_only:
      splits[modality] = {"train": [], "val": [], "test": ids}
    else:
      splits[modality] = chaos.split_patients(
          ids, fractions=tuple(data_config.split), seed=data_config.split_seed)
  return splits


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
