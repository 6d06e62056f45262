"""The data folders an experiment reads, and reading them (`data.root`, `data.<m>.root`,
`data.<m>.adapt_root`, the synthetic default).

`resolve_sources(config.data)` lists them (`Source`: a CHAOS or NIfTI folder, its modality,
overrides, and which patients to read); a folder named both as a modality's `root` and its
`adapt_root` is halved by patient (`halve_shared_folder`). `read_source` reads one: labelled
volumes through `chaos` / `nifti`, unlabelled ones (`adapt`) without opening a label file;
`plan_reads` lists its scans first, so that a progress line can count the scans of every
source (`read_planned(reads, tracker)`).
No TensorFlow, no JAX.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from collections.abc import Callable

from absl import logging

from liverjax import progress
from liverjax.data import chaos
from liverjax.data import dicom_series
from liverjax.data import nifti
from liverjax.data import orientation
from liverjax.data import synthetic

DOMAINS = ("ct", "mr")


def domain_modality(domain: str) -> str:
  """Maps a domain name ("ct" | "mr") to the CHAOS modality ("CT" | "MR")."""
  if domain not in DOMAINS:
    raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
  return domain.upper()


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
    adapt: True for `data.<m>.adapt_root`: target-modality scans read without labels (no
      label file is opened), never trained on with labels and never tested.
    patients: read only these patient ids (None: all).
    exclude: never read these (modality, patient id) pairs (their files are not opened).
  """
  path: pathlib.Path
  kind: str
  modality: str | None = None
  liver_label: int | None = None
  sequence: str | None = None
  adapt: bool = False
  patients: tuple[str, ...] | None = None
  exclude: tuple[tuple[str, str], ...] = ()


def as_paths(value) -> list:
  if value is None or value == "":
    return []
  if isinstance(value, (list, tuple)):
    return [v for v in value if v]
  return [value]


def make_source(path, modality: str | None = None, liver_label=None,
                sequence: str | None = None, adapt: bool = False) -> Source:
  """A Source for `path`, its kind auto-detected: a NIfTI dataset (dataset.json or
  NIfTI image/label pairs; with `adapt`, also a folder of NIfTI images alone) or a CHAOS
  folder.

  Raises:
    chaos.ChaosError: naming `path`, when it is neither.
  """
  p = expand_path(path)
  if not p.is_dir():
    raise chaos.ChaosError(f"{p}: no such folder (expected a CHAOS or NIfTI dataset folder)")
  if nifti.is_nifti_dataset(p):
    return Source(p.resolve(), "nifti", modality, liver_label, sequence, adapt=adapt)
  try:
    return Source(chaos.find_root(p), "chaos", modality, adapt=adapt)
  except chaos.ChaosError as e:
    if adapt:  # unlabelled scans: a folder of NIfTI images is enough
      try:
        nifti.unlabelled_info(p, modality, sequence)
        return Source(p.resolve(), "nifti", modality, None, sequence, adapt=True)
      except chaos.ChaosError:
        pass
    raise chaos.ChaosError(f"{p}: neither a CHAOS folder (no CT/ or MR/) nor a NIfTI dataset "
                           "(no dataset.json, no NIfTI image/label pairs)") from e


def source_patients(source: Source) -> list[str]:
  """The patient ids of a source's modality, found without reading any image or label.

  Returns:
    Sorted ids (`patient_sort_key`): NIfTI case ids, or the CHAOS patient folders of the
    source's modality (both modalities for `modality` None).
  """
  if source.kind == "nifti":
    if source.adapt:
      info = nifti.unlabelled_info(source.path, source.modality, source.sequence)
    else:
      info = nifti.dataset_info(source.path, source.modality, source.liver_label,
                                source.sequence)
    ids = {c.case_id for c in info.cases}
  else:
    ids = {r.patient_id for r in chaos.discover(source.path)
           if source.modality is None or r.modality == source.modality}
  return sorted(ids, key=patient_sort_key)


def halve_shared_folder(ids) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """The split of a folder named both as `data.<m>.root` and `data.<m>.adapt_root`.

  Args:
    ids: the folder's patient ids.

  Returns:
    (adapt, test): the ids in sorted order (`patient_sort_key`) taken alternately, the
    first to adapt: a fixed split by patient, half to adapt on without labels and half to
    test, so that no scan is both. 10 ids give 5 + 5, 9 give 5 + 4.
  """
  ids = sorted(ids, key=patient_sort_key)
  return tuple(ids[0::2]), tuple(ids[1::2])


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
  adapt = []
  for domain in DOMAINS:
    section = data_config.get(domain)
    if section is None:
      continue
    for path in as_paths(section.get("root")):
      sources.append(make_source(path, domain_modality(domain), section.get("liver_label"),
                                 section.get("sequence")))
    for path in as_paths(section.get("adapt_root")):
      adapt.append(make_source(path, domain_modality(domain), None, section.get("sequence"),
                               adapt=True))
  if not sources:
    sources.append(Source(resolve_root(data_config), "chaos"))
  return _share_folders(sources, adapt)


def _share_folders(sources: list[Source], adapt: list[Source]) -> list[Source]:
  """`sources` + `adapt`, where a folder that is both a (test) root and an adapt root of the
  same modality is halved by patient: its labelled cases are split by `halve_shared_folder`,
  the labelled source excludes the adapt half, and the adapt source reads that half plus the
  folder's images that have no label (e.g. nnU-Net imagesTs/, which can never be tested).

  Raises:
    chaos.ChaosError: naming the folder, when a labelled case of the adapt half has no
      unlabelled image of the same case id (dataset.json names its label and image
      differently): the split by patient could not keep that patient out of the test half.
  """
  out, adapt_out = list(sources), []
  for a in adapt:
    twin = next((i for i, s in enumerate(out) if s.path == a.path and not s.adapt
                 and s.modality in (None, a.modality)), None)
    if twin is None:
      adapt_out.append(a)
      continue
    domain = str(a.modality).lower()
    labelled = source_patients(dataclasses.replace(out[twin], modality=a.modality))
    unlabelled = source_patients(a)
    adapt_half, test_half = halve_shared_folder(labelled)
    labelled_ids, unlabelled_ids = set(labelled), set(unlabelled)
    missing = [i for i in adapt_half if i not in unlabelled_ids]
    if missing:
      raise chaos.ChaosError(
          f"{a.path}: both data.{domain}.root and data.{domain}.adapt_root, but labelled "
          f"case(s) {', '.join(missing)} have no image of that case id among its unlabelled "
          f"images, so the folder cannot be split by patient; give data.{domain}.adapt_root "
          "a folder of its own")
    no_label = tuple(i for i in unlabelled if i not in labelled_ids)
    logging.info("%s is both data.%s.root and data.%s.adapt_root: its patients are split "
                 "in half (sorted, alternately): adapt without labels %s; test %s%s", a.path,
                 domain, domain, ", ".join(adapt_half), ", ".join(test_half) or "none",
                 f"; images without a label, adapt: {', '.join(no_label)}" if no_label else "")
    out[twin] = dataclasses.replace(
        out[twin], exclude=out[twin].exclude + tuple((a.modality, i) for i in adapt_half))
    adapt_out.append(dataclasses.replace(a, patients=adapt_half + no_label))
  return out + adapt_out


def describe_sources(data_config) -> str:
  """The configured data folders in one line (no file access), for reports."""
  parts = [str(data_config.root)] if data_config.root else []
  for domain in DOMAINS:
    section = data_config.get(domain)
    paths = as_paths(section.get("root")) if section is not None else []
    parts += [f"{domain.upper()}: {p}" for p in paths]
    adapt = as_paths(section.get("adapt_root")) if section is not None else []
    parts += [f"{domain.upper()} unlabelled: {p}" for p in adapt]
  return "; ".join(parts) or "synthetic CHAOS (embedded default)"


def _wanted(source: Source, modality: str, patient_id: str) -> bool:
  return ((modality, patient_id) not in source.exclude
          and (source.patients is None or patient_id in source.patients))


def _read_chaos_images(ref: chaos.SeriesRef) -> chaos.Volume:
  """One CHAOS series without its masks (the Ground folder is never opened), reoriented."""
  volume, metas = dicom_series.read_image_series(ref.image_dir, ref.patient_id, ref.sequence)
  return orientation.reorient_volume(volume, metas[0]["orientation"])


@dataclasses.dataclass(frozen=True)
class Reads:
  """What reading one source takes (found on disk, nothing read yet).

  Attributes:
    source: the source.
    items: its scans to read, in order (`chaos.SeriesRef`s or `nifti.Case`s).
    read: item -> a volume (`chaos.Volume`, with its `problems`).
    where: item -> the file or folder an error names.
    what: the word for an item in the messages ("series", "case").
    label: item -> a short name for progress lines ("CT btcv_ct_006", "MR 3 t2":
      `progress.volume_label`).
    modality: item -> "CT" | "MR".
  """
  source: Source
  items: list
  read: Callable
  where: Callable
  what: str
  label: Callable
  modality: Callable


def plan_reads(source: Source, sequences) -> Reads:
  """The scans of one source to read, restricted to its modality, `sequences` and patients
  (found without reading an image); an adapt source's are read without labels (masks all
  zero, no label file opened)."""
  if source.kind == "nifti":
    if source.adapt:
      info = nifti.unlabelled_info(source.path, source.modality, source.sequence)
      read = functools.partial(nifti.read_image, info=info)
    else:
      info = nifti.dataset_info(source.path, source.modality, source.liver_label,
                                source.sequence)
      read = functools.partial(nifti.read_case, info=info)
    cases = [] if info.sequence not in sequences else [
        c for c in info.cases if _wanted(source, info.modality, c.case_id)]
    return Reads(source, cases, read, where=lambda case: case.image, what="case",
                 label=lambda case: progress.scan_label(info.modality, case.case_id,
                                                        info.sequence),
                 modality=lambda case: info.modality)
  seqs = tuple(s for s in sequences
               if source.modality is None or (s == "ct") == (source.modality == "CT"))
  refs = [r for r in chaos.discover(source.path, seqs)
          if _wanted(source, r.modality, r.patient_id)]
  return Reads(source, refs, _read_chaos_images if source.adapt else chaos.read_series,
               where=lambda ref: ref.image_dir, what="series",
               label=progress.volume_label, modality=lambda ref: ref.modality)


def read_planned(reads: Reads, tracker: progress.Progress | None = None,
                 required=("CT", "MR")) -> tuple[list, list[str]]:
  """(volumes, problems) of the scans `reads` lists (`chaos.read_each`: a scan that fails
  is reported and skipped); each scan read or skipped counts one on `tracker`.

  Raises:
    ChaosError: naming the folder, when a labelled source holds series or cases of a
      `required` modality ("CT", "MR") and not one of them is usable: the first reason is
      given (a run would otherwise train or test on nothing, or fail later on a field that
      is not the cause). A source of unlabelled scans (`adapt`) never raises this.
  """
  done = None if tracker is None else (lambda item: tracker.done(reads.label(item)))
  volumes, problems = chaos.read_each(reads.items, reads.read, where=reads.where,
                                      what=reads.what, done=done)
  for modality in () if reads.source.adapt else required:
    items = [i for i in reads.items if reads.modality(i) == modality]
    if not items or any(v.modality == modality for v in volumes):
      continue
    wheres = [str(reads.where(i)) for i in items]
    mine = [p for p in problems if any(w in p for w in wheres)] or problems
    first = next((p for p in mine if p.startswith(f"{reads.what} skipped: ")), mine[0])
    noun = reads.what if reads.what == "series" or len(items) == 1 else f"{reads.what}s"
    raise chaos.ChaosError(
        f"{reads.source.path}: none of its {len(items)} {modality} {noun} is usable, so "
        f"nothing is left to train or test on; the first: {first}")
  return volumes, problems


def read_source(source: Source, sequences, tracker: progress.Progress | None = None,
                required=("CT", "MR")) -> tuple[list, list[str]]:
  """Volumes and problems of one source, restricted to its modality, `sequences` and
  patients (`plan_reads`, then `read_planned`, which raises as it says); an adapt source is
  read without labels (masks all zero)."""
  return read_planned(plan_reads(source, sequences), tracker, required)


def patient_sort_key(pid: str):
  return (0, int(pid), pid) if pid.isdigit() else (1, 0, pid)
