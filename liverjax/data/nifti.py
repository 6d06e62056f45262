"""Reader for NIfTI datasets: the MSD / nnU-Net raw layout and plain image/label folders.

numpy + nibabel only (no TensorFlow, no JAX).

Layouts (`root` is the dataset folder):
  * MSD / nnU-Net: `dataset.json` (`channel_names` {"0": "CT"}, `labels`
    {"background": 0, "liver": 6, ...}, optionally `training` [{image, label}]
    and `file_ending`), `imagesTr/<case>_0000.nii.gz`, `labelsTr/<case>.nii.gz`.
    Cases come from `training` when present, else from the `_0000` files of
    `imagesTr/`. Only channel 0 is read.
  * Plain: `images/` (or `imagesTr/`, `image/`) and `labels/` (or `labelsTr/`,
    `label/`, `masks/`) with one file per case, paired by case name (a `_0000`
    channel suffix is ignored); or one folder per case holding `image.nii[.gz]`
    and `label.nii[.gz]` (or `mask` / `seg` / `segmentation`). No dataset.json:
    the modality is the caller's, and so is the liver label
    (`data.<m>.liver_label`); without it only binary (0/1) label maps are read,
    1 being the liver, and a case whose label map holds other values is refused
    (on BTCV, for one, label 1 is the spleen).

Every volume is returned as a `NiftiVolume` (a `chaos.Volume` plus the
multi-organ map) in the display orientation of `liverjax.data.orientation`
(rows anterior -> posterior, columns right -> left, slices head -> feet), with
spacing (z, y, x) mm along those axes. `image` is float32 with scl_slope /
scl_inter applied (CT: HU); `mask` is the binary liver mask (uint8 0/1);
`organs` maps every labelled organ to its index in `ORGANS` (0 background,
labels with no canonical name dropped and reported).

Bad input raises `ChaosError` naming the file and the problem: a bad
dataset.json (or a path in it that leaves the dataset folder: `dataset_path`), a
missing, truncated or unreadable image or label (each named as itself), a header
that declares more voxels than its file holds, an affine with a zero or non-finite
axis, an image/label shape mismatch, a label map without the liver label, more
than half of the voxels non-finite (`volume.finite_image`: fewer are replaced and
reported). `load_volumes` reports (absl logging + return value) and skips bad
cases; a bad dataset.json stops it.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any

import numpy as np
from absl import logging

from liverjax.data import chaos
from liverjax.data import nifti_file
from liverjax.data import orientation

ChaosError = chaos.ChaosError

# Opening one file, with its damage named: `nifti_file` (re-exported here).
load_image = nifti_file.load_image
read_image_array = nifti_file.read_image_array

# Canonical organ names of the multi-organ map `NiftiVolume.organs` (index = value).
ORGANS = ("background", "liver", "spleen", "kidney_r", "kidney_l", "gallbladder",
          "esophagus", "stomach", "aorta", "ivc", "portal_splenic_vein", "pancreas",
          "adrenal_r", "adrenal_l", "duodenum", "bladder")
_PAIRED = ("kidney", "adrenal")  # organs named with a side
_ALIASES = {
    "inferior_vena_cava": "ivc", "postcava": "ivc", "vena_cava_inferior": "ivc",
    "portal_and_splenic_vein": "portal_splenic_vein",
    "portal_vein_and_splenic_vein": "portal_splenic_vein",
    "gall_bladder": "gallbladder", "oesophagus": "esophagus",
    "urinary_bladder": "bladder", "adrenal_gland": "adrenal", "kidneys": "kidney",
}
_EXTENSIONS = (".nii.gz", ".nii")
_IMAGE_DIRS = ("imagesTr", "images", "image", "imgs")
_LABEL_DIRS = ("labelsTr", "labels", "label", "masks", "mask", "segmentations")
_CASE_IMAGE_STEMS = ("image", "img", "volume")
_CASE_LABEL_STEMS = ("label", "labels", "mask", "seg", "segmentation")
# Channel names of modalities that are neither CT nor MR: refused, never read as either.
_OTHER_MODALITIES = re.compile(r"^(pet|spect|nm|us|ultrasound|x-?ray|cr|dx|mg|xa|oct)\b")


@dataclasses.dataclass
class NiftiVolume(chaos.Volume):
  """A `chaos.Volume` read from NIfTI, plus the multi-organ label map.

  `mask` is the binary liver mask (uint8 0/1); `organs` is uint8 [Z,H,W] with
  values indexing `ORGANS` (None when the label map has only the liver).
  `image_files` / `mask_files` hold the one image / label file.
  """
  organs: np.ndarray | None = None


@dataclasses.dataclass
class Case:
  """One image/label pair found on disk, not read yet (label None: an unlabelled image)."""
  case_id: str
  image: pathlib.Path
  label: pathlib.Path | None


@dataclasses.dataclass
class DatasetInfo:
  """What a NIfTI dataset folder says about itself (dataset.json, or the caller for plain folders)."""
  root: pathlib.Path
  modality: str  # "CT" | "MR"
  sequence: str  # "ct" | "t1_in" | "t1_out" | "t2"
  labels: dict[str, int]  # dataset label name -> value
  # The liver's value; None for a plain folder given no `data.<m>.liver_label`: its label
  # maps must then be binary (0/1, 1 the liver), checked per case by `read_case`.
  liver_label: int | None
  cases: list[Case]
  channel: str = ""  # dataset.json's name of channel 0 ("" without dataset.json)


def _strip_ext(name: str) -> str | None:
  for ext in _EXTENSIONS:
    if name.endswith(ext):
      return name[: -len(ext)]
  return None


def canonical_organ(name: str) -> str | None:
  """The `ORGANS` name of a dataset label name ("right_kidney" -> "kidney_r"), or None."""
  tokens = [t for t in re.split(r"[^a-z0-9]+", str(name).lower()) if t]
  side = "r" if "right" in tokens or "rt" in tokens else (
      "l" if "left" in tokens or "lt" in tokens else None)
  base = "_".join(t for t in tokens if t not in ("right", "left", "rt", "lt", "gland"))
  base = _ALIASES.get(base, base)
  if base in _PAIRED and side:
    base = f"{base}_{side}"
  return base if base in ORGANS else None


def _modality_and_sequence(channel: str, hint: str, where,
                           fallback: str | None = None) -> tuple[str, str]:
  """("CT", "ct") or ("MR", <sequence>) from a channel name ("CT", "MR", "T2", "T1_in"...);
  a name that says neither ("zscore", "noNorm") takes the `fallback` modality when given."""
  c = str(channel).strip().lower()
  if _OTHER_MODALITIES.match(c):
    raise ChaosError(f"{where}: channel 0 is {channel!r}, neither CT nor MR; liverjax reads "
                     "CT and MR scans only")
  if c in ("ct", "cect", "ncct") or c.startswith("ct") or (
      fallback == "CT" and not re.search(r"mr|t1|t2|spir|flair|dwi|adc", c)):
    return "CT", "ct"
  if not re.search(r"mr|t1|t2|spir|flair|dwi|adc", c):
    if fallback != "MR":
      raise ChaosError(f"{where}: channel 0 is {channel!r}; expected CT or an MR name "
                       "(MR, MRI, T1, T2, T2SPIR, ...)")
    logging.warning("%s: channel 0 is %r, which names no modality; read as MR (the folder "
                    "was given as an MR source), sequence %s", where, channel,
                    "t1" if "t1" in hint.lower() else "t2")
  text = f"{c} {hint.lower()}"
  if "t2" in text:
    return "MR", "t2"
  if "t1" in text:
    return "MR", "t1_out" if re.search(r"out|opp", text) else "t1_in"
  return "MR", "t2"


def _int_labels(labels: Any, where) -> dict[str, int]:
  if not isinstance(labels, dict) or not labels:
    raise ChaosError(f"{where}: 'labels' must be a non-empty object name -> value")
  out = {}
  for name, value in labels.items():
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
      raise ChaosError(f"{where}: label {name!r} has value {value!r}; expected an integer "
                       "(region-based nnU-Net labels are not supported)")
    out[str(name)] = int(value)
  return out


def _liver_label(labels: dict[str, int], override, where) -> int:
  if override is not None:
    return int(override)
  for name, value in labels.items():
    if canonical_organ(name) == "liver":
      return value
  raise ChaosError(f"{where}: no 'liver' among labels {sorted(labels)}; "
                   "set the liver label (data.<ct|mr>.liver_label)")


def dataset_path(root: pathlib.Path, entry, where) -> pathlib.Path:
  """A path listed in dataset.json, kept inside the dataset folder.

  The rule is the one the cache key follows (`cache.digest_tree`): what it covers is every
  file found by walking down from the folder, directory links followed. So an entry must be
  relative and walk down: no absolute path, no `..` component (which a folder link inside
  would not even take back to where it seems to). A file or folder link inside the folder
  is followed, as the key follows it.

  Args:
    root: the dataset folder.
    entry: the path as dataset.json gives it (e.g. "./imagesTr/la_003.nii.gz").
    where: dataset.json, named in the message.

  Returns:
    `root / entry` (not resolved).

  Raises:
    ChaosError: naming dataset.json and the entry, when it is not a string, is absolute
      or holds `..`.
  """
  if not isinstance(entry, str) or not entry.strip():
    raise ChaosError(f"{where}: path {entry!r} is not a file name")
  rel = pathlib.PurePosixPath(entry.replace("\\", "/"))
  if rel.is_absolute() or pathlib.PureWindowsPath(entry).drive or ".." in rel.parts:
    raise ChaosError(f"{where}: path {entry!r} leaves the dataset folder {root}; every "
                     "image and label must lie inside it (relative, no '..')")
  return root / pathlib.Path(*rel.parts)


def _msd_cases(root: pathlib.Path, meta: dict, where) -> list[Case]:
  ending = str(meta.get("file_ending", ".nii.gz"))
  cases = []
  training = meta.get("training")
  if training:
    if not isinstance(training, list):
      raise ChaosError(f"{where}: 'training' must be a list of {{image, label}}")
    for i, entry in enumerate(training):
      if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
        raise ChaosError(f"{where}: training[{i}] must have 'image' and 'label'")
      image = dataset_path(root, entry["image"], where)
      if not image.exists():  # MSD lists <case>.nii.gz for the 4D file; nnU-Net has _0000
        stem = _strip_ext(image.name) or image.name
        alt = image.with_name(f"{stem}_0000{ending}")
        image = alt if alt.exists() else image
      label = dataset_path(root, entry["label"], where)
      case_id = _strip_ext(label.name) or label.name
      cases.append(Case(case_id, image, label))
    return cases
  images_dir = root / "imagesTr"
  if not images_dir.is_dir():
    raise ChaosError(f"{images_dir}: missing (dataset.json lists no 'training' cases)")
  for f in sorted(images_dir.iterdir()):
    if f.name.endswith(f"_0000{ending}"):
      case_id = f.name[: -len(f"_0000{ending}")]
      cases.append(Case(case_id, f, root / "labelsTr" / f"{case_id}{ending}"))
  if not cases:
    raise ChaosError(f"{images_dir}: no <case>_0000{ending} image files")
  return cases


def read_dataset_json(root, liver_label=None, modality: str | None = None) -> DatasetInfo:
  """Reads the `dataset.json` of an MSD / nnU-Net dataset folder.

  Args:
    root: the dataset folder.
    liver_label: the liver's label value; None: `labels["liver"]` (any name
      whose canonical organ is the liver).
    modality: "CT" | "MR", used when channel 0's name names no modality
      (nnU-Net normalisation names such as "zscore"); None: such a name is an error.

  Returns:
    DatasetInfo with the cases listed (files not opened).

  Raises:
    ChaosError: naming dataset.json: unreadable, not JSON, no `channel_names`
      / `labels`, no liver label, an unknown channel.
  """
  root = pathlib.Path(root)
  path = root / "dataset.json"
  try:
    meta = json.loads(path.read_text())
  except OSError as e:
    raise ChaosError(f"{path}: cannot read ({e.strerror or e})") from e
  except json.JSONDecodeError as e:
    raise ChaosError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
  if not isinstance(meta, dict):
    raise ChaosError(f"{path}: expected a JSON object")
  channels = meta.get("channel_names", meta.get("modality"))
  if not isinstance(channels, dict) or not channels:
    raise ChaosError(f"{path}: no 'channel_names' (e.g. {{\"0\": \"CT\"}})")
  channel = channels.get("0", channels.get(0, next(iter(channels.values()))))
  modality, sequence = _modality_and_sequence(
      channel, f"{meta.get('name', '')} {meta.get('description', '')}", path, modality)
  labels = _int_labels(meta.get("labels"), path)
  liver = _liver_label(labels, liver_label, path)
  return DatasetInfo(root=root, modality=modality, sequence=sequence, labels=labels,
                     liver_label=liver, cases=_msd_cases(root, meta, path),
                     channel=str(channel))


def _nifti_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  out = {}
  for f in sorted(folder.iterdir()):
    stem = _strip_ext(f.name)
    if stem is not None and f.is_file():
      out[re.sub(r"_0000$", "", stem)] = f
  return out


def _plain_cases(root: pathlib.Path) -> list[Case]:
  image_dir = next((root / d for d in _IMAGE_DIRS if (root / d).is_dir()), None)
  label_dir = next((root / d for d in _LABEL_DIRS if (root / d).is_dir()), None)
  if image_dir is not None and label_dir is not None:
    labels = _nifti_files(label_dir)
    return [Case(cid, f, labels.get(cid, label_dir / f.name.replace("_0000", "")))
            for cid, f in _nifti_files(image_dir).items()]
  cases = []
  for d in sorted(p for p in root.iterdir() if p.is_dir()):
    files = _nifti_files(d)
    image = next((files[s] for s in _CASE_IMAGE_STEMS if s in files), None)
    if image is None:
      continue
    label = next((files[s] for s in _CASE_LABEL_STEMS if s in files), d / "label.nii.gz")
    cases.append(Case(d.name, image, label))
  return cases


def is_nifti_dataset(root) -> bool:
  """True when `root` is a folder with a dataset.json or NIfTI image/label pairs."""
  root = pathlib.Path(root)
  if not root.is_dir():
    return False
  return (root / "dataset.json").is_file() or bool(_plain_cases(root))


def dataset_info(root, modality: str | None = None, liver_label=None,
                 sequence: str | None = None) -> DatasetInfo:
  """The DatasetInfo of an MSD / nnU-Net folder or a plain image/label folder.

  Args:
    root: the dataset folder.
    modality: "CT" | "MR": required for a plain folder, checked against
      dataset.json otherwise (None: no check).
    liver_label: overrides `labels["liver"]`; for a plain folder, its liver label (None:
      its label maps must be binary, 1 the liver; `read_case` refuses one that is not).
    sequence: overrides the MR sequence taken from dataset.json (e.g. "t2").

  Raises:
    ChaosError: naming the folder or dataset.json: not a NIfTI dataset, a
      modality that is not the one asked for, a bad dataset.json.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise ChaosError(f"{root}: no such folder (expected a NIfTI dataset folder)")
  want = str(modality).upper() if modality is not None else None
  if (root / "dataset.json").is_file():
    info = read_dataset_json(root, liver_label, want)
    if want is not None and info.modality != want:
      raise ChaosError(f"{root / 'dataset.json'}: channel 0 is {info.modality}, but the "
                       f"folder was given as a {want} source")
  else:
    cases = _plain_cases(root)
    if not cases:
      raise ChaosError(f"{root}: no dataset.json and no NIfTI image/label pairs "
                       "(images/ + labels/, or <case>/image.nii.gz + label.nii.gz)")
    if want not in ("CT", "MR"):
      raise ChaosError(f"{root}: a NIfTI folder without dataset.json needs its modality "
                       "(give it as data.ct.root or data.mr.root)")
    liver = None if liver_label is None else int(liver_label)
    info = DatasetInfo(root=root, modality=want, sequence="ct" if want == "CT" else "t2",
                       labels={"liver": 1 if liver is None else liver}, liver_label=liver,
                       cases=cases)
  if sequence is not None and info.modality == "MR":
    if sequence not in chaos.SEQUENCES or sequence == "ct":
      raise ChaosError(f"{root}: MR sequence {sequence!r}; expected t1_in, t1_out or t2")
    info.sequence = sequence
  return info


def organ_map(label: np.ndarray, labels: dict[str, int]) -> tuple[np.ndarray, list[str]]:
  """Maps a dataset label map to `ORGANS` indices.

  Args:
    label: integer label map, any shape.
    labels: dataset label name -> value (dataset.json `labels`).

  Returns:
    (organs uint8 same shape, the dataset names with no canonical organ, dropped to 0).
  """
  lut = np.zeros(max([0, *labels.values(), int(label.max(initial=0))]) + 1, np.uint8)
  dropped = []
  for name, value in labels.items():
    organ = canonical_organ(name)
    if organ is None:
      if name.lower() not in ("background", "bg", "void"):
        dropped.append(name)
      continue
    if value >= 0:
      lut[value] = ORGANS.index(organ)
  return lut[np.clip(label, 0, None)], dropped


def read_case(case: Case, info: DatasetInfo) -> NiftiVolume:
  """Reads one image/label pair into the display orientation.

  Args:
    case: from `DatasetInfo.cases`.
    info: the dataset's modality, sequence and labels.

  Returns:
    A NiftiVolume: image float32 [Z,H,W] (scl_slope/scl_inter applied: HU for
    CT; non-finite voxels replaced, `read_image_array`), mask uint8 [Z,H,W] 0/1
    (label == liver label), organs uint8 [Z,H,W] (`ORGANS` indices; None for a
    liver-only label map), spacing (z,y,x) mm.

  Raises:
    ChaosError: naming the file: image or label missing / unreadable / truncated /
      not 3D, label shape different from the image's, a label affine that does not
      match the image's, no voxel with the liver label (the case is refused, as the
      CHAOS reader refuses a series whose masks are all empty), a non-binary label map
      where the liver label is not known (`info.liver_label` None).
  """
  image_img = nifti_file.load(case.image, "image")
  label_img = nifti_file.load(case.label, "label")
  if label_img.shape != image_img.shape:
    raise ChaosError(f"{case.label}: label shape {label_img.shape} differs from the image "
                     f"shape {image_img.shape} of {case.image.name}")
  if not np.allclose(label_img.affine, image_img.affine, atol=1e-2):
    raise ChaosError(f"{case.label}: label affine differs from the affine of "
                     f"{case.image.name} (not the same voxel grid)")
  r = orientation.to_display(orientation.nifti_directions(image_img.affine))
  label = nifti_file.read_data(label_img, case.label, "label", lambda i: np.asarray(i.dataobj))
  if not np.isfinite(label).all():
    raise ChaosError(f"{case.label}: label map with non-finite values (NaN or Inf)")
  label = np.rint(label).astype(np.int32)
  liver = info.liver_label
  if liver is None:
    values = sorted(int(v) for v in np.unique(label))
    if set(values) - {0, 1}:
      raise ChaosError(
          f"{case.label}: label values {values[:8]}{'...' if len(values) > 8 else ''} in a "
          f"folder without dataset.json: which one is the liver is unknown (on BTCV 1 is "
          f"the spleen); set data.{info.modality.lower()}.liver_label, or give binary "
          "0/1 label maps")
    liver = 1
  mask = (label == liver).astype(np.uint8)
  if not mask.any():
    raise ChaosError(f"{case.label}: no voxel with the liver label {liver} (values "
                     f"{sorted(int(v) for v in np.unique(label))[:8]}); case skipped")
  image, problems = nifti_file.read_image_array(image_img, case.image)
  image = np.ascontiguousarray(orientation.apply(image, r))
  label = np.ascontiguousarray(orientation.apply(label, r))
  mask = np.ascontiguousarray(orientation.apply(mask, r))
  organs = None
  if len(info.labels) > 2 or set(np.unique(label)) - {0, liver}:
    organs, dropped = organ_map(label, info.labels)
    if dropped:
      problems.append(f"{case.label}: labels {dropped} have no canonical organ name; "
                      "left out of the organ map")
  zooms = tuple(float(z) for z in image_img.header.get_zooms()[:3])
  return NiftiVolume(
      patient_id=case.case_id, modality=info.modality, sequence=info.sequence,
      image=image, mask=mask, spacing=orientation.apply_spacing(zooms, r), window=None,
      image_files=[str(case.image)], mask_files=[str(case.label)], problems=problems,
      organs=organs)


_UNLABELLED_IMAGE_DIRS = ("imagesTr", "imagesTs", "images", "image", "imgs")


def unlabelled_info(root, modality: str | None = None,
                    sequence: str | None = None) -> DatasetInfo:
  """The images of a NIfTI folder that are used without labels (`data.<m>.adapt_root`).

  No label file is listed or opened. With a dataset.json, its channel 0 gives the modality
  and sequence (its labels are not needed); without one, `modality` must be given. The
  images are the NIfTI files of imagesTr/, imagesTs/, images/ (MSD / nnU-Net `_0000` suffix
  dropped from the case id) or, when there is none of these, of the folder itself.

  Args:
    root: the folder.
    modality: "CT" | "MR": required without dataset.json, checked against it otherwise.
    sequence: overrides the MR sequence (e.g. "t2").

  Returns:
    DatasetInfo whose cases have `label` None (labels and liver_label are empty / 0).

  Raises:
    ChaosError: naming the folder or dataset.json: no image, an unknown modality, a
      modality other than the one asked for.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise ChaosError(f"{root}: no such folder (expected a folder of NIfTI images)")
  want = str(modality).upper() if modality is not None else None
  meta_path = root / "dataset.json"
  if meta_path.is_file():
    try:
      meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ChaosError(f"{meta_path}: unreadable or not JSON ({e})") from e
    channels = meta.get("channel_names", meta.get("modality")) if isinstance(meta, dict) else None
    if not isinstance(channels, dict) or not channels:
      raise ChaosError(f"{meta_path}: no 'channel_names' (e.g. {{\"0\": \"CT\"}})")
    channel = channels.get("0", channels.get(0, next(iter(channels.values()))))
    mod, seq = _modality_and_sequence(
        channel, f"{meta.get('name', '')} {meta.get('description', '')}", meta_path, want)
    if want is not None and mod != want:
      raise ChaosError(f"{meta_path}: channel 0 is {mod}, but the folder was given as a "
                       f"{want} source")
  elif want in ("CT", "MR"):
    mod, seq = want, "ct" if want == "CT" else "t2"
  else:
    raise ChaosError(f"{root}: a NIfTI folder without dataset.json needs its modality "
                     "(give it as data.ct.adapt_root or data.mr.adapt_root)")
  folders = [root / d for d in _UNLABELLED_IMAGE_DIRS if (root / d).is_dir()] or [root]
  cases = {}
  for folder in folders:
    for cid, f in _nifti_files(folder).items():
      cases.setdefault(cid, Case(cid, f, None))
  if not cases:
    raise ChaosError(f"{root}: no NIfTI image (.nii / .nii.gz) in "
                     + ", ".join(str(f.relative_to(root.parent)) for f in folders))
  if sequence is not None and mod == "MR":
    if sequence not in chaos.SEQUENCES or sequence == "ct":
      raise ChaosError(f"{root}: MR sequence {sequence!r}; expected t1_in, t1_out or t2")
    seq = sequence
  return DatasetInfo(root=root, modality=mod, sequence=seq, labels={}, liver_label=0,
                     cases=[cases[k] for k in sorted(cases)])


def read_image(case: Case, info: DatasetInfo) -> NiftiVolume:
  """Reads one case's image alone into the display orientation; its label is never opened.

  Args:
    case: a case of `unlabelled_info` or `dataset_info` (its `label` is ignored).
    info: the dataset's modality and sequence.

  Returns:
    A NiftiVolume: image float32 [Z,H,W] (HU for CT), mask uint8 zeros [Z,H,W] (no
    label: nothing is known), organs None, spacing (z, y, x) mm, mask_files empty.

  Raises:
    ChaosError: naming the file: missing, unreadable, truncated, not 3D, more than half
      of the voxels non-finite (fewer are replaced and reported in `problems`).
  """
  image_img = nifti_file.load(case.image, "image")
  r = orientation.to_display(orientation.nifti_directions(image_img.affine))
  image, problems = nifti_file.read_image_array(image_img, case.image)
  image = np.ascontiguousarray(orientation.apply(image, r))
  zooms = tuple(float(z) for z in image_img.header.get_zooms()[:3])
  return NiftiVolume(
      patient_id=case.case_id, modality=info.modality, sequence=info.sequence,
      image=image, mask=np.zeros(image.shape, np.uint8),
      spacing=orientation.apply_spacing(zooms, r), window=None,
      image_files=[str(case.image)], mask_files=[], problems=problems, organs=None)


def load_volumes(root, modality: str | None = None, liver_label=None,
                 sequence: str | None = None) -> tuple[list[NiftiVolume], list[str]]:
  """Reads every case of a NIfTI dataset folder, skipping what is unusable.

  Args:
    root, modality, liver_label, sequence: see `dataset_info`.

  Returns:
    (volumes, problems): the readable volumes in case order, and every problem
    (skipped cases, notes), each naming its file; problems are also logged.

  Raises:
    ChaosError: when the folder itself is not a usable NIfTI dataset (see
      `dataset_info`).
  """
  info = dataset_info(root, modality, liver_label, sequence)
  return chaos.read_each(info.cases, lambda case: read_case(case, info),
                         where=lambda case: case.image, what="case")
