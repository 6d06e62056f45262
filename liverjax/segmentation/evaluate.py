"""Per-volume evaluation of a trained U-Net on the test patients of each domain.

For every test volume (a patient's CT, or one MR sequence of a patient) the
slices are predicted in order, then scored in 3D: the study's figures (Dice
score, BCE, Dice loss, Jaccard loss, total loss, from the summed statistics of
`liverjax.segmentation.losses`) and the CHAOS challenge metrics
(`liverjax.segmentation.metrics`: Dice,
RAVD %, ASSD mm, MSSD mm with the volume's DICOM spacing). Results are
summarised as mean ± std over volumes for CT, for each MR sequence and for MR
overall. `liverjax.reporting.experiment` turns the results into tables and figures.
"""
from __future__ import annotations

import pathlib

import numpy as np
from absl import logging

from liverjax import checkpointing
from liverjax import runtime
from liverjax.data import dataset as dataset_lib
from liverjax.data import pipeline
from liverjax.segmentation import losses
from liverjax.segmentation import metrics as metrics_lib
from liverjax.segmentation import state as state_lib

LOSS_KEYS = ("dice", "bce", "dice_loss", "jaccard_loss", "total")
CHAOS_KEYS = ("ravd", "assd", "mssd")


def predict_volume(predict_fn, state, image: np.ndarray, mask: np.ndarray, *, mesh,
                   batch_size: int):
  """Predicts one volume slice by slice.

  Args:
    predict_fn: from `state.make_predict_fn`.
    state: the train state.
    image: f32[Z,S,S] in [0,1]; mask: {0,1} [Z,S,S].

  Returns:
    (prediction u8[Z,S,S] in {0,1}, loss sums: dict of scalars summed over the volume).
  """
  images = image[..., None].astype(np.float32)
  masks = mask[..., None].astype(np.float32)
  preds, sums = [], []
  img_batches = pipeline.eval_batches(images, batch_size, mesh)
  mask_batches = pipeline.eval_batches(masks, batch_size, mesh)
  for (img, valid), (msk, _) in zip(img_batches, mask_batches):
    p, s = predict_fn(state, img, msk)
    p, s = runtime.gather(p), runtime.gather(s)
    preds.append(p[:valid, ..., 0])
    sums.append({k: v[:valid] for k, v in s.items()})
  total = {k: float(np.sum(np.concatenate([s[k] for s in sums]))) for k in sums[0]}
  return np.concatenate(preds), total


def evaluate_volumes(predict_fn, state, volumes, *, mesh, batch_size: int = 32,
                     surface_metrics: bool = True, keep_predictions: bool = False
                     ) -> list[dict]:
  """Scores each volume (`preprocess.PreparedVolume`).

  Returns:
    One dict per volume: patient_id, modality, sequence, slices; the loss
    figures `LOSS_KEYS` (dice is the hard Dice score); with `surface_metrics`
    the CHAOS `ravd` (%), `assd`, `mssd` (mm); with `keep_predictions` the
    binary prediction u8[Z,S,S] under "prediction".
  """
  results = []
  for v in volumes:
    prediction, sums = predict_volume(predict_fn, state, v.image, v.mask, mesh=mesh,
                                 batch_size=batch_size)
    figures = {k: float(x) for k, x in losses.losses_from_sums(sums).items()}
    r = dict(patient_id=v.patient_id, modality=v.modality, sequence=v.sequence,
             slices=int(v.image.shape[0]), **{k: figures[k] for k in LOSS_KEYS})
    if surface_metrics:
      # The MATLAB convention of the official CHAOS evaluation (a mask cut by the
      # volume's edge has no surface there): ASSD 0.734 mm on the sample.
      chaos = metrics_lib.chaos_metrics(prediction, v.mask, v.spacing,
                                        border_is_surface=False)
      r.update({k: float(chaos[k]) for k in CHAOS_KEYS})
    if keep_predictions:
      r["prediction"] = prediction
    results.append(r)
  return results


def summarize(results: list[dict]) -> dict:
  """Mean ± std of each figure over volumes, with counts of patients and slices."""
  out = {"volumes": len(results),
         "patients": len({r["patient_id"] for r in results}),
         "slices": int(sum(r["slices"] for r in results))}
  for k in LOSS_KEYS + CHAOS_KEYS:
    values = [r[k] for r in results if k in r]
    if values:
      out[k] = metrics_lib.summarize(values)
  return out


def evaluate_domains(predict_fn, state, data: dataset_lib.Dataset, config, *, mesh,
                     split: str = "test", examples_per_domain: int = 4):
  """Evaluates on `split` of each target domain.

  Returns:
    (summary, per_volume, examples): summary[group] for groups "ct", "mr",
    "mr/t1_in", "mr/t1_out", "mr/t2" (those present); per_volume: list of
    per-volume dicts (no arrays); examples: figure rows (image, mask,
    prediction f32[S,S], title) with the most liver, per domain/sequence.
  """
  summary, per_volume, examples = {}, [], []
  for domain in config.data.targets:
    seqs = dataset_lib.domain_sequences(domain, config.data)
    volumes = data.select(domain, split, seqs)
    if not volumes:
      logging.warning("no %s volumes of domain %s to evaluate", split, domain)
      continue
    results = evaluate_volumes(predict_fn, state, volumes, mesh=mesh,
                               batch_size=config.eval.batch_size, keep_predictions=True)
    summary[domain] = summarize(results)
    if domain == "mr":
      for seq in seqs:
        sub = [r for r in results if r["sequence"] == seq]
        if sub:
          summary[f"mr/{seq}"] = summarize(sub)
    for seq in seqs:
      pairs = [(v, r) for v, r in zip(volumes, results) if v.sequence == seq]
      examples += _pick_examples(pairs, max(1, examples_per_domain // len(seqs)), domain)
    per_volume += [{k: v for k, v in r.items() if k != "prediction"} for r in results]
  return summary, per_volume, examples


def _pick_examples(pairs, n, domain):
  """The n slices with the most liver among the volumes `pairs` (volume, result)."""
  candidates = []
  for v, r in pairs:
    area = v.mask.reshape(v.mask.shape[0], -1).sum(1, dtype=np.int64)
    for z in np.argsort(-area)[:n]:
      candidates.append((int(area[z]), v, r, int(z)))
  candidates.sort(key=lambda c: -c[0])
  rows = []
  for _, v, r, z in candidates[:n]:
    rows.append(dict(image=v.image[z], mask=v.mask[z], prediction=r["prediction"][z],
                     title=f"{domain.upper()} {v.sequence} patient {v.patient_id} "
                           f"slice {z}"))
  return rows


def experiment_name(config) -> str:
  """E.g. "ct_to_mr", "mr_to_ct+domain+augmix", "ct_to_mr+cyclegan+augmix"."""
  targets = [t for t in config.data.targets if t != config.data.source]
  name = f"{config.data.source}_to_{targets[0] if targets else config.data.source}"
  if config.translate.cyclegan_workdir:
    name += "+cyclegan"
  if config.augment.domain:
    name += "+domain"
  if config.augment.augmix:
    name += "+augmix"
  return name


def evaluate_experiment(config, workdir, *, data: dataset_lib.Dataset | None = None
                        ) -> tuple[dict, list]:
  """Reloads a checkpoint and evaluates it on the test patients of `config.data.targets`.

  The checkpoint is `config.eval.checkpoint` (a `.../checkpoints/<step>`
  folder) when set, else the best by validation Dice in `workdir/checkpoints`.

  Returns:
    (results, examples): the results dict (what `metrics.json` holds: the
    experiment, checkpoint, summary per test group and per-volume figures) and
    the figure rows of `evaluate_domains`.
  """
  workdir = pathlib.Path(workdir)
  if data is None:
    data = dataset_lib.load_dataset(config.data)
  mesh = runtime.create_mesh()
  graphdef, abstract_state, _ = state_lib.abstract_train_state(config, mesh)
  predict_fn = state_lib.make_predict_fn(graphdef, mesh)
  if config.eval.checkpoint:
    state, step = checkpointing.restore_path(config.eval.checkpoint, abstract_state)
    source = str(config.eval.checkpoint)
  else:
    manager = checkpointing.create_manager(workdir, read_only=True)
    step = checkpointing.best_step(manager)
    state, step = checkpointing.restore(manager, abstract_state, step)
    source = f"{manager.directory}/{step}"
  logging.info("evaluating the checkpoint %s (step %d)", source, step)
  summary, per_volume, examples = evaluate_domains(
      predict_fn, state, data, config, mesh=mesh,
      examples_per_domain=config.eval.figure_slices)
  results = dict(
      experiment=experiment_name(config),
      source=config.data.source, targets=list(config.data.targets),
      normalization=config.data.normalization,
      augment=dict(domain=bool(config.augment.domain), augmix=bool(config.augment.augmix),
                   cyclegan=config.translate.cyclegan_workdir),
      checkpoint=source, step=int(step), data_root=data.root,
      summary=summary, volumes=per_volume)
  return results, examples
