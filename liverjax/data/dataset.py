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
import pathlib
import time

import numpy as np
from absl import logging

from liverjax import progress
from liverjax.data import cache
from liverjax.data import chaos
from liverjax.data import filelock
from liverjax.data import preprocess
from liverjax.data import sources as sources_lib

CACHE_VERSION = 2  # 2: .npz + JSON (was a pickle)
DOMAINS = sources_lib.DOMAINS
domain_modality = sources_lib.domain_modality
expand_path = sources_lib.expand_path


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


def _unique_ids(per_source: list[tuple[sources_lib.Source, list]]) -> tuple[list, list[bool]]:
  """(all volumes, whether each is labelled): a patient id already used by an earlier source
  (same modality) is prefixed with its source folder's name (`<folder>/<id>`), and that of
  an adapt (unlabelled) source also with "unlabelled:" when that is still taken."""
  seen, out, labelled = set(), [], []
  for source, volumes in per_source:
    ids = {(v.modality, v.patient_id) for v in volumes}
    for v in volumes:
      if (v.modality, v.patient_id) in seen:
        v = dataclasses.replace(v, patient_id=f"{source.path.name}/{v.patient_id}")
      if (v.modality, v.patient_id) in seen:
        v = dataclasses.replace(v, patient_id=f"unlabelled:{v.patient_id}")
      out.append(v)
      labelled.append(not source.adapt)
    seen |= ids | {(v.modality, v.patient_id) for v in out}
  return out, labelled


def _cache_key(sources: list[sources_lib.Source], data_config, sequences,
               required=("CT", "MR")) -> str:
  """A key that changes when the files of any source (symlinked folders followed),
  the preprocessing settings, the modalities required (`sources.read_source`) or the
  data-shaping code change."""
  h = hashlib.sha256()
  for source in sources:
    cache.digest_tree(h, source.path)
  settings = dict(
      version=CACHE_VERSION, code=cache.code_digest(), sequences=list(sequences),
      required=sorted(required),
      sources=[[str(s.path.absolute()), s.kind, s.modality, s.liver_label, s.sequence,
                s.adapt, s.patients, [list(e) for e in s.exclude]] for s in sources],
      image_size=data_config.image_size, normalization=data_config.normalization,
      ct_window=list(data_config.ct_window),
      ct_window_from_dicom=data_config.ct_window_from_dicom,
      mr_percentiles=list(data_config.mr_percentiles),
      field_of_view=data_config.get("field_of_view"))
  h.update(json.dumps(settings, sort_keys=True).encode())
  return h.hexdigest()[:16]


def _read_and_prepare(sources, data_config, sequences, required):
  """(prepared volumes, problems) of every source; logs progress lines while reading (the
  scans of all sources counted together: "read 3/19 scans (CT btcv_ct_006) ... ETA"), then
  while preparing ("prepared 3/19 volumes (CT btcv_ct_006) ... ETA"), and a summary line."""
  start = time.time()
  plans = [sources_lib.plan_reads(source, sequences) for source in sources]
  total = sum(len(reads.items) for reads in plans)
  logging.info("reading %d scans from %s", total, ", ".join(str(s.path) for s in sources))
  tracker = progress.Progress(total, "read", "scans")
  per_source, problems = [], []
  for reads in plans:
    vols, probs = sources_lib.read_planned(reads, tracker, required)
    per_source.append((reads.source, vols))
    problems += probs
  volumes, labelled = _unique_ids(per_source)
  tracker = progress.Progress(len(volumes), "prepared", "volumes")
  prepared = []
  for v, known in zip(volumes, labelled):
    prepared.append(dataclasses.replace(preprocess.prepare_volume(
        v, image_size=data_config.image_size,
        normalization=data_config.normalization,
        ct_window=tuple(data_config.ct_window),
        ct_window_from_dicom=data_config.ct_window_from_dicom,
        mr_percentiles=tuple(data_config.mr_percentiles),
        field_of_view=data_config.get("field_of_view")), labelled=known))
    tracker.done(progress.volume_label(v))
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
    is not a CHAOS / NIfTI folder, a NIfTI dataset.json is bad, or a labelled
    folder has no usable series / case of a modality the run trains or tests on
    (`sources.read_source`).
  """
  sources = sources_lib.resolve_sources(data_config)
  sequences = tuple(dict.fromkeys(
      ("ct",) + tuple(domain_sequences("mr", data_config))))
  trained = tuple(trained_domains) if trained_domains is not None else (data_config.source,)
  required = {domain_modality(d) for d in (*trained, *data_config.targets)}
  key = _cache_key(sources, data_config, sequences, required)
  prepared, problems = _cached(expand_path(data_config.cache_dir) / "prepared", key,
                               lambda: _read_and_prepare(sources, data_config, sequences,
                                                         required))
  for p in problems:
    logging.warning("data: %s", p)
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
  evaluated, so every one of its patients is a test patient. Always, a modality
  with unlabelled scans (`data.<m>.adapt_root`): its labelled scans (`root`) are
  test only.
  """
  adapting = {domain_modality(d) for d in DOMAINS
              if data_config.get(d) is not None
              and sources_lib.as_paths(data_config[d].get("adapt_root"))}
  if not data_config.get("target_test_only", True):
    return adapting
  trained = tuple(trained_domains) if trained_domains is not None else (data_config.source,)
  return adapting | {domain_modality(d) for d in data_config.targets if d not in trained}


def split_dataset(volumes, data_config, trained_domains=None) -> dict:
  """Patient splits per modality.

  Args:
    volumes: prepared volumes (patient_id, modality).
    data_config: `config.data` (split, split_seed, source, targets, target_test_only).
    trained_domains: see `test_only_modalities`.

  Returns:
    modality -> {"train", "val", "test", "adapt"} -> sorted patient ids: a test-only
    modality has every labelled patient in "test"; the others follow `data.split`
    (`chaos.split_patients`); the unlabelled volumes (`data.<m>.adapt_root`) are in "adapt"
    and in no other split, so they are never trained on with labels nor tested.
  """
  test_only = test_only_modalities(data_config, trained_domains)
  splits = {}
  for modality in ("CT", "MR"):
    ids = sorted({v.patient_id for v in volumes if v.modality == modality and v.labelled},
                 key=sources_lib.patient_sort_key)
    adapt = sorted({v.patient_id for v in volumes if v.modality == modality
                    and not v.labelled}, key=sources_lib.patient_sort_key)
    if not ids and not adapt:
      continue
    folds = int(data_config.get("folds", 0))
    if modality in test_only or not ids:
      splits[modality] = {"train": [], "val": [], "test": ids}
    elif folds:
      splits[modality] = fold_split(ids, folds, int(data_config.fold),
                                    tuple(data_config.split), data_config.split_seed)
    else:
      splits[modality] = chaos.split_patients(
          ids, fractions=tuple(data_config.split), seed=data_config.split_seed)
    splits[modality]["adapt"] = adapt
  return splits


def fold_split(ids, folds: int, fold: int, fractions=(0.8, 0.2, 0.0),
               seed: int = 0) -> dict[str, list[str]]:
  """The k-fold split of one modality's patients (`data.folds`, `data.fold`).

  The patients, shuffled by `seed`, are dealt to `folds` folds in turn (sizes differ by at most
  one); fold `fold` is the test split, and the other patients are split into train / val by
  the (train, val) proportions of `fractions` (`chaos.split_patients`, same seed). Over the
  folds every patient is tested exactly once and never trains or selects the checkpoint of
  the run that tests it.

  Args:
    ids: patient ids (at least `folds`).
    folds: k >= 2; fold: 0 <= fold < k.
    fractions: (train, val, test); the test proportion is not used.

  Returns:
    {"train", "val", "test"}: disjoint sorted id lists covering `ids`.
  """
  ids = sorted(set(str(i) for i in ids), key=sources_lib.patient_sort_key)
  if not 2 <= folds <= len(ids) or not 0 <= fold < folds:
    raise ValueError(f"data.folds={folds}, data.fold={fold}: need 2 <= folds <= {len(ids)} "
                     f"patients and 0 <= fold < folds")
  order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
  test = order[fold::folds]
  rest = chaos.split_patients([i for i in ids if i not in test],
                              fractions=(fractions[0], fractions[1], 0.0), seed=seed)
  return {"train": rest["train"], "val": rest["val"],
          "test": sorted(test, key=sources_lib.patient_sort_key)}


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


def describe(dataset: Dataset) -> str:
  """A few lines on the dataset: patients and slices per modality and split."""
  lines = [f"data root: {dataset.root}"]
  for modality, splits in dataset.splits.items():
    parts = []
    for split, ids in splits.items():
      if split == "adapt" and not ids:
        continue
      members = set(ids)
      n = sum(v.image.shape[0] for v in dataset.volumes
              if v.modality == modality and v.patient_id in members)
      parts.append(f"{split}: {len(ids)} patients / {n} slices")
    lines.append(f"  {modality}: " + ", ".join(parts)
                 + (" (adapt: unlabelled, never tested)" if splits.get("adapt") else ""))
  return "\n".join(lines)
