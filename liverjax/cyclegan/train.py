"""The CycleGAN training run: unpaired CT and MR batches, resume, the loop, translation quality.

The step (pure, jit-compiled, sharded, donated) is `liverjax.cyclegan.state`;
the loop pieces shared with the U-Net are in `liverjax.training`.
"""
from __future__ import annotations

import functools
import pathlib

import jax
import ml_collections
import numpy as np
from absl import logging

from liverjax import checkpointing
from liverjax import configs
from liverjax import metric_writer
from liverjax import runtime
from liverjax import training
from liverjax.cyclegan import quality as quality_lib
from liverjax.cyclegan import state as state_lib
from liverjax.cyclegan import translate as translate_lib
from liverjax.data import dataset as dataset_lib
from liverjax.data import pipeline
from liverjax.segmentation import evaluate

NONFINITE_HINT = "Lower cyclegan.learning_rate or use cyclegan.dtype='float32'."


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: dataset_lib.Dataset | None = None) -> dict:
  """Trains a CycleGAN between CT and MR training slices, then measures translation quality.

  Unpaired data: CT training slices and MR training slices (the sequences of
  `data.mr_sequences`) come from two independent input pipelines (seeds
  `seed` and `seed + 1`). Resumes from the latest checkpoint in
  `workdir/checkpoints`. Writes `metrics.jsonl` and TensorBoard scalars,
  sample grids `workdir/samples/step_XXXXXX.png` (and TensorBoard images),
  checkpoints every `cyclegan.checkpoint_every` steps and at the end.

  Returns:
    The results dict (what `reporting.cyclegan.write_report` writes to
    `cyclegan_metrics.json`): the checkpoint and the translation quality on
    the validation and test patients.
  """
  cg = config.cyclegan
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if data is None:
    data = dataset_lib.load_dataset(config.data, trained_domains=("ct", "mr"))
  mr_seqs = dataset_lib.domain_sequences("mr", config.data)
  # A modality with unlabelled scans (`data.<m>.adapt_root`) is translated from and to those
  # scans (its labelled ones are test only); else from its training patients.
  ct_train = data.select("ct", "adapt", ("ct",)) or data.select("ct", "train", ("ct",))
  mr_train = data.select("mr", "adapt", mr_seqs) or data.select("mr", "train", mr_seqs)
  if not ct_train or not mr_train:
    raise configs.ConfigError("data.split", f"the CycleGAN needs CT and MR training volumes; "
                              f"{data.root} has {len(ct_train)} CT and {len(mr_train)} MR "
                              f"({', '.join(mr_seqs)})", tuple(config.data.split))
  ct_images, ct_masks = dataset_lib.stack_slices(ct_train)
  mr_images, mr_masks = dataset_lib.stack_slices(mr_train)

  mesh = runtime.create_mesh()
  init_rng, step_rng = jax.random.split(runtime.prng_key(config))
  manager = checkpointing.create_manager(workdir, keep=cg.keep_checkpoints, best_metric=None)
  state, start_step = training.resume(manager, workdir,
                                      state_lib.abstract_cyclegan_state(config, mesh), config,
                                      "cyclegan")
  if state is None:
    graphs, state, txs = state_lib.create_cyclegan_state(config, mesh, init_rng)
  else:
    graphs, txs = state_lib.model_graphs(cg), (state_lib.update_direction(cg),) * 2
  writer = metric_writer.MetricWriter(workdir)
  cyclegan_step = state_lib.make_cyclegan_step(config, graphs, txs, mesh)
  schedule = state_lib.learning_rate_schedule(cg)
  apply = state_lib.make_translate_fn(graphs.generator)
  config_dict = config.to_dict()
  run = functools.partial(translate_lib.translate_array, mesh=mesh,
                          batch_size=config.eval.batch_size)

  total_steps = int(cg.steps)
  batches = functools.partial(
      pipeline.train_batches, global_batch_size=cg.batch_size, mesh=mesh,
      start_step=start_step, use_tf=config.data.use_tf, shuffle_buffer=config.data.shuffle_buffer,
      batch_field="cyclegan.batch_size")
  ct_batches = batches(ct_images, ct_masks, seed=config.seed)
  mr_batches = batches(mr_images, mr_masks, seed=config.seed + 1)
  logging.info("CycleGAN: %d CT slices (%d volumes), %d MR slices (%d volumes, %s); steps "
               "%d..%d, global batch %d over %d devices", len(ct_images), len(ct_train),
               len(mr_images), len(mr_train), ",".join(mr_seqs), start_step, total_steps,
               cg.batch_size, mesh.size)

  def held_out(domain, seqs):  # labelled slices, for the liver outlines of the samples
    return (data.select(domain, "val", seqs) or data.select(domain, "test", seqs)
            or data.select(domain, "train", seqs))

  sample_ct, outline_ct = quality_lib.pick_sample_slices(held_out("ct", ("ct",)),
                                                         cg.sample_slices)
  sample_mr, outline_mr = quality_lib.pick_sample_slices(held_out("mr", mr_seqs),
                                                         cg.sample_slices)

  def step_fn(state, step):
    ct_batch, mr_batch = next(ct_batches), next(mr_batches)
    return cyclegan_step(state, ct_batch["image"], mr_batch["image"],
                         jax.random.fold_in(step_rng, step), np.float32(schedule(step)))

  def log_line(step, means, rate, eta):
    logging.info("step %d/%d  %.2f steps/s (%.0f image pairs/s)  ETA %s  lr %.2e  G total "
                 "%.4f (g_adv %.4f f_adv %.4f cycle %.4f identity %.4f structure %.4f)  "
                 "D_A %.4f  D_B %.4f", step, total_steps, rate, rate * cg.batch_size, eta,
                 means["learning_rate"], means["total_g"], means["g_adv"], means["f_adv"],
                 means["cycle"], means["identity"], means["structure"], means["d_a"],
                 means["d_b"])

  def write_samples(step, state):
    n = min(len(sample_ct), len(sample_mr))
    if not n:
      return
    grid = quality_lib.sample_grid(functools.partial(run, functools.partial(apply, state.g)),
                                   functools.partial(run, functools.partial(apply, state.f)),
                                   sample_ct[:n], sample_mr[:n])
    if jax.process_index() == 0:
      quality_lib.write_sample_png(grid, workdir / "samples" / f"step_{step:06d}.png", step,
                                   outline_ct[:n], outline_mr[:n])
    writer.write_images(step, {"translations": quality_lib.grid_image(grid)})

  def save(step, state):
    checkpointing.save(manager, step, state, config_dict)

  state, step = training.train_loop(
      state, step_fn, start_step=start_step, total_steps=total_steps, log_every=cg.log_every,
      writer=writer, log_line=log_line,
      actions=[(cg.sample_every, write_samples), (cg.checkpoint_every, save)],
      name="CycleGAN training", nonfinite_hint=NONFINITE_HINT)

  # Translation quality on the held-out patients, with the final state.
  translate_ab = functools.partial(run, functools.partial(apply, state.g))
  translate_ba = functools.partial(run, functools.partial(apply, state.f))
  quality = {}
  # A rerun of a finished (or killed while measuring) run measures again: its
  # records replace those of the earlier attempt.
  splits = paired_splits(data, mr_seqs, ("val", "test"))
  metric_writer.drop_records(workdir, step, tuple(splits))
  if not splits:
    logging.warning("no held-out CT and MR volumes: no translation quality")
  for split, (ct_vols, mr_vols) in splits.items():
    ct_split, _ = dataset_lib.stack_slices(ct_vols)
    mr_split, _ = dataset_lib.stack_slices(mr_vols)
    q = functools.partial(quality_lib.translation_quality, bins=int(cg.histogram_bins),
                          threshold=float(cg.body_threshold))
    quality[split] = {"ct_to_mr": q(translate_ab, translate_ba, ct_split, mr_split),
                      "mr_to_ct": q(translate_ba, translate_ab, mr_split, ct_split)}
    writer.write_scalars(step, {f"{d}_{k}": v for d, r in quality[split].items()
                                for k, v in r.items()}, split=split)
  task = task_scores(config, data, translate_ab, translate_ba, mesh)
  writer.flush()
  return dict(experiment="cyclegan", checkpoint=f"{manager.directory}/{step}",
              step=int(step), data_root=data.root, mr_sequences=list(mr_seqs),
              bins=int(cg.histogram_bins), body_threshold=float(cg.body_threshold),
              quality=quality, task_score=task)


def paired_splits(data: dataset_lib.Dataset, mr_seqs, names) -> dict:
  """Labelled CT and MR volumes to measure a translation on, per split of `names` that holds
  both modalities; where none does (a modality with unlabelled scans has its labelled ones in
  "test" alone), "held-out": each modality's val + test volumes.

  Returns:
    split name -> (CT volumes, MR volumes), both non-empty.
  """
  out = {}
  for split in names:
    ct, mr = data.select("ct", split, ("ct",)), data.select("mr", split, mr_seqs)
    if ct and mr:
      out[split] = (ct, mr)
  if not any(n in out for n in ("val", "test")):
    ct = data.select("ct", "val", ("ct",)) + data.select("ct", "test", ("ct",))
    mr = data.select("mr", "val", mr_seqs) + data.select("mr", "test", mr_seqs)
    if ct and mr:
      out["held-out"] = (ct, mr)
  return out


def task_scores(config, data: dataset_lib.Dataset, translate_ab, translate_ba, mesh) -> dict:
  """The task-based translation score (`quality.task_score`) per split of labelled scans, when
  `cyclegan.task_unet_ct` and `cyclegan.task_unet_mr` name U-Nets trained on each modality
  (prepared like this run's slices); {} otherwise.

  Returns:
    split -> {"ct_to_mr": G's score with the MR U-Net, "mr_to_ct": F's with the CT U-Net}.
  """
  cg = config.cyclegan
  if not (cg.get("task_unet_ct") and cg.get("task_unet_mr")):
    return {}
  mr_seqs = dataset_lib.domain_sequences("mr", config.data)
  segment = {}
  for domain in ("ct", "mr"):
    segment[domain], unet_config = evaluate.load_segmenter(cg[f"task_unet_{domain}"], mesh)
    for field in ("image_size", "field_of_view", "normalization"):
      if unet_config.data.get(field) != config.data.get(field):
        raise configs.ConfigError(f"cyclegan.task_unet_{domain}", f"was trained with data."
                                  f"{field}={unet_config.data.get(field)!r}, the CycleGAN with "
                                  f"{config.data.get(field)!r}", cg[f"task_unet_{domain}"])
  out = {}
  for split, (ct, mr) in paired_splits(data, mr_seqs, ("train", "val", "test")).items():
    out[split] = {"ct_to_mr": quality_lib.task_score(translate_ab, segment["mr"], ct),
                  "mr_to_ct": quality_lib.task_score(translate_ba, segment["ct"], mr)}
    logging.info("CycleGAN task score (%s): CT -> MR %.3f (untranslated %.3f), MR -> CT "
                 "%.3f (untranslated %.3f)", split, out[split]["ct_to_mr"]["translated"],
                 out[split]["ct_to_mr"]["untranslated"], out[split]["mr_to_ct"]["translated"],
                 out[split]["mr_to_ct"]["untranslated"])
  return out
