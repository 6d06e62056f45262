"""Per-volume evaluation of a trained U-Net on the test patients of each domain.

For every test volume (a patient's CT, or one MR sequence of a patient) the
slices are predicted in order, then scored in 3D: the study's figures (Dice
score, BCE, Dice loss, Jaccard loss, total loss, from the summed statistics of
`liverjax.segmentation.losses`) and the CHAOS challenge metrics
(`liverjax.segmentation.metrics`: Dice,
RAVD %, ASSD mm, MSSD mm with the volume's DICOM spacing). Results are
summarised as mean ± std over volumes for CT, for each MR sequence and for MR
overall. `liverjax.reporting.experiment` turns the results into tables and figures.

Post-processing (`eval.postprocess`): "largest_component" (default) keeps the
largest 26-connected 3D component of each predicted volume
(`liverjax.segmentation.postprocess`); every volume is then scored twice: the
main keys (`dice`, `ravd`, `assd`, `mssd`) on the post-processed prediction and
the `*_raw` keys (`RAW_KEYS`) on the raw one. The loss figures (BCE, Dice loss,
Jaccard loss, total) come from the soft probabilities and are not
post-processed. "none" scores the raw prediction only.

Test-time intensity (`eval.intensity`): "histogram_match" maps each target-domain
test volume (a domain other than `data.source`) so that its body-intensity
histogram matches the source domain's (`liverjax.data.harmonize`), then raises it
to the power `eval.intensity_gamma`, before it is predicted. The reference is
the source domain's body-intensity quantiles (body = intensity > 0.05) that
training stores with every checkpoint (`source_stats`), the same that
`liverjax.predict` uses; for a checkpoint made before they were stored they are
computed from the source training slices (a second or so). So any checkpoint
can be evaluated with or without it. The other test-time option,
per-volume standardisation, is a data setting (`data.normalization="zscore"`)
that the model must be trained with too.

Test-time batch norm (`eval.adapt_bn`): "volume" re-estimates the batch-norm
statistics on each target-domain test volume's own slices (`adapt_bn_slices`
evenly spaced ones; AdaBN) and predicts that volume with them; the source
domain keeps the training running averages. Each scan is adapted alone, as a
deployed model would see it; no label is used.
"""
from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
from absl import logging

import liverjax
from liverjax import checkpointing
from liverjax import configs
from liverjax import metric_writer
from liverjax import progress
from liverjax import runtime
from liverjax.augment import pipeline as augment_pipeline
from liverjax.data import dataset as dataset_lib
from liverjax.data import harmonize
from liverjax.data import pipeline
from liverjax.segmentation import losses
from liverjax.segmentation import metrics as metrics_lib
from liverjax.segmentation import postprocess as postprocess_lib
from liverjax.segmentation import state as state_lib

LOSS_KEYS = ("dice", "bce", "dice_loss", "jaccard_loss", "total")
CHAOS_KEYS = ("ravd", "assd", "mssd")
# The raw prediction's figures, next to the post-processed ones (eval.postprocess != "none").
RAW_KEYS = ("dice_raw", "ravd_raw", "assd_raw", "mssd_raw")
POSTPROCESS = ("largest_component", "none")
INTENSITY = ("none", "histogram_match")
ADAPT_BN = ("none", "volume")


def postprocess_prediction(prediction: np.ndarray, method: str) -> np.ndarray:
  """Applies `eval.postprocess` to a binary volume.

  Args:
    prediction: {0,1} [Z,S,S] (any integer / bool dtype).
    method: "largest_component" (the largest 26-connected 3D component) or "none".

  Returns:
    u8[Z,S,S] in {0,1}.
  """
  if method == "largest_component":
    return postprocess_lib.largest_component(prediction)
  if method == "none":
    return np.asarray(prediction).astype(np.uint8)
  raise ValueError(f"eval.postprocess={method!r}: expected one of {POSTPROCESS}")


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


def _score(prediction: np.ndarray, v, surface: bool, suffix: str = "") -> dict:
  """Dice (and with `surface` the CHAOS RAVD/ASSD/MSSD) of one binary volume, keys + suffix."""
  if not surface:
    a, b = prediction > 0, v.mask > 0
    total = int(a.sum()) + int(b.sum())
    return {"dice" + suffix: 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total}
  # The MATLAB convention of the official CHAOS evaluation (a mask cut by the
  # volume's edge has no surface there): ASSD 0.734 mm on the sample.
  chaos = metrics_lib.chaos_metrics(prediction, v.mask, v.spacing, border_is_surface=False)
  return {k + suffix: float(chaos[k]) for k in ("dice",) + CHAOS_KEYS}


def adapted_state(stats_fn, state, image: np.ndarray, max_slices: int, mesh):
  """`state` with batch-norm statistics re-estimated on one volume (test-time adaptation).

  Args:
    stats_fn: from `state.make_volume_stats_fn`.
    image: f32[Z,S,S] in [0,1]; at most `max_slices` (>= 1) evenly spaced slices are used.

  Returns:
    The train state with `batch_stats` replaced by those of the volume's slices.
  """
  z = image.shape[0]
  index = np.unique(np.linspace(0, z - 1, min(z, max_slices)).round().astype(int))
  slices = jax.device_put(image[index, ..., None].astype(np.float32),
                          runtime.replicated_sharding(mesh))
  return state.replace(batch_stats=stats_fn(state, slices))


def evaluate_volumes(predict_fn, state, volumes, *, mesh, batch_size: int = 32,
                     surface_metrics: bool = True, keep_predictions: bool = False,
                     postprocess: str = "none", stats_fn=None,
                     adapt_slices: int = 64) -> list[dict]:
  """Scores each volume (`preprocess.PreparedVolume`).

  Args:
    postprocess: `eval.postprocess` ("none" | "largest_component").
    stats_fn: None, or `state.make_volume_stats_fn` to predict each volume with batch-norm
      statistics of its own `adapt_slices` slices (`adapted_state`).

  A long evaluation logs progress lines ("evaluated 3/10 volumes (MR 5 t2) ... ETA",
  `liverjax.progress`, at most one per `progress.INTERVAL_SECONDS`).

  Returns:
    One dict per volume: patient_id, modality, sequence, slices, liver_cut (the fraction of
    the liver outside the `data.field_of_view` crop, not scored: `PreparedVolume`); the loss
    figures `LOSS_KEYS` (dice is the hard Dice score); with `surface_metrics`
    the CHAOS `ravd` (%), `assd`, `mssd` (mm); with `keep_predictions` the
    binary prediction u8[Z,S,S] under "prediction". With `postprocess` other
    than "none", `dice` and the CHAOS figures are those of the post-processed
    prediction (also what "prediction" holds) and `RAW_KEYS` (`dice_raw`, and
    with `surface_metrics` `ravd_raw`, `assd_raw`, `mssd_raw`) those of the raw
    one; the soft loss figures are the raw prediction's.
  """
  if postprocess not in POSTPROCESS:
    raise ValueError(f"eval.postprocess={postprocess!r}: expected one of {POSTPROCESS}")
  results = []
  tracker = progress.Progress(len(volumes), "evaluated", "volumes")
  for v in volumes:
    volume_state = state
    if stats_fn is not None:
      volume_state = adapted_state(stats_fn, state, v.image, adapt_slices, mesh)
    prediction, sums = predict_volume(predict_fn, volume_state, v.image, v.mask, mesh=mesh,
                                      batch_size=batch_size)
    figures = {k: float(x) for k, x in losses.losses_from_sums(sums).items()}
    r = dict(patient_id=v.patient_id, modality=v.modality, sequence=v.sequence,
             slices=int(v.image.shape[0]), liver_cut=float(v.liver_cut),
             **{k: figures[k] for k in LOSS_KEYS})
    if postprocess != "none":
      r.update(_score(prediction, v, surface_metrics, "_raw"))
      prediction = postprocess_prediction(prediction, postprocess)
      r.update(_score(prediction, v, surface_metrics))
    elif surface_metrics:
      # dice stays the hard Dice of the loss sums (the same figure, as a float32 ratio).
      r.update({k: x for k, x in _score(prediction, v, True).items() if k != "dice"})
    if keep_predictions:
      r["prediction"] = prediction
    results.append(r)
    tracker.done(progress.volume_label(v))
  return results


def summarize(results: list[dict]) -> dict:
  """Mean ± std of each figure over volumes, with counts of patients and slices."""
  out = {"volumes": len(results),
         "patients": len({r["patient_id"] for r in results}),
         "slices": int(sum(r["slices"] for r in results))}
  for k in LOSS_KEYS + CHAOS_KEYS + RAW_KEYS:
    values = [r[k] for r in results if k in r]
    if values:
      out[k] = metrics_lib.summarize(values)
  return out


def intensity_reference(data: dataset_lib.Dataset, config) -> np.ndarray:
  """The source domain's body-intensity quantiles, the target of `eval.intensity`.

  Args:
    data: the dataset; its `config.data.source` training volumes are summarised.
    config: the experiment config.

  Returns:
    float32 [101] non-decreasing quantiles in [0, 1] (`harmonize.reference_quantiles`).
  """
  source = config.data.source
  volumes = data.select(source, "train", dataset_lib.domain_sequences(source, config.data))
  if not volumes:
    raise ValueError(f"eval.intensity={config.eval.intensity!r} needs training volumes of the "
                     f"source domain {source!r} in {data.root}")
  return harmonize.reference_quantiles(np.concatenate([v.image for v in volumes]))


def checkpoint_reference(manager, step: int, data: dataset_lib.Dataset, config
                         ) -> np.ndarray | None:
  """The source intensity quantiles `eval.intensity="histogram_match"` matches to, for the
  checkpoint at `step` of `manager`: those the checkpoint keeps (`source_stats`, saved by
  training, the ones `liverjax.predict` uses), so the evaluation and prediction match to the
  same reference. A checkpoint made before they were saved: computed from `data`'s source
  training volumes (`intensity_reference`), as it was evaluated then.

  Returns:
    float32 [101] non-decreasing quantiles in [0, 1], or None when `config.eval.intensity` is
    not "histogram_match".
  """
  if config.eval.intensity != "histogram_match":
    return None
  stats = checkpointing.restore_source_stats(manager, step) or {}
  if "intensity_quantiles" in stats:
    return np.asarray(stats["intensity_quantiles"], np.float32)
  logging.info("checkpoint %d keeps no source intensity quantiles (made before they were "
               "saved): computing them from the source training volumes", step)
  return intensity_reference(data, config)


def harmonize_volumes(volumes: list, reference: np.ndarray, gamma: float = 1.0) -> list:
  """Copies of `volumes` (`PreparedVolume`) with each image histogram-matched to `reference`
  (then x -> x ** gamma, `eval.intensity_gamma`)."""
  return [dataclasses.replace(v, image=harmonize.histogram_match(v.image, None, reference, gamma))
          for v in volumes]


def evaluate_domains(predict_fn, state, data: dataset_lib.Dataset, config, *, mesh,
                     split: str = "test", examples_per_domain: int = 4, stats_fn=None,
                     surface_metrics: bool = True, reference: np.ndarray | None = None):
  """Evaluates on `split` of each target domain (with `surface_metrics`, the CHAOS
  RAVD / ASSD / MSSD as well as the Dice).

  `stats_fn` (`state.make_volume_stats_fn`) is needed with `config.eval.adapt_bn="volume"`,
  which re-estimates batch-norm statistics per volume of a domain other than the source.

  `config.eval.postprocess` and `config.eval.intensity` apply (module docstring):
  with "histogram_match" every volume of a domain other than `config.data.source`
  is matched to `reference` (float [101] source intensity quantiles, needed then: the
  checkpoint's own, `checkpoint_reference`) before prediction, and shown so in the
  figure rows.

  Returns:
    (summary, per_volume, examples): summary[group] for groups "ct", "mr",
    "mr/t1_in", "mr/t1_out", "mr/t2" (those present); per_volume: list of
    per-volume dicts (no arrays); examples: figure rows (image, mask,
    prediction f32[S,S], title) with the most liver, per domain/sequence.
  """
  if config.eval.intensity not in INTENSITY:
    raise ValueError(f"eval.intensity={config.eval.intensity!r}: expected one of {INTENSITY}")
  adapt_bn = config.eval.get("adapt_bn", "none")
  if adapt_bn not in ADAPT_BN:
    raise ValueError(f"eval.adapt_bn={adapt_bn!r}: expected one of {ADAPT_BN}")
  if adapt_bn != "none" and stats_fn is None:
    raise ValueError("eval.adapt_bn='volume' needs the batch-statistics function (stats_fn)")
  if config.eval.intensity != "histogram_match":
    reference = None
  elif reference is None:
    raise ValueError("eval.intensity='histogram_match' needs the source intensity quantiles "
                     "(reference; `checkpoint_reference`)")
  summary, per_volume, examples = {}, [], []
  for domain in config.data.targets:
    seqs = dataset_lib.domain_sequences(domain, config.data)
    volumes = data.select(domain, split, seqs)
    if not volumes:
      logging.warning("no %s volumes of domain %s to evaluate", split, domain)
      continue
    if reference is not None and domain != config.data.source:
      volumes = harmonize_volumes(volumes, reference, float(config.eval.intensity_gamma))
    adapt = adapt_bn == "volume" and domain != config.data.source
    results = evaluate_volumes(predict_fn, state, volumes, mesh=mesh,
                               batch_size=config.eval.batch_size, keep_predictions=True,
                               surface_metrics=surface_metrics,
                               postprocess=config.eval.postprocess,
                               stats_fn=stats_fn if adapt else None,
                               adapt_slices=int(config.eval.get("adapt_bn_slices", 64)))
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
  if tuple(config.model.get("organs", ("liver",))) != ("liver",):
    name += "+multiorgan"
  rounds = int(config.get("self_training", {}).get("rounds", 0))
  if rounds:
    name += f"+selftrain{rounds}"
  if config.data.normalization == "zscore":
    name += "+zscore"
  if config.eval.get("intensity", "none") == "histogram_match":
    name += "+histmatch"
    if float(config.eval.get("intensity_gamma", 1.0)) != 1.0:
      name += f"_gamma{float(config.eval.intensity_gamma):g}"
  if config.eval.get("adapt_bn", "none") != "none":
    name += "+adabn"
  return name


def evaluate_experiment(config, workdir, *, data: dataset_lib.Dataset | None = None
                        ) -> tuple[dict, list]:
  """Reloads a checkpoint and evaluates it on the test patients of `config.data.targets`.

  The checkpoint is `config.eval.checkpoint` (a `.../checkpoints/<step>`
  folder) when set, else the best by validation Dice in `workdir/checkpoints`.

  Returns:
    (results, examples): the results dict (what `metrics.json` holds: the liverjax
    version, the experiment, checkpoint, summary per test group and per-volume figures) and
    the figure rows of `evaluate_domains`.
  """
  workdir = pathlib.Path(workdir)
  if data is None:
    data = dataset_lib.load_dataset(config.data)
  mesh = runtime.create_mesh()
  abstract_state, predict_fn, stats_fn = _evaluation_fns(config, mesh)
  state, step, manager, source = restore_checkpoint(config, workdir, abstract_state)
  logging.info("evaluating the checkpoint %s (step %d)", source, step)
  summary, per_volume, examples = evaluate_domains(
      predict_fn, state, data, config, mesh=mesh,
      examples_per_domain=config.eval.figure_slices, stats_fn=stats_fn,
      reference=checkpoint_reference(manager, step, data, config))
  results = dict(
      liverjax_version=liverjax.__version__, experiment=experiment_name(config),
      source=config.data.source, targets=list(config.data.targets),
      normalization=config.data.normalization,
      postprocess=config.eval.postprocess, intensity=config.eval.intensity,
      intensity_gamma=float(config.eval.intensity_gamma),
      adapt_bn=config.eval.get("adapt_bn", "none"),
      organs=list(config.model.organs),
      augment=dict({s: bool(config.augment.get(s, False)) for s in augment_pipeline.SWITCHES},
                   cyclegan=config.translate.cyclegan_workdir),
      checkpoint=source, step=int(step), data_root=data.root,
      source_val_dice=(manager.metrics(step) or {}).get(checkpointing.BEST_METRIC),
      summary=summary, volumes=per_volume)
  return results, examples


def restore_checkpoint(config, workdir, abstract_state):
  """The checkpoint a U-Net run is evaluated with: `config.eval.checkpoint` (a
  `.../checkpoints/<step>` folder) when set, else the best by validation Dice in
  `workdir/checkpoints`.

  Returns:
    (state, step, manager, source): the restored train state, its step, the read-only
    checkpoint manager of its folder and the checkpoint's path as a string.
  """
  if config.eval.checkpoint:
    state, step = checkpointing.restore_path(config.eval.checkpoint, abstract_state)
    manager = checkpointing.open_read_only(pathlib.Path(config.eval.checkpoint).absolute().parent)
    return state, step, manager, str(config.eval.checkpoint)
  manager = checkpointing.create_manager(pathlib.Path(workdir), read_only=True)
  step = checkpointing.best_step(manager)
  state, step = checkpointing.restore(manager, abstract_state, step)
  return state, step, manager, f"{manager.directory}/{step}"


def load_segmenter(path, mesh=None):
  """A trained U-Net as a function of a volume: its best checkpoint (or the given
  `checkpoints/<step>`), restored with the config saved beside it, in eval mode, no test-time
  option, the largest 3D component kept.

  Args:
    path: a U-Net workdir, its `checkpoints/` folder or a `checkpoints/<step>` folder.
    mesh: the device mesh (default: all devices).

  Returns:
    (segment, config): segment(image f32[Z,S,S] in [0,1]) -> u8[Z,S,S] in {0,1}; config is the
    U-Net's (its `data` says how the slices it takes are prepared).

  Raises:
    FileNotFoundError: naming the folder, without a checkpoint or its saved config.
  """
  directory, step = checkpointing.resolve_checkpoint(path)
  saved = checkpointing.restore_config(checkpointing.open_read_only(directory), step)
  if not saved:
    raise FileNotFoundError(f"{directory / str(step)}: checkpoint without a saved config")
  config = configs.from_saved(saved)
  mesh = mesh if mesh is not None else runtime.create_mesh()
  graphdef, abstract, _ = state_lib.abstract_train_state(config, mesh)
  state, _ = checkpointing.restore_path(directory / str(step), abstract)
  predict_fn = state_lib.make_predict_fn(graphdef, mesh)

  def segment(image: np.ndarray) -> np.ndarray:
    prediction, _ = predict_volume(predict_fn, state, image, np.zeros(image.shape, np.float32),
                                   mesh=mesh, batch_size=int(config.eval.batch_size))
    return postprocess_prediction(prediction, "largest_component")

  return segment, config


def _evaluation_fns(config, mesh):
  """(abstract train state, `make_predict_fn`, `make_volume_stats_fn` or None) of `config`."""
  graphdef, abstract_state, _ = state_lib.abstract_train_state(config, mesh)
  stats_fn = None
  if config.eval.get("adapt_bn", "none") != "none":
    stats_fn = state_lib.make_volume_stats_fn(graphdef, mesh)
  return abstract_state, state_lib.make_predict_fn(graphdef, mesh), stats_fn


def checkpoint_curve(config, workdir, *, data: dataset_lib.Dataset | None = None
                     ) -> list[dict]:
  """Every kept checkpoint of `workdir/checkpoints` scored on the test patients of
  `config.data.targets`, with `config.eval`'s options (post-processing, intensity, AdaBN).

  A study of how the target score moves during training (docs/results.md: on real
  scans the CT -> MR Dice falls as training goes on). The target labels draw the curve
  only; the checkpoint a run evaluates is still chosen by source validation Dice.
  Keep more checkpoints with `train.keep_checkpoints`.

  Returns:
    One dict per checkpoint, by step: "step", "val_dice" (the source validation Dice
    logged at that step, or None), and per test group g of `evaluate_domains`
    ("ct", "mr", "mr/t2", ...) "<g>_dice" and "<g>_dice_std": mean and std of the
    per-volume Dice. Raises FileNotFoundError without checkpoints.
  """
  workdir = pathlib.Path(workdir)
  manager = checkpointing.create_manager(workdir, read_only=True)
  steps = sorted(manager.all_steps())
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}")
  if data is None:
    data = dataset_lib.load_dataset(config.data)
  mesh = runtime.create_mesh()
  abstract_state, predict_fn, stats_fn = _evaluation_fns(config, mesh)
  val = {r["step"]: r["val_dice"] for r in metric_writer.read_scalars(workdir)
         if r.get("split") == "val" and "val_dice" in r}
  rows = []
  for step in steps:
    state, _ = checkpointing.restore(manager, abstract_state, step)
    summary, _, _ = evaluate_domains(predict_fn, state, data, config, mesh=mesh,
                                     examples_per_domain=1, stats_fn=stats_fn,
                                     surface_metrics=False,
                                     reference=checkpoint_reference(manager, step, data, config))
    row = {"step": int(step), "val_dice": val.get(step)}
    for group, figures in summary.items():
      row[f"{group}_dice"] = figures["dice"]["mean"]
      row[f"{group}_dice_std"] = figures["dice"]["std"]
    logging.info("checkpoint %d: %s", step, ", ".join(
        f"{k} {v:.3f}" for k, v in row.items() if k.endswith("_dice") and v is not None))
    rows.append(row)
  return rows
