"""Every config field checked before a run starts: one `ConfigError` naming the field.

`check(config)` is called by both entry points (`liverjax.main`,
`liverjax.study`) right after the command line is parsed, before any data is
read or any program is compiled, so that a bad value (a negative learning
rate, batch 0, an image size the U-Net cannot halve `model.depth` times, an
unknown domain or MR sequence, a split with no training patients) stops the
run at once with one line instead of a traceback minutes later.
`check_devices(config, n)` adds the checks that need the device count.

Only values are checked here; whether files exist (data roots, checkpoints, a
CycleGAN workdir) is found out when they are read, and reported naming the file.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import ml_collections

from liverjax import configs
from liverjax import experiment
from liverjax.configs import ConfigError
from liverjax.configs import real as real_configs
from liverjax.configs import unet as unet_configs
from liverjax.data import chaos
from liverjax.data import dataset as dataset_lib
from liverjax.models import unet

NORMALIZATIONS = ("window", "zscore")  # liverjax.data.preprocess.prepare_volume
SCHEDULES = ("constant", "cosine")  # liverjax.segmentation.state
DTYPES = tuple(unet.DTYPES)
RNG_IMPLS = ("rbg", "threefry2x32", "unsafe_rbg")
MR_SEQUENCES = tuple(s for s in chaos.SEQUENCES if s != "ct")
PROTOCOLS = ("all", "t2spir", "real")  # liverjax.study.apply_protocol
GENERATORS = ("resnet", "unet")  # liverjax.cyclegan.state.GENERATORS
# The one-view `augment` switches a self-training student may add (`self_training.student_augment`;
# the two-view recipes, IPA and saliency fusion, change the step and need their partner switch).
STUDENT_AUGMENT = ("spatial", "domain", "augmix", "gin", "location_scale")


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  node = config
  for part in field.split("."):
    if part not in node:
      raise ConfigError(field, "missing (every config starts from configs/default.py)")
    node = node[part]
  return node


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return (isinstance(v, (int, float)) and not isinstance(v, bool)
          and math.isfinite(float(v)))


def _int(config, field: str, minimum: int, maximum: int | None = None) -> int:
  v = _get(config, field)
  if not _is_int(v) or v < minimum or (maximum is not None and v > maximum):
    bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    raise ConfigError(field, f"expected an integer {bound}", v)
  return v


def _number(config, field: str, low: float, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> float:
  v = _get(config, field)
  ok = _is_number(v) and (v > low if low_open else v >= low)
  if high is not None:
    ok = ok and (v < high if high_open else v <= high)
  if not ok:
    lo = f"> {low}" if low_open else f">= {low}"
    hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
    raise ConfigError(field, f"expected a number {lo}{hi}", v)
  return float(v)


def _choice(config, field: str, choices: Sequence[str]) -> str:
  v = _get(config, field)
  if v not in choices:
    raise ConfigError(field, f"expected one of {tuple(choices)}", v)
  return v


def _subset(config, field: str, choices: Sequence[str], *, empty: bool = False) -> tuple:
  v = _get(config, field)
  items = (v,) if isinstance(v, str) else tuple(v) if isinstance(v, (tuple, list)) else None
  if (items is None or (not items and not empty) or any(x not in choices for x in items)
      or len(set(items)) != len(items)):
    raise ConfigError(field, f"expected a {'' if empty else 'non-empty '}tuple of distinct "
                      f"names from {tuple(choices)}", v)
  return items


def _numbers(config, field: str, length: int) -> tuple[float, ...]:
  v = _get(config, field)
  if (not isinstance(v, (tuple, list)) or len(v) != length
      or not all(_is_number(x) for x in v)):
    raise ConfigError(field, f"expected {length} numbers", v)
  return tuple(float(x) for x in v)


def _check_data(config) -> None:
  source = _choice(config, "data.source", dataset_lib.DOMAINS)
  _subset(config, "data.targets", dataset_lib.DOMAINS)
  _subset(config, "data.mr_sequences", MR_SEQUENCES)
  if _get(config, "data.mr.sequence") is not None:
    _choice(config, "data.mr.sequence", MR_SEQUENCES)
  for domain in dataset_lib.DOMAINS:
    if _get(config, f"data.{domain}.liver_label") is not None:
      _int(config, f"data.{domain}.liver_label", 1)
  _int(config, "data.image_size", 8)
  if _get(config, "data.field_of_view") is not None:
    _number(config, "data.field_of_view", 1.0)
  _choice(config, "data.normalization", NORMALIZATIONS)
  center, width = _numbers(config, "data.ct_window", 2)
  if width <= 0:
    raise ConfigError("data.ct_window", "expected (center, width) with width > 0 HU",
                      (center, width))
  lo, hi = _numbers(config, "data.mr_percentiles", 2)
  if not 0 <= lo < hi <= 100:
    raise ConfigError("data.mr_percentiles", "expected (low, high) with 0 <= low < high <= 100",
                      (lo, hi))
  split = _numbers(config, "data.split", 3)
  if min(split) < 0 or split[0] <= 0:
    raise ConfigError("data.split", "expected 3 fractions (train, val, test), none negative, "
                      f"train > 0 (the {source} patients to train on)", tuple(split))
  _int(config, "data.split_seed", 0)
  folds = _int(config, "data.folds", 0)
  if folds == 1:
    raise ConfigError("data.folds", "k-fold needs k >= 2 (0: off)", folds)
  _int(config, "data.fold", 0, max(folds - 1, 0))
  _int(config, "data.shuffle_buffer", 1)
  if not _get(config, "data.cache_dir"):
    raise ConfigError("data.cache_dir", "expected a folder", _get(config, "data.cache_dir"))
  synthetic = not (_get(config, "data.root") or _get(config, "data.ct.root")
                   or _get(config, "data.mr.root"))
  if synthetic:  # the synthetic dataset is generated: its size must make sense
    _int(config, "data.synthetic.ct", 1)
    _int(config, "data.synthetic.mr", 1)
    _int(config, "data.synthetic.size", 16)
    _int(config, "data.synthetic.slices", 1)
    _int(config, "data.synthetic.seed", 0)


def _check_unet(config) -> None:
  depth = _int(config, "model.depth", 1, 8)
  _int(config, "model.base_features", 1)
  _choice(config, "model.norm", unet.NORMS)
  _choice(config, "model.dtype", DTYPES)
  size = _get(config, "data.image_size")
  if size % 2**depth:
    raise ConfigError("data.image_size", f"must be divisible by 2**model.depth = {2**depth} "
                      f"(the U-Net halves it {depth} times); e.g. "
                      f"{max(2**depth, size // 2**depth * 2**depth)}", size)
  steps = _int(config, "train.steps", 1)
  _int(config, "train.batch_size", 1)
  _number(config, "train.learning_rate", 0, low_open=True)
  _choice(config, "train.schedule", SCHEDULES)
  _int(config, "train.warmup_steps", 0)
  weights = [_number(config, f"train.{w}_weight", 0) for w in ("dice", "bce", "jaccard")]
  if not any(weights):
    raise ConfigError("train.dice_weight", "the loss weights (dice, bce, jaccard) are all 0",
                      weights[0])
  _int(config, "train.log_every", 1)
  _int(config, "train.eval_every", 1)
  _int(config, "train.keep_checkpoints", 1)
  _number(config, "train.ema_decay", 0, 1, high_open=True)
  if steps and _get(config, "train.warmup_steps") > steps:
    raise ConfigError("train.warmup_steps", f"longer than train.steps = {steps}",
                      _get(config, "train.warmup_steps"))
  _number(config, "augment.domain_prob", 0, 1)
  _int(config, "augment.augmix_width", 1)
  low, high = _numbers(config, "augment.augmix_depth", 2)
  if not (low == int(low) and high == int(high) and 1 <= low <= high):
    raise ConfigError("augment.augmix_depth", "expected (min, max) ops per chain, "
                      "integers with 1 <= min <= max", _get(config, "augment.augmix_depth"))
  _number(config, "augment.augmix_alpha", 0, low_open=True)
  _int(config, "augment.augmix_severity", 1, 10)
  _number(config, "augment.flip_prob", 0, 1)
  _number(config, "augment.spatial_rotate", 0, 180)
  _number(config, "augment.spatial_translate", 0, 0.5)
  low, high = _numbers(config, "augment.spatial_scale", 2)
  if not 0 < low <= high:
    raise ConfigError("augment.spatial_scale", "expected (min, max) zoom with 0 < min <= max",
                      _get(config, "augment.spatial_scale"))
  _number(config, "translate.mix", 0, 1)
  _int(config, "translate.batch_size", 1)
  _int(config, "eval.batch_size", 1)
  _int(config, "eval.figure_slices", 0)
  intensity = _choice(config, "eval.intensity", ("none", "histogram_match"))
  if _number(config, "eval.intensity_gamma", 0, low_open=True) != 1.0 and intensity == "none":
    raise ConfigError("eval.intensity_gamma", "applies after histogram matching: needs "
                      "eval.intensity='histogram_match'", _get(config, "eval.intensity_gamma"))
  if _choice(config, "eval.adapt_bn", ("none", "volume")) != "none":
    _int(config, "eval.adapt_bn_slices", 1)
    if _get(config, "model.norm") != "batch":
      raise ConfigError("eval.adapt_bn", "re-estimates batch-norm statistics: needs "
                        "model.norm='batch'", _get(config, "eval.adapt_bn"))
  _check_adaptation(config)


def _check_adaptation(config) -> None:
  """The unlabelled target scans (`data.<m>.adapt_root`) and `self_training` of a U-Net run."""
  source = _get(config, "data.source")
  if "study" not in config and _get(config, f"data.{source}.adapt_root"):
    raise ConfigError(f"data.{source}.adapt_root", f"unlabelled scans are of a target "
                      f"modality; the source ({source}) is trained with its labels",
                      _get(config, f"data.{source}.adapt_root"))
  if "self_training" not in config:
    return
  rounds = _int(config, "self_training.rounds", 0, 10)
  _number(config, "self_training.confidence", 0.5, 1, low_open=True)
  low = _number(config, "self_training.min_liver_ml", 0)
  if _number(config, "self_training.max_liver_ml", 0) <= low:
    raise ConfigError("self_training.max_liver_ml", f"must exceed self_training.min_liver_ml "
                      f"= {low}", _get(config, "self_training.max_liver_ml"))
  _number(config, "self_training.min_confident_fraction", 0, 1)
  _number(config, "self_training.target_fraction", 0, 1, low_open=True, high_open=True)
  _int(config, "self_training.student_steps", 0)
  _subset(config, "self_training.student_augment", STUDENT_AUGMENT, empty=True)
  _number(config, "self_training.ignore_margin_mm", 0)
  _number(config, "self_training.ignore_below_mm", 0)
  named = configs.teacher_paths(_get(config, "self_training.teacher"))
  if _int(config, "self_training.teachers", 1, 10) < len(named):
    raise ConfigError("self_training.teachers", f"counts every teacher: self_training.teacher "
                      f"names {len(named)}", _get(config, "self_training.teachers"))
  _choice(config, "self_training.student_intensity", ("none", "histogram_match"))
  if _choice(config, "self_training.student_adapt_bn", ("none", "volume")) != "none" and (
      _get(config, "model.norm") != "batch"):
    raise ConfigError("self_training.student_adapt_bn", "re-estimates batch-norm statistics: "
                      "needs model.norm='batch'", _get(config, "self_training.student_adapt_bn"))
  if not rounds or "study" in config:
    return
  target = "mr" if source == "ct" else "ct"
  if not _get(config, f"data.{target}.adapt_root"):
    raise ConfigError(f"data.{target}.adapt_root", f"self-training (self_training.rounds="
                      f"{rounds}) labels unlabelled {target.upper()} scans: set their folder",
                      None)
  if tuple(_get(config, "model.organs")) != ("liver",):
    raise ConfigError("model.organs", "self-training pseudo-labels the liver alone; train the "
                      "liver model", tuple(_get(config, "model.organs")))
  if _get(config, "augment.location_scale_local"):
    raise ConfigError("augment.location_scale_local", "needs organ maps, which the "
                      "pseudo-labelled target scans do not have (self-training)", True)


def discriminator_output_size(size: int, layers: int) -> int:
  """The side of the PatchGAN's output map for a `size` x `size` input
  (`models.cyclegan`: `layers` 4x4 stride-2 convs, then two stride-1, padding 1)."""
  for _ in range(layers):
    size = (size - 2) // 2 + 1
  return size - 2


def _check_cyclegan(config) -> None:
  cg = "cyclegan"
  generator = _choice(config, f"{cg}.generator", GENERATORS)
  _int(config, f"{cg}.generator_features", 1)
  _int(config, f"{cg}.generator_blocks", 0)
  depth = _int(config, f"{cg}.generator_depth", 1, 6)
  _int(config, f"{cg}.discriminator_features", 1)
  layers = _int(config, f"{cg}.discriminator_layers", 1, 6)
  _choice(config, f"{cg}.dtype", DTYPES)
  _int(config, f"{cg}.batch_size", 1)
  _int(config, f"{cg}.steps", 1)
  _number(config, f"{cg}.learning_rate", 0, low_open=True)
  _number(config, f"{cg}.beta1", 0, 1, high_open=True)
  _number(config, f"{cg}.beta2", 0, 1, high_open=True)
  _number(config, f"{cg}.decay_start_fraction", 0, 1)
  _number(config, f"{cg}.lambda_cycle", 0)
  _number(config, f"{cg}.lambda_identity", 0)
  _number(config, f"{cg}.lambda_structure", 0)
  _int(config, f"{cg}.pool_size", 0)
  for every in ("log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
    _int(config, f"{cg}.{every}", 1)
  _int(config, f"{cg}.sample_slices", 1)
  _int(config, f"{cg}.histogram_bins", 2)
  _number(config, f"{cg}.body_threshold", 0, 1)
  size = _get(config, "data.image_size")
  if generator == "resnet" and size % 4:
    raise ConfigError("data.image_size", "must be divisible by 4 for the CycleGAN generator "
                      "(two stride-2 stages)", size)
  if generator == "unet" and size % 2**depth:
    raise ConfigError("data.image_size", f"must be divisible by 2**cyclegan.generator_depth = "
                      f"{2**depth} for the U-Net generator", size)
  if discriminator_output_size(size, layers) < 1:
    raise ConfigError("data.image_size", f"too small for a PatchGAN of {layers} stride-2 "
                      f"layers (cyclegan.discriminator_layers)", size)


def _check_study(config) -> None:
  _int(config, "study.seeds", 1)
  _subset(config, "study.directions", tuple(unet_configs.DIRECTIONS))
  protocol = _choice(config, "study.protocol", PROTOCOLS)
  _subset(config, "study.experiments", tuple(unet_configs.EXPERIMENTS)
          + (("best", "uda") if protocol == "real" else ()))
  if protocol == "real":
    for e in _get(config, "study.experiments"):
      if e not in real_configs.STUDY_ROWS and e not in ("best", "uda"):
        raise ConfigError("study.experiments", f"{e!r} is no row of the real study; expected "
                          f"some of {list(real_configs.STUDY_ROWS) + ['best', 'uda']}",
                          tuple(_get(config, "study.experiments")))
  folds = _int(config, "study.in_domain_folds", 0)
  if folds == 1:
    raise ConfigError("study.in_domain_folds", "k-fold needs k >= 2 (0: no in-domain rows)", 1)


def check(config: ml_collections.ConfigDict) -> None:
  """Checks every field `config.experiment` uses (and `config.study` when present).

  Args:
    config: an experiment config (`configs/default.py` and variants) or a
      study config (`configs/study.py`, with the section `study`).

  Raises:
    ConfigError: for the first bad field, naming it, its value and what is
      expected.
  """
  name = _choice(config, "experiment", experiment.EXPERIMENTS)
  _int(config, "seed", 0)
  _choice(config, "rng_impl", RNG_IMPLS)
  _check_data(config)
  study = "study" in config
  if name == "segmentation" or study:
    _check_unet(config)
  if name == "cyclegan" or study:
    _check_cyclegan(config)
  if study:
    _check_study(config)


def check_devices(config: ml_collections.ConfigDict, device_count: int) -> None:
  """The checks that need the number of devices: a global training batch is
  split evenly over them.

  Raises:
    ConfigError: naming the batch size field that does not divide.
  """
  study = "study" in config
  fields = []
  if _get(config, "experiment") == "segmentation" or study:
    fields.append("train.batch_size")
  if _get(config, "experiment") == "cyclegan" or study:
    fields.append("cyclegan.batch_size")
  for field in fields:
    v = _get(config, field)
    if v % device_count:
      suggestion = max(device_count, v // device_count * device_count)
      raise ConfigError(field, f"must be divisible by the number of devices "
                        f"({device_count}); e.g. {suggestion}", v)
