"""A trained U-Net on new scans: `python -m liverjax.predict --workdir=W --input=PATH --out=DIR`.

Flags:
  --workdir      a trained U-Net workdir (its best checkpoint by validation Dice)
  --checkpoint   or one `.../checkpoints/<step>` folder (instead of --workdir)
  --input        a DICOM series folder (CT or MR, modality from the header), a
                 NIfTI file, a CHAOS patient folder (`CT/<id>`, `MR/<id>`), a
                 CHAOS folder, or a NIfTI dataset folder (dataset.json, or NIfTI
                 files in it / imagesTr/ / imagesTs/ / images/); repeat the flag
                 or separate with commas for several
  --out          the output folder: one subfolder per scan
  --no_postprocess      keep every predicted voxel (default: the largest 3D component)
  --save_probabilities  also write the liver probability map (float32 NIfTI)
  --chaos_format ground_truth (default) | submission: how CHAOS input's PNGs are named
  --dicom_seg    write a DICOM-SEG for DICOM input (default on; needs highdicom)
  --modality     CT | MR for NIfTI files whose dataset.json does not say it
                 (default: CT when the image has values below -50, else MR)
  --batch_size   slices per device call (default: the checkpoint's eval.batch_size)
  --adapt_bn     auto (default) | on | off: batch-norm statistics of each scan's own slices
                 (auto: as the checkpoint was evaluated, for the modality it was not trained on)
  --intensity    auto (default) | histogram_match | none: match each scan's intensity histogram
                 to the training domain's (auto: as the checkpoint was evaluated,
                 `eval.intensity`, for the modality it was not trained on)

The preprocessing (normalisation, CT window, MR percentiles, image size) is the
one saved with the checkpoint, never a flag; so are the training domain's intensity
quantiles that histogram matching maps a scan to. Each scan is read in the display
orientation of `liverjax.data.orientation`, preprocessed as in training,
predicted slice by slice in batches on the device (channel 0 of the logits:
the liver), the logits resized back to the scan's native in-plane size
(bilinear) before the threshold (logit > 0, probability > 0.5), the largest 3D
connected component kept, and the mask mapped back to the input's own voxel
order. Per scan, in `<out>/<name>/`:
  mask.nii.gz           uint8 0/1 with exactly the input's affine and shape (for
                        DICOM input: the affine of the DICOM geometry, array
                        [column, row, slice] in the reader's slice order)
  probabilities.nii.gz  float32 liver probability (--save_probabilities)
  seg.dcm               DICOM-SEG referencing the source SOP instances (DICOM input)
  Results/*.png         CHAOS input: one PNG per slice named as the CHAOS ground
                        truth (CT liver_GT_NNN.png with NNN the slice's rank from
                        the head end, 0/255; MR <DICOM stem>.png, liver 63), or
                        with --chaos_format=submission as the submission sample
                        (results001.png.. in slice order, liver 63)
  overlay.png           a few slices with the mask
and `<out>/predictions.json` lists every scan (liver mL, slices, seconds, problems: e.g.
a predicted liver that reaches the edge of the checkpoint's field-of-view crop).
A bad input (no DICOM in a folder, a 4D NIfTI, a checkpoint without config)
ends the run with one line naming the file.

Python API (notebooks): `model = load_model(path)`, then
`predict_volume(model, volume) -> mask` on a `liverjax.data.chaos.Volume`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import re
import sys
import time
from typing import Any

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from flax import nnx

from liverjax import checkpointing
from liverjax import metric_writer
from liverjax import runtime
from liverjax.configs import default as default_config
from liverjax.data import chaos
from liverjax.data import dicom_series
from liverjax.data import harmonize
from liverjax.data import nifti
from liverjax.data import orientation
from liverjax.data import pipeline
from liverjax.data import preprocess
from liverjax.reporting import prediction as writers
from liverjax.segmentation import evaluate
from liverjax.segmentation import postprocess
from liverjax.segmentation import state as state_lib

try:  # highdicom may be missing on a GPU host: then no DICOM-SEG, said in one line
  from liverjax.reporting import dicom_seg
  _DICOM_SEG_MISSING = None
except ImportError as _e:  # pylint: disable=invalid-name
  dicom_seg = None
  _DICOM_SEG_MISSING = f"DICOM-SEG output needs highdicom ({_e}); pip install highdicom"

_NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_NIFTI_IMAGE_DIRS = ("imagesTr", "imagesTs", "images")
# Folder names that say nothing about the scan (the name is taken from above them).
_GENERIC_DIRS = {"dicom_anon", "dicom", "inphase", "outphase", "t1dual", "t2spir"}


class PredictError(ValueError):
  """Bad input to prediction; the message names the file and the problem."""


# ----------------------------------------------------------------------------- the model


@dataclasses.dataclass
class Model:
  """A trained U-Net restored for prediction.

  Attributes:
    config: the config saved with the checkpoint (over the defaults).
    state: the restored `TrainState`, replicated on `mesh`.
    graphdef: the U-Net's static graph.
    mesh: the device mesh the slices are split over.
    step: the checkpoint's step.
    checkpoint: the checkpoint folder.
    source_stats: what the checkpoint keeps of its training data
      (`{"intensity_quantiles": [101 floats]}`), or None for a checkpoint made
      before it was kept.
  """
  config: ml_collections.ConfigDict
  state: Any
  graphdef: Any
  mesh: Any
  step: int
  checkpoint: str
  source_stats: dict | None = None


def config_from_saved(saved: dict) -> ml_collections.ConfigDict:
  """The config of a checkpoint: its saved dict, with fields it lacks from the defaults.

  Args:
    saved: the JSON dict saved beside the checkpoint (`config.to_dict()`).

  Returns:
    A ConfigDict; fields added since the checkpoint was made take their defaults.
  """
  config = ml_collections.ConfigDict(saved)

  def fill(target, defaults):
    for key, value in defaults.items():
      if key not in target:
        target[key] = value
      elif isinstance(value, ml_collections.ConfigDict) and isinstance(
          target[key], ml_collections.ConfigDict):
        fill(target[key], value)

  fill(config, default_config.get_config())
  return config


def load_model(path: str | pathlib.Path, mesh=None) -> Model:
  """Restores a trained U-Net and the config it was trained with.

  Args:
    path: a U-Net workdir (its best checkpoint by validation Dice), its
      `checkpoints/` folder (the same), or one `checkpoints/<step>` folder.
    mesh: where the parameters live (default: all devices, replicated).

  Returns:
    A Model.

  Raises:
    PredictError: naming the folder: no checkpoint there, no config saved
      with it, a CycleGAN checkpoint.
  """
  try:
    directory, step = checkpointing.checkpoint_location(path)
  except FileNotFoundError as e:
    raise PredictError(str(e)) from e
  manager = checkpointing.open_read_only(directory)
  if step is None:
    step = checkpointing.best_step(manager)
  if step is None or not (directory / str(step)).is_dir():
    raise PredictError(f"{directory}: no checkpoint here (expected a U-Net workdir, its "
                       "checkpoints/ folder, or a checkpoints/<step> folder)")
  saved = checkpointing.restore_config(manager, step)
  if not saved:
    raise PredictError(f"{directory / str(step)}: checkpoint without a saved config; the "
                       "preprocessing it was trained with is unknown")
  config = config_from_saved(saved)
  if config.experiment != "segmentation":
    raise PredictError(f"{directory / str(step)}: a {config.experiment!r} checkpoint, "
                       "not a U-Net (segmentation) one")
  mesh = mesh if mesh is not None else runtime.create_mesh()
  graphdef, abstract, _ = state_lib.abstract_train_state(config, mesh)
  state, step = checkpointing.restore(manager, abstract, step)
  return Model(config=config, state=state, graphdef=graphdef, mesh=mesh, step=int(step),
               checkpoint=str(directory / str(step)),
               source_stats=checkpointing.restore_source_stats(manager, step))


@functools.cache
def _logits_fn(graphdef, mesh):
  """jit(state, images f32[B,S,S,1]) -> liver logits f32[B,S,S] (channel 0), sharded."""
  replicated = runtime.replicated_sharding(mesh)
  batch = runtime.batch_sharding(mesh)

  def logits(state, images):
    model = nnx.merge(graphdef, state_lib.inference_params(state), state.batch_stats)
    return model(images, train=False)[..., 0].astype(jnp.float32)

  return jax.jit(logits, in_shardings=(replicated, batch), out_shardings=batch,
                 compiler_options=runtime.compiler_options())


BACKGROUND_LOGIT = -20.0  # where the field-of-view crop cut the scan: surely not liver


def prepare(model: Model, volume: chaos.Volume) -> np.ndarray:
  """The model's input: `volume` normalised and resized as in training.

  Args:
    model: from `load_model` (its saved `config.data` decides everything).
    volume: a scan in the display orientation (CT in HU, MR raw).

  Returns:
    f32 [Z,S,S] in [0,1], S = the checkpoint's `data.image_size`.
  """
  data = model.config.data
  return preprocess.prepare_volume(
      volume, image_size=int(data.image_size), normalization=data.normalization,
      ct_window=tuple(data.ct_window), ct_window_from_dicom=bool(data.ct_window_from_dicom),
      mr_percentiles=tuple(data.mr_percentiles),
      field_of_view=data.get("field_of_view")).image


def _off_source(model: Model, volume: chaos.Volume) -> bool:
  return str(volume.modality).lower() != str(model.config.data.source).lower()


def matches_histogram(model: Model, volume: chaos.Volume, intensity: str = "auto") -> bool:
  """Whether `volume`'s intensities are histogram-matched to the training domain's.

  intensity: "histogram_match", "none", or "auto": as the checkpoint was evaluated,
  i.e. its `eval.intensity` is "histogram_match" and the scan's modality is not the
  training source's.
  """
  if intensity not in ("auto", "histogram_match", "none"):
    raise PredictError(f"intensity={intensity!r}: expected auto, histogram_match or none")
  if intensity != "auto":
    return intensity == "histogram_match"
  return (model.config.eval.get("intensity", "none") == "histogram_match"
          and _off_source(model, volume))


def prepare_input(model: Model, volume: chaos.Volume, intensity: str = "auto") -> np.ndarray:
  """`prepare`, then histogram matching where `matches_histogram` says so (to the
  checkpoint's saved quantiles, then its `eval.intensity_gamma`, as in the evaluation).

  Returns:
    f32 [Z,S,S] in [0,1], the slices the model sees.

  Raises:
    PredictError: matching asked for, and the checkpoint holds no intensity quantiles
      (made before they were kept: retrain, or pass intensity="none").
  """
  images = prepare(model, volume)
  if not matches_histogram(model, volume, intensity):
    return images
  quantiles = (model.source_stats or {}).get("intensity_quantiles")
  if quantiles is None:
    raise PredictError(f"{model.checkpoint}: histogram matching needs the training domain's "
                       "intensity quantiles, which this checkpoint (made before they were kept) "
                       "does not hold; retrain it, or pass --intensity=none")
  return harmonize.histogram_match(images, None, np.asarray(quantiles, np.float32),
                                   float(model.config.eval.get("intensity_gamma", 1.0)))


def adapts_batch_norm(model: Model, volume: chaos.Volume, adapt_bn: str = "auto") -> bool:
  """Whether `volume` is predicted with batch-norm statistics of its own slices.

  adapt_bn: "on", "off", or "auto": as the checkpoint was evaluated, i.e. its
  `eval.adapt_bn` is "volume" and the scan's modality is not the training source's.
  """
  if adapt_bn not in ("auto", "on", "off"):
    raise PredictError(f"adapt_bn={adapt_bn!r}: expected auto, on or off")
  if adapt_bn != "auto":
    return adapt_bn == "on"
  return model.config.eval.get("adapt_bn", "none") == "volume" and _off_source(model, volume)


def predict_logits(model: Model, volume: chaos.Volume, batch_size: int | None = None,
                   adapt_bn: str = "auto", intensity: str = "auto") -> np.ndarray:
  """Liver logits of a scan on its own grid.

  Args:
    model: from `load_model`.
    volume: a scan in the display orientation, image [Z,H,W].
    batch_size: slices per device call (default the checkpoint's
      `eval.batch_size`; rounded up to the device count).
    adapt_bn: see `adapts_batch_norm` (test-time batch-norm adaptation on this scan).
    intensity: see `matches_histogram` (test-time histogram matching, before the
      batch-norm adaptation, as in the evaluation).

  Returns:
    f32 [Z,H,W]: the model's logits at S x S, resized bilinearly to H x W
    (probability = sigmoid; liver where > 0). With the checkpoint's `data.field_of_view`,
    the S x S grid is first put back where `preprocess.crop_or_pad` took it from (what was
    cropped away gets the background logit -20), then resized.
  """
  images = prepare_input(model, volume, intensity)[..., None]
  batch_size = int(batch_size or model.config.eval.batch_size)
  fn = _logits_fn(model.graphdef, model.mesh)
  state = model.state
  if adapts_batch_norm(model, volume, adapt_bn):
    state = evaluate.adapted_state(
        state_lib.make_volume_stats_fn(model.graphdef, model.mesh), state, images[..., 0],
        int(model.config.eval.get("adapt_bn_slices", 64)), model.mesh)
  small = [np.asarray(runtime.gather(fn(state, batch)))[:valid]
           for batch, valid in pipeline.eval_batches(images, batch_size, model.mesh)]
  small = np.concatenate(small)
  h, w = volume.image.shape[1:]
  fov = model.config.data.get("field_of_view")
  if fov is not None:
    grid = preprocess.field_of_view_shape((h, w), volume.spacing[1:], small.shape[-1], fov)
    small = preprocess.uncrop_or_pad(small, grid, BACKGROUND_LOGIT)
  if small.shape[1:] == (h, w):
    return small
  return np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR) for s in small])


def predict_volume(model: Model, volume: chaos.Volume, *, keep_largest: bool = True,
                   batch_size: int | None = None, adapt_bn: str = "auto",
                   intensity: str = "auto") -> np.ndarray:
  """The predicted liver mask of a scan, on the scan's own grid.

  Args:
    model: from `load_model`.
    volume: a `liverjax.data.chaos.Volume` (or `nifti.NiftiVolume`) in the display
      orientation, as the readers return it: image [Z,H,W] (CT in HU, MR raw).
    keep_largest: keep only the largest 3D connected component.
    batch_size, adapt_bn, intensity: see `predict_logits`.

  Returns:
    uint8 [Z,H,W] 0/1.
  """
  mask = (predict_logits(model, volume, batch_size, adapt_bn, intensity) > 0).astype(np.uint8)
  return postprocess.largest_component(mask) if keep_largest else mask


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class ScanRef:
  """One scan found on disk, not read yet.

  kind: "nifti" (a file), "dicom" (a series folder) or "chaos" (a CHAOS series
  folder: its masks are written as CHAOS PNGs too). modality / sequence /
  patient_id: what the layout says (None: from the file).
  """
  kind: str
  path: pathlib.Path
  name: str
  modality: str | None = None
  sequence: str | None = None
  patient_id: str | None = None


@dataclasses.dataclass
class Scan:
  """A scan read for prediction.

  `volume` is in the display orientation; `reorientation` takes the input's
  NIfTI-ordered array (for DICOM: [column, row, slice], slices in the reader's
  order) to it, and `affine` / `header` describe that array's grid.
  `dicom_files` are the source files of the slices (DICOM), `chaos_names` the
  CHAOS PNG name of each (CHAOS input), both in the reader's slice order.
  """
  ref: ScanRef
  volume: chaos.Volume
  reorientation: orientation.Reorientation
  affine: np.ndarray
  native_shape: tuple[int, int, int]
  header: Any = None
  dicom_files: list[str] = dataclasses.field(default_factory=list)
  chaos_names: list[str] | None = None
  problems: list[str] = dataclasses.field(default_factory=list)


def _nifti_stem(path: pathlib.Path) -> str | None:
  for ext in _NIFTI_EXTENSIONS:
    if path.name.endswith(ext):
      return path.name[: -len(ext)]
  return None


def _dicom_name(folder: pathlib.Path) -> str:
  parts = [folder.name]
  while parts[-1].lower() in _GENERIC_DIRS and len(folder.parents) > len(parts):
    parts.append(folder.parents[len(parts) - 1].name)
  return "_".join(reversed([p for p in parts if p.lower() not in _GENERIC_DIRS] or parts))


def _chaos_refs(refs: list[chaos.SeriesRef]) -> list[ScanRef]:
  return [ScanRef("chaos", r.image_dir,
                  f"{r.modality}_{r.patient_id}" + ("" if r.sequence == "ct" else
                                                    f"_{r.sequence}"),
                  r.modality, r.sequence, r.patient_id)
          for r in refs if r.image_dir.is_dir()]


def _nifti_dataset_refs(folder: pathlib.Path) -> list[ScanRef]:
  files = [f for f in sorted(folder.iterdir()) if _nifti_stem(f) is not None]
  for sub in _NIFTI_IMAGE_DIRS:
    if (folder / sub).is_dir():
      files += [f for f in sorted((folder / sub).iterdir()) if _nifti_stem(f) is not None]
  return [ScanRef("nifti", f, re.sub(r"_0000$", "", _nifti_stem(f))) for f in files]


def find_scans(path: str | pathlib.Path) -> list[ScanRef]:
  """Lists the scans of one input path.

  Args:
    path: a NIfTI file; a CHAOS patient folder (`.../CT/<id>` or
      `.../MR/<id>`: every series of it); a CHAOS folder (anything
      `chaos.find_root` accepts: every series); a NIfTI dataset folder
      (NIfTI files in it or in imagesTr/ imagesTs/ images/); or a DICOM series
      folder (anything else holding files).

  Returns:
    The scans, not read.

  Raises:
    PredictError: naming `path`: it does not exist, a file that is not NIfTI,
      a folder with no files and none of these layouts.
  """
  path = pathlib.Path(path).expanduser()
  if not path.exists():
    raise PredictError(f"{path}: no such file or folder")
  if path.is_file():
    stem = _nifti_stem(path)
    if stem is None:
      raise PredictError(f"{path}: not a NIfTI file (.nii, .nii.gz); give DICOM as the "
                         "series folder")
    return [ScanRef("nifti", path, re.sub(r"_0000$", "", stem))]
  if any((path / d).is_dir() for d in ("DICOM_anon", "T1DUAL", "T2SPIR")):
    if path.parent.name not in ("CT", "MR"):
      raise PredictError(f"{path}: a CHAOS patient folder must sit in a CT/ or MR/ folder")
    refs = [r for r in chaos.discover(path.parent.parent)
            if r.modality == path.parent.name and r.patient_id == path.name]
    return _chaos_refs(refs)
  try:
    return _chaos_refs(chaos.discover(path))
  except chaos.ChaosError:
    pass  # not a CHAOS folder
  refs = _nifti_dataset_refs(path)
  if refs:
    return refs
  if any(f.is_file() and not f.name.startswith(".") for f in path.iterdir()):
    return [ScanRef("dicom", path, _dicom_name(path))]
  raise PredictError(f"{path}: no DICOM file, NIfTI file, CHAOS or NIfTI dataset layout "
                     "in this folder")


def _nifti_modality(path: pathlib.Path, image: np.ndarray,
                    modality: str | None) -> tuple[str, str | None]:
  """(modality, note) of a NIfTI image: `modality`, its dataset.json's, else a guess
  (CT when it has values below -50, as HU do; the note says so)."""
  if modality:
    return modality.upper(), None
  for root in (path.parent, path.parent.parent):
    if (root / "dataset.json").is_file():
      return nifti.read_dataset_json(root).modality, None
  guess = "CT" if float(np.min(image)) < -50.0 else "MR"
  return guess, (f"{path}: no --modality and no dataset.json; read as {guess} from its "
                 "intensities")


def _read_nifti(ref: ScanRef, modality: str | None) -> Scan:
  img = nifti.load_image(ref.path)
  array = np.asarray(img.get_fdata(dtype=np.float32))
  mod, note = _nifti_modality(ref.path, array, modality)
  problems = [note] if note else []
  return _scan(ref, array, np.asarray(img.affine, np.float64), mod, img.header,
               problems=problems)


def _read_dicom(ref: ScanRef) -> Scan:
  volume, metas = dicom_series.read_image_series(ref.path, ref.patient_id, ref.sequence)
  problems = list(volume.problems)
  positions = [m["position"] for m in metas]
  if any(p is None for p in positions):
    z = volume.spacing[0]
    positions = [(0.0, 0.0, -z * k) for k in range(len(metas))]
    problems.append(f"{ref.path}: slices without ImagePositionPatient; the NIfTI grid "
                    "assumes a regular axial series")
  affine, note = orientation.dicom_affine(positions, metas[0]["orientation"],
                                          metas[0]["pixel_spacing"] or (1.0, 1.0),
                                          volume.spacing[0])
  if note:
    problems.append(f"{ref.path}: {note}")
  names = None
  if ref.kind == "chaos":
    names = ([f"liver_GT_{k:03d}.png" for k in range(len(metas))] if volume.modality == "CT"
             else [pathlib.Path(f).stem + ".png" for f in volume.image_files])
  scan = _scan(ref, volume.image.transpose(2, 1, 0), affine, volume.modality, None,
               problems=problems, window=volume.window, sequence=volume.sequence)
  scan.dicom_files = list(volume.image_files)
  scan.chaos_names = names
  return scan


def _scan(ref: ScanRef, array: np.ndarray, affine: np.ndarray, modality: str, header,
          *, problems: list[str], window=None, sequence: str | None = None) -> Scan:
  """A Scan from a NIfTI-ordered array [I,J,K] and its affine."""
  r = orientation.to_display(orientation.nifti_directions(affine))
  zooms = np.linalg.norm(affine[:3, :3], axis=0)
  image = np.ascontiguousarray(orientation.apply(array, r))
  volume = chaos.Volume(
      patient_id=ref.patient_id or ref.name, modality=modality,
      sequence=sequence or ref.sequence or ("ct" if modality == "CT" else "t2"),
      image=image, mask=np.zeros(image.shape, np.uint8), spacing=orientation.apply_spacing(zooms, r),
      window=window, image_files=[str(ref.path)], mask_files=[], problems=problems)
  return Scan(ref=ref, volume=volume, reorientation=r, affine=affine,
              native_shape=tuple(array.shape), header=header, problems=problems)


def read_scan(ref: ScanRef, modality: str | None = None) -> Scan:
  """Reads one scan into the display orientation, keeping its native grid.

  Args:
    ref: from `find_scans`.
    modality: "CT" | "MR" for NIfTI files whose dataset.json does not say it.

  Raises:
    PredictError or chaos.ChaosError: naming the file: unreadable, not 3D, no
      DICOM slice, a DICOM Modality other than CT / MR.
  """
  if ref.kind == "nifti":
    return _read_nifti(ref, modality)
  return _read_dicom(ref)


# ----------------------------------------------------------------------------- outputs


def native_mask(scan: Scan, mask: np.ndarray) -> np.ndarray:
  """A display-orientation array of `scan` in the input's own voxel order.

  Returns:
    The array on the input's NIfTI grid [I,J,K] (`scan.native_shape`).
  """
  return np.ascontiguousarray(orientation.from_display(mask, scan.reorientation))


def write_outputs(scan: Scan, mask: np.ndarray, folder: str | pathlib.Path, *,
                  probabilities: np.ndarray | None = None, dicom_seg_output: bool = True,
                  chaos_format: str = "ground_truth",
                  software_version: str = "0") -> dict[str, str]:
  """Writes every output of one scan (see the module docstring).

  Args:
    scan: from `read_scan`.
    mask: uint8 [Z,H,W] 0/1 in the display orientation (`predict_volume`).
    folder: the scan's output folder.
    probabilities: f32 [Z,H,W] in [0,1] (display orientation), or None.
    dicom_seg_output: write `seg.dcm` for DICOM input.
    chaos_format: CHAOS input's PNGs: "ground_truth" (named as the CHAOS ground
      truth, CT 0/255, MR liver 63) or "submission" (named as the submission
      sample: results001.png.. in slice order, liver 63).
    software_version: recorded in the DICOM-SEG.

  Returns:
    {output kind: path written}.
  """
  folder = pathlib.Path(folder)
  native = native_mask(scan, mask.astype(np.uint8))
  out = {"mask": str(writers.write_nifti(folder / "mask.nii.gz", native, scan.affine,
                                         scan.header))}
  if probabilities is not None:
    out["probabilities"] = str(writers.write_nifti(
        folder / "probabilities.nii.gz",
        native_mask(scan, probabilities.astype(np.float32)), scan.affine, scan.header))
  by_slice = native.transpose(2, 1, 0)  # DICOM input: [slice, row, column], reader order
  if scan.dicom_files and dicom_seg_output:
    if dicom_seg is None:
      raise PredictError(_DICOM_SEG_MISSING)
    out["dicom_seg"] = str(dicom_seg.write_dicom_seg(
        folder / "seg.dcm", by_slice, scan.dicom_files, software_version=software_version))
  if scan.chaos_names is not None:
    if chaos_format == "submission":
      names, value = writers.submission_names(len(by_slice)), writers.SUBMISSION_LIVER_VALUE
    elif chaos_format == "ground_truth":
      names, value = scan.chaos_names, writers.CHAOS_LIVER_VALUE[scan.volume.modality]
    else:
      raise ValueError(f"chaos_format={chaos_format!r}: expected ground_truth or submission")
    writers.write_chaos_pngs(folder / "Results", by_slice, names, value)
    out["chaos_png"] = str(folder / "Results")
  out["overlay"] = str(writers.write_overlay(
      folder / "overlay.png", scan.volume.image, mask,
      title=f"{scan.ref.name} ({scan.volume.modality})"))
  return out


def field_of_view_edge_problem(mask: np.ndarray, spacing_yx, field_of_view: float | None,
                               image_size: int, name: str) -> str | None:
  """A problem line when the predicted liver reaches where the field-of-view crop cut the scan.

  With `data.field_of_view`, a scan wider than it is cropped to its central field_of_view mm
  (`preprocess.crop_or_pad`, located on the scan by `preprocess.field_of_view_window`); liver
  outside that square is never predicted. The crop assumes the patient is centred: on the
  development scans emulated at a 460 mm field of view with the patient at one side,
  `best_mr_to_ct` fell from 0.87 to 0.60 (docs/results.md, session 14).

  Args:
    mask: uint8 [Z,H,W] 0/1 on the scan's grid.
    spacing_yx: the scan's (row, column) pixel size in mm.
    field_of_view: the checkpoint's `data.field_of_view` (None: whole slices, never cut).
    image_size: its `data.image_size` S (the band checked is the outer 2 of the S pixels).
    name: the scan's name, for the message.

  Returns:
    None, or one line naming the scan, its size in mm and the field of view.
  """
  if field_of_view is None or not np.any(mask):
    return None
  _, h, w = mask.shape
  sy, sx = float(spacing_yx[0]), float(spacing_yx[1])
  window = preprocess.field_of_view_window((h, w), (sy, sx), image_size, field_of_view)
  touches = False
  for n, seen, axis in ((h, window[0], 1), (w, window[1], 2)):
    if seen is None:
      continue  # this side was padded, not cut
    start, stop = seen
    band = 2.0 * (stop - start) / image_size  # native pixels: two of the model's pixels
    centres = np.arange(n) + 0.5
    near_edge = (centres < start + band) | (centres > stop - band)
    profile = np.any(mask, axis=tuple(a for a in (0, 1, 2) if a != axis))
    touches |= bool(np.any(profile & near_edge))
  if not touches:
    return None
  return (f"{name}: the predicted liver reaches the edge of the {field_of_view:g} mm field of "
          f"view the model sees (the scan is {h * sy:.0f} x {w * sx:.0f} mm, cropped to its "
          "centre); any liver beyond it is not predicted")


def liver_ml(mask: np.ndarray, spacing) -> float:
  """The volume of a [Z,H,W] mask with (z, y, x) mm spacing, in mL."""
  return float(np.count_nonzero(mask) * np.prod(spacing) / 1000.0)


def predict_paths(model: Model, inputs, out: str | pathlib.Path, *, keep_largest: bool = True,
                  save_probabilities: bool = False, dicom_seg_output: bool = True,
                  chaos_format: str = "ground_truth", modality: str | None = None,
                  batch_size: int | None = None, adapt_bn: str = "auto",
                  intensity: str = "auto") -> list[dict]:
  """Predicts every scan of `inputs` and writes its outputs under `out`.

  Args:
    model: from `load_model`.
    inputs: paths (see `find_scans`).
    out: the output folder; one subfolder per scan (its name made unique).
    keep_largest, batch_size, adapt_bn, intensity: see `predict_volume`.
    save_probabilities: also write the probability map.
    dicom_seg_output: write a DICOM-SEG for DICOM input.
    chaos_format: see `write_outputs`.
    modality: see `read_scan`.

  Returns:
    One record per scan: name, input, modality, slices, liver_ml, seconds,
    outputs, problems. Also written to `out/predictions.json`; one summary line
    per scan and an ETA are logged.

  Raises:
    PredictError / chaos.ChaosError: naming the file, on the first bad input.
  """
  out = pathlib.Path(out)
  refs = [r for path in inputs for r in find_scans(path)]
  if not refs:
    raise PredictError(f"{', '.join(map(str, inputs))}: no scan found")
  if dicom_seg_output and dicom_seg is None and any(r.kind != "nifti" for r in refs):
    raise PredictError(f"{refs[0].path}: {_DICOM_SEG_MISSING} (or --nodicom_seg)")
  names = set()
  for r in refs:
    base, k = r.name, 2
    while r.name in names:
      r.name, k = f"{base}_{k}", k + 1
    names.add(r.name)
  progress = metric_writer.Progress(0, len(refs))
  records = []
  for i, ref in enumerate(refs):
    start = time.time()
    scan = read_scan(ref, modality)
    for p in scan.problems:
      logging.warning("%s", p)
    logits = predict_logits(model, scan.volume, batch_size, adapt_bn, intensity)
    mask = (logits > 0).astype(np.uint8)
    if keep_largest:
      mask = postprocess.largest_component(mask)
    problems = list(scan.problems)
    edge = field_of_view_edge_problem(mask, scan.volume.spacing[1:],
                                      model.config.data.get("field_of_view"),
                                      int(model.config.data.image_size), ref.name)
    if edge:
      logging.warning("%s", edge)
      problems.append(edge)
    probabilities = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32) if (
        save_probabilities) else None
    outputs = write_outputs(scan, mask, out / ref.name, probabilities=probabilities,
                            dicom_seg_output=dicom_seg_output, chaos_format=chaos_format,
                            software_version=f"step {model.step}")
    seconds = time.time() - start
    record = dict(name=ref.name, input=str(ref.path), modality=scan.volume.modality,
                  adapted_batch_norm=adapts_batch_norm(model, scan.volume, adapt_bn),
                  histogram_matched=matches_histogram(model, scan.volume, intensity),
                  sequence=scan.volume.sequence, slices=int(mask.shape[0]),
                  liver_ml=round(liver_ml(mask, scan.volume.spacing), 2),
                  seconds=round(seconds, 2), outputs=outputs, problems=problems)
    records.append(record)
    progress.append({"seconds": seconds})
    _, _, eta = progress.summarize(i + 1)
    test_time = [name for name, on in (("histogram-matched", record["histogram_matched"]),
                                       ("AdaBN", record["adapted_batch_norm"])) if on]
    logging.info("[%d/%d] %s: %s%s, liver %.1f mL, %d slices, %.1fs (ETA %s) -> %s", i + 1,
                 len(refs), ref.name, scan.volume.modality,
                 f" ({', '.join(test_time)})" if test_time else "", record["liver_ml"],
                 record["slices"], seconds, eta, out / ref.name)
  out.mkdir(parents=True, exist_ok=True)
  (out / "predictions.json").write_text(json.dumps(
      dict(checkpoint=model.checkpoint, step=model.step, scans=records), indent=1))
  return records


# ----------------------------------------------------------------------------- command line


def _define_flags() -> None:
  """The command-line flags (defined only when run as a program: importing this
  module next to `liverjax.main` or `liverjax.study` defines none)."""
  flags.DEFINE_string("workdir", None, "A trained U-Net workdir (best checkpoint).")
  flags.DEFINE_string("checkpoint", None, "Or one .../checkpoints/<step> folder.")
  flags.DEFINE_multi_string("input", None, "Scan(s): DICOM series folder, NIfTI file, "
                            "CHAOS patient / dataset folder, NIfTI dataset folder; repeat "
                            "or separate with commas.")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_bool("no_postprocess", False, "Keep every predicted voxel (default: the "
                    "largest 3D connected component).")
  flags.DEFINE_bool("save_probabilities", False, "Also write probabilities.nii.gz.")
  flags.DEFINE_enum("adapt_bn", "auto", ["auto", "on", "off"], "Test-time batch-norm "
                    "adaptation on each scan; auto: as the checkpoint's eval.adapt_bn, for "
                    "scans of the modality it was not trained on.")
  flags.DEFINE_enum("intensity", "auto", ["auto", "histogram_match", "none"], "Test-time "
                    "histogram matching of each scan to the training domain's intensities; "
                    "auto: as the checkpoint's eval.intensity, for scans of the modality it "
                    "was not trained on.")
  flags.DEFINE_bool("dicom_seg", True, "Write a DICOM-SEG for DICOM input (highdicom).")
  flags.DEFINE_enum("chaos_format", "ground_truth", ["ground_truth", "submission"],
                    "CHAOS input's PNGs: named as the ground truth (CT liver_GT_NNN.png "
                    "0/255, MR <stem>.png liver 63) or as the submission sample "
                    "(results001.png.., liver 63).")
  flags.DEFINE_enum("modality", None, ["CT", "MR"], "Modality of NIfTI files without "
                    "dataset.json (default: guessed from the intensities).")
  flags.DEFINE_integer("batch_size", None, "Slices per device call (default: the "
                       "checkpoint's eval.batch_size).")


def main(argv) -> None:
  """The program: flags -> `load_model` -> `predict_paths`; bad input: one line, exit 1."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if bool(f.workdir) == bool(f.checkpoint):
    raise app.UsageError("give one of --workdir or --checkpoint")
  if not f.input or not f.out:
    raise app.UsageError("--input and --out are required")
  runtime.setup_process()
  inputs = [p for value in f.input for p in value.split(",") if p]
  try:
    model = load_model(f.workdir or f.checkpoint)
    logging.info("checkpoint %s (step %d): image size %d, %s normalisation; %d devices (%s)",
                 model.checkpoint, model.step, model.config.data.image_size,
                 model.config.data.normalization, jax.device_count(),
                 jax.devices()[0].platform)
    predict_paths(model, inputs, f.out, keep_largest=not f.no_postprocess,
                  save_probabilities=f.save_probabilities, dicom_seg_output=f.dicom_seg,
                  chaos_format=f.chaos_format,
                  modality=f.modality, batch_size=f.batch_size, adapt_bn=f.adapt_bn,
                  intensity=f.intensity)
  except (PredictError, chaos.ChaosError) as e:
    print(f"liverjax.predict: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
