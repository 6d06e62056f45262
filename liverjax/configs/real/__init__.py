"""The real protocol: real CT and real MR T2-SPIR scans from ../shared/data.

CT = the 8 BTCV volumes (`real_dev/btcv_ct`, NIfTI) + the CHAOS CT patient
(`chaos_ct_sample`, DICOM + PNG); MR = the 10 CHAOS T2-SPIR patients
(`real_dev/chaos_t2`, NIfTI). Paths are resolved from this file's location
(the repository's `../shared/data`), so the configs work from the repository
root; override them with `--config.data.ct.root=...` / `--config.data.mr.root=...`
(a path or a tuple of paths, CHAOS or NIfTI folders).

The augmentation recipes are defined once, in RECIPES; the named files
(`ct_to_mr_gin.py`, ...) are `get_real_config(<source>, <recipe>)`, and
`best_ct_to_mr.py` / `best_mr_to_ct.py` the recipe of BEST per source.
"""
import pathlib

import ml_collections

from liverjax.configs import default

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data"
CT_ROOTS = (str(SHARED_DATA / "real_dev" / "btcv_ct"), str(SHARED_DATA / "chaos_ct_sample"))
MR_ROOTS = (str(SHARED_DATA / "real_dev" / "chaos_t2"),)


def set_real_sources(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Points `config.data` at the real development set where no source is set; MR = T2-SPIR.

  Returns `config` (modified in place): `data.ct.root` = CT_ROOTS unless
  `data.root` or `data.ct.root` is set, likewise `data.mr.root` = MR_ROOTS,
  and `data.mr_sequences` = ("t2",).
  """
  if not (config.data.root or config.data.ct.root):
    config.data.ct.root = CT_ROOTS
  if not (config.data.root or config.data.mr.root):
    config.data.mr.root = MR_ROOTS
  config.data.mr_sequences = ("t2",)
  return config


# Recipe -> {config section: fields it sets}. The two-view recipes (IPA, SLAug's
# saliency fusion) run two forward/backward passes over the batch, so they take
# 8 source slices per step: about the cost of the plain 16-slice step.
# "histmatch" and "multiorgan" change the evaluation or the model, not the
# augmentation (README: evaluation options).
_SLAUG = dict(location_scale=True, location_scale_local=True, saliency_fusion=True)
RECIPES = {
    "baseline": {},
    "augmix": dict(augment=dict(augmix=True)),
    "domain_augmix": dict(augment=dict(domain=True, augmix=True)),
    "gin": dict(augment=dict(gin=True)),
    "gin_ipa": dict(augment=dict(gin=True, ipa=True), train=dict(batch_size=8)),
    "slaug": dict(augment=_SLAUG, train=dict(batch_size=8)),
    "histmatch": dict(eval=dict(intensity="histogram_match")),
    "multiorgan": dict(model=dict(organs=("liver", "spleen", "kidney_r", "kidney_l"))),
}
# The best recipe per source domain and its test-time intensity option (`eval.intensity`),
# from the real-protocol runs in docs/results.md, and the steps the best configs train for
# (~15 min or less on 2 CPU cores). MR -> CT: domain + AugMix without flips, with AdaBN, 3
# seeds: 0.821 +- 0.038 at 64 px, 0.865 +- 0.034 at 96 px (AugMix alone at 64 px: 0.795 +-
# 0.116; docs/results.md, "Real scans", MR -> CT, 2026-11-27).
BEST = {"ct": "baseline", "mr": "domain_augmix"}
BEST_INTENSITY = {"ct": "histogram_match", "mr": "none"}
# CT -> MR: after the matching, T2 intensities x -> x ** 0.3 (`eval.intensity_gamma`). Global
# matching leaves the T2 liver darker than CT's (it sits lower in T2's body histogram). On the
# plain U-Net's checkpoints (3 seeds) the target Dice rises from 0.524 at gamma 1 to 0.707 at
# 0.3; choosing gamma on the other patients (leave one patient out, or either half) picks 0.3
# every time. GIN, the earlier CT recipe, gains less (0.547 -> 0.624 at 0.5) and ends below the
# plain U-Net, which keeps its source Dice. docs/results.md, "Test-time options", the gamma,
# 2026-11-27.
BEST_INTENSITY_GAMMA = {"ct": 0.3, "mr": 1.0}
# Test-time batch-norm adaptation per target volume (`eval.adapt_bn`): on the same
# checkpoints, pooled over seeds, CT -> MR GIN + matching 0.384 -> 0.512 and MR -> CT
# domain + AugMix 0.695 -> 0.710 (docs/results.md).
BEST_ADAPT_BN = {"ct": "volume", "mr": "volume"}
# Steps per source, validated 4 times (the best checkpoint by source validation Dice is
# evaluated). CT -> MR: the plain U-Net's 400 steps, as measured (with GIN the target Dice fell
# as training went on: 0.50-0.59 at steps 375-500, 0.40-0.44 at 1000-2000). docs/results.md.
BEST_STEPS = {"ct": 400, "mr": 1000}
# Slice size per source (`data.image_size`; the target Dice is scored on this grid). MR -> CT at
# 96 px: 0.870 against 0.836 at 64 px (seed 0), ~10 min on 2 CPU cores. CT -> MR at 96 px:
# 0.685 against 0.697 (seed 0), so it stays at 64. docs/results.md, "Real scans", MR -> CT at
# 96 px, 2026-11-28.
BEST_IMAGE_SIZE = {"ct": 64, "mr": 96}
# In-plane field of view (`data.field_of_view`, mm) of the best configs: every scan is resampled
# to 320 / image_size mm pixels and centred, so the liver has the same size in pixels whatever
# the scanner's field of view. The development T2 scans are all 320 mm (the CT 267-377 mm);
# the CHAOS challenge's own T2 DICOMs are wider. With the whole slice resized instead, the
# plain CT -> MR model scored 0.697 on the T2 scans as they are, 0.676 and 0.601 on the same
# scans padded to a 400 / 460 mm field of view; trained with 320 mm it scores 0.701 / 0.703 /
# 0.702 (seed 0). 360 mm costs resolution at these sizes (CT -> MR 0.675, MR -> CT 0.851
# against 0.870, seed 0). 320 mm cuts none of the development set's livers but 0.7 % of one
# CT's (btcv_ct_025, at the edge of its 336 mm scan). docs/results.md, "The field of view",
# 2026-11-28.
BEST_FIELD_OF_VIEW = 320.0


# The CycleGAN on real scans (`configs/cyclegan.py:real`, the study's and the UDA configs'
# translator), at BEST_FIELD_OF_VIEW mm and 64 px. The U-Net generator: its skips keep the
# anatomy where it is; the paper's ResNet generator (the `cpu` preset) lost it on real scans (a
# noise-textured body, no liver: task score 0.60 / 0.12 against 0.74 / 0.39, seed 0). A
# 34 px PatchGAN (2 layers): at 64 px the 70 px one sees the whole slice. 1000 steps: the
# task score moved by +0.003 (CT -> MR) and +0.04 (MR -> CT) from step 500 to 1000. The MIND
# structure term (lambda_structure 5) did not help (0.715 / 0.307). docs/results.md.
CYCLEGAN = dict(batch_size=8, generator="unet", generator_features=16, generator_depth=3,
                discriminator_features=32, discriminator_layers=2, lambda_structure=0.0,
                steps=1000, log_every=50, sample_every=250, checkpoint_every=500)


def get_best_config(source: str) -> ml_collections.ConfigDict:
  """The best recipe of `source` (BEST) on BEST_IMAGE_SIZE[source]-pixel slices of a
  BEST_FIELD_OF_VIEW mm field of view, trained for
  BEST_STEPS[source] steps, evaluated with
  BEST_ADAPT_BN (batch-norm statistics re-estimated on each target volume), BEST_INTENSITY and
  BEST_INTENSITY_GAMMA: CT -> MR matches each target volume's histogram to the source's
  training slices, then brightens it (x ** 0.3); MR -> CT does neither (matching: -0.02 over 2
  seeds on the same domain + AugMix checkpoints; no gamma helped). Figures: docs/results.md."""
  config = get_real_config(source, BEST[source])
  config.data.image_size = BEST_IMAGE_SIZE[source]
  config.data.field_of_view = BEST_FIELD_OF_VIEW
  steps = BEST_STEPS[source]
  config.train.update(steps=steps, eval_every=steps // 4, log_every=50)
  config.eval.intensity = BEST_INTENSITY[source]
  config.eval.intensity_gamma = BEST_INTENSITY_GAMMA[source]
  config.eval.adapt_bn = BEST_ADAPT_BN[source]
  return config


def get_real_config(source: str, recipe: str = "baseline") -> ml_collections.ConfigDict:
  """The default config on the real development set, trained on `source` ("ct" | "mr").

  Sized for a few minutes on a 2-core CPU: 64 px slices, a depth-4 U-Net with
  16 base channels, 400 steps of 16 slices. The source modality's patients go
  80/20 to train / validation (the best checkpoint by validation Dice is
  evaluated; no source test patients with 9-10 volumes), the target
  modality's all to test. `recipe`: a key of RECIPES (its fields set on top,
  section by section).
  """
  if recipe not in RECIPES:
    raise ValueError(f"unknown recipe {recipe!r}; expected one of {list(RECIPES)}")
  config = set_real_sources(default.get_config())
  config.data.source = source
  config.data.targets = ("ct", "mr")
  config.data.image_size = 64
  config.data.split = (0.8, 0.2, 0.0)
  config.train.update(batch_size=16, steps=400, log_every=50, eval_every=100)
  # No left-right flips in AugMix's geometric step: a flipped slice puts the liver on the
  # patient's left, and a model trained on such slices also marks left-sided organs. On real
  # scans, MR -> CT domain + AugMix (1000 steps, AdaBN) scored 0.71 with flips (0.5) against
  # 0.84 without, its false positives on the heart, spleen and colon gone. docs/results.md,
  # "Real scans", left-right flips, 2026-11-27.
  config.augment.flip_prob = 0.0
  for section, fields in RECIPES[recipe].items():
    config[section].update(fields)
  return config


# The unlabelled-target recipe (self-training on `data.<m>.adapt_root`, #25) per source; the
# files `uda_ct_to_mr.py` / `uda_mr_to_ct.py` are `get_uda_config(<source>)`. The target's
# development patients are halved (`data.sources.halve_shared_folder`): the target folder is
# both `data.<m>.root` (tested) and `data.<m>.adapt_root` (unlabelled), so half the patients
# adapt and the other half test. With `--config.data.<m>.root=<other patients>` every
# development scan adapts.
UDA_ROUNDS = {"ct": 1, "mr": 1}
# The students' own fields per source, section by section (`augment` switches in
# `self_training.student_augment` are on for the students only; the teacher is the best config
# as it is). CT -> MR: the plain student (its teacher's recipe and 400 steps). A student with GIN
# on half its slices for 1000 steps scored 0.666 against 0.637 on the T2 test half (3 seeds),
# all of it on one dark-liver patient (chaos_t2_015, 0.00 -> 0.18); with the halves swapped
# (tested on the other five patients, chaos_t2_015's wrong pseudo-label among the adapt scans,
# as when every development scan adapts) it lost to its teachers (0.732 against 0.771; one seed
# 0.653) where the plain student did not (0.780). MR -> CT, whose teacher already trains with
# the domain transformation and AugMix: 2000 student steps, twice its teacher's. On the CT test
# half, 3 seeds, from the same teachers (0.858): 0.880 against 0.867 for the 1000-step student,
# every seed above its teacher (+0.019 to +0.027), source validation Dice 0.872 against 0.846
# (teachers 0.838); a GIN student lost 0.009 to its teachers (2 seeds). With the halves swapped
# (2026-12-06) the 2000-step student scored 0.902 against its teachers' 0.886, every seed
# above; labelled CT U-Nets at the same size 0.872 / 0.887 on the two halves. docs/results.md,
# "Augmenting the student", "Longer students" and "Both halves".
UDA_STUDENT = {
    "ct": {},
    "mr": dict(self_training=dict(student_steps=2000)),
}


def get_uda_config(source: str) -> ml_collections.ConfigDict:
  """The best configuration of `source` (`get_best_config`) with self-training on the target
  development scans, used without labels (`self_training`): the best model is the teacher,
  with its test-time options; UDA_ROUNDS[source] students, each trained and tested on the
  target slices as the teacher sees them (CT -> MR: matched to the source, then the gamma) and
  with batch-norm statistics of each test scan, with UDA_STUDENT[source]'s fields (MR -> CT:
  2000 student steps)."""
  config = get_best_config(source)
  target = "mr" if source == "ct" else "ct"
  config.data[target].adapt_root = config.data[target].root
  config.self_training.update(rounds=UDA_ROUNDS[source],
                              student_intensity=BEST_INTENSITY[source],
                              student_adapt_bn=BEST_ADAPT_BN[source])
  for section, fields in UDA_STUDENT[source].items():
    config[section].update(fields)
  return config


# The rows of the real study (`liverjax.study --size=cpu`): name -> the recipe of RECIPES,
# trained at BEST_FIELD_OF_VIEW like the best configs and the CycleGAN, so that every row is
# prepared alike; "best" and "uda" are the configs of those names. The study sets the
# CycleGAN of the "cyclegan" rows (`translate.cyclegan_workdir`).
STUDY_ROWS = {"baseline": "baseline", "domain+augmix": "domain_augmix", "cyclegan": "baseline",
              "cyclegan+augmix": "augmix"}


def get_study_row_config(source: str, row: str) -> ml_collections.ConfigDict:
  """The config of one row of the real study trained on `source` ("ct" | "mr").

  Args:
    source: the trained modality.
    row: a key of STUDY_ROWS, "best" or "uda".

  Returns:
    A config: STUDY_ROWS' recipes on BEST_FIELD_OF_VIEW mm slices of 64 px;
    `get_best_config` / `get_uda_config` for "best" / "uda".
  """
  if row == "best":
    return get_best_config(source)
  if row == "uda":
    return get_uda_config(source)
  if row not in STUDY_ROWS:
    raise ValueError(f"unknown study row {row!r}; expected one of "
                     f"{list(STUDY_ROWS) + ['best', 'uda']}")
  config = get_real_config(source, STUDY_ROWS[row])
  config.data.field_of_view = BEST_FIELD_OF_VIEW
  return config
