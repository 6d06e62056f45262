"""Default configuration: every field of every section, with its meaning.

The experiments (`unet.py:<direction>[,<experiment>]`, `cyclegan.py`, `study.py`)
start from `get_config` here and set a few fields. Any field can also be
overridden on the command line:
`python -m liverjax.main --config=configs/ct_to_mri.py --config.train.steps=500`.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration (CT -> CT baseline on synthetic data)."""
  config = ml_collections.ConfigDict()
  config.experiment = "segmentation"  # "segmentation" | "cyclegan"
  config.seed = 0
  # PRNG implementation of every key the experiment draws ("rbg" compiles much
  # faster than JAX's default "threefry2x32"; see liverjax.runtime.prng_key).
  config.rng_impl = "rbg"

  # ---------------------------------------------------------------- data
  config.data = data = ml_collections.ConfigDict()
  # A CHAOS folder (`CHAOS_Train_Sets`, `Train_Sets`, or a folder holding CT/
  # and MR/). None: generate the synthetic CHAOS dataset into `cache_dir`.
  data.root = ml_collections.FieldReference(None, field_type=str)
  # Sources per modality (liverjax.data.sources.resolve_sources), read in
  # addition to `root`: each `root` is a path or a tuple of paths, every one a
  # CHAOS folder or a NIfTI dataset folder (MSD / nnU-Net: dataset.json +
  # imagesTr/ + labelsTr/; or plain images/ + labels/), auto-detected; only
  # that modality is read from it. Relative paths are relative to the working
  # directory. `liver_label`: the NIfTI liver label value (None: dataset.json
  # `labels["liver"]`; 1 for a plain folder). `mr.sequence`: the MR sequence of
  # NIfTI MR data ("t1_in" | "t1_out" | "t2"; None: from dataset.json, "t2"
  # for a generic "MR" channel). With root, ct.root and mr.root all None, the
  # synthetic CHAOS dataset is used.
  # `adapt_root`: target-modality scans used WITHOUT labels (a path or a tuple, CHAOS or NIfTI,
  # as `root`; a folder of NIfTI images alone is enough): no label file there is opened. They
  # are the CycleGAN's side of that modality and what self-training pseudo-labels
  # (`self_training`); they are never tested. With it set, that modality's `root` is test only.
  # A folder named both as `root` and `adapt_root` is split in half by patient (sorted ids,
  # alternately, the first to adapt; `sources.halve_shared_folder`), so no scan is both.
  data.ct = ml_collections.ConfigDict(dict(
      root=ml_collections.FieldReference(None, field_type=object),
      adapt_root=ml_collections.FieldReference(None, field_type=object),
      liver_label=ml_collections.FieldReference(None, field_type=int)))
  data.mr = ml_collections.ConfigDict(dict(
      root=ml_collections.FieldReference(None, field_type=object),
      adapt_root=ml_collections.FieldReference(None, field_type=object),
      liver_label=ml_collections.FieldReference(None, field_type=int),
      sequence=ml_collections.FieldReference(None, field_type=str)))
  data.cache_dir = "~/.cache/liverjax"
  # The synthetic CHAOS generator, used when `root` is None.
  data.synthetic = ml_collections.ConfigDict(
      dict(ct=10, mr=10, size=128, slices=24, seed=0))
  data.source = "ct"  # domain trained on: "ct" | "mr"
  data.targets = ("ct", "mr")  # domains evaluated
  # MR sequences used as MR data, each slice a separate example.
  data.mr_sequences = ("t1_in", "t1_out", "t2")
  # Slices are resized to image_size x image_size. 64 keeps the default run at a
  # few minutes on a 2-core CPU; use 256 (CHAOS MR) or 512 (CT) on an accelerator.
  data.image_size = 64
  # None: each slice is resized whole to image_size (its pixel size follows the scan's field of
  # view). A side in mm: slices are resampled to field_of_view / image_size mm per pixel and
  # centred (cropped or zero-padded), so organs keep their size in pixels across scanners and
  # modalities; `predict` puts the logits back on the scan's grid the same way.
  data.field_of_view = ml_collections.FieldReference(None, field_type=float)
  # "window": the study's normalisation (CT window, MR robust percentiles, to [0,1]).
  # "zscore": per-volume standardisation over the body, clipped to +-3 std and
  #           mapped to [0,1].
  data.normalization = "window"
  data.ct_window = (40.0, 400.0)  # (center, width) in HU: abdominal window
  data.ct_window_from_dicom = False  # use the DICOM WindowCenter/Width instead
  data.mr_percentiles = (0.5, 99.5)  # robust min/max per MR volume
  # Patient-level split fractions (train, val, test), per modality.
  data.split = (0.6, 0.2, 0.2)
  data.split_seed = 0
  # k-fold over the trained modality's patients (0: off, `split` as above): fold `fold` is its
  # test split, the other patients are split into train / val by `split`'s first two
  # proportions (`dataset.fold_split`). Running fold = 0..folds-1 tests every patient once,
  # each by a model that neither trained on it nor selected its checkpoint with it.
  data.folds = 0
  data.fold = 0
  # A target modality that is never trained on (a target other than `source`;
  # the CycleGAN trains on both) puts all its patients in the test split;
  # `split` then applies to the trained modality only. False: `split` for all.
  data.target_test_only = True
  data.use_tf = True  # tf.data when TensorFlow is importable, else numpy
  data.shuffle_buffer = 2048

  # ---------------------------------------------------------------- model
  config.model = model = ml_collections.ConfigDict()
  model.depth = 4  # number of down-sampling stages
  model.base_features = 16  # channels at the first stage, doubled per stage
  model.norm = "batch"  # "batch" | "group" | "none"
  model.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params stay f32)
  # Organs the U-Net segments, one sigmoid output channel each, names from
  # liverjax.data.nifti.ORGANS; the first must be "liver" (channel 0, what is
  # evaluated and predicted). ("liver",): the binary liver model. More organs
  # train on the organ label maps where a volume has one (NIfTI); on volumes
  # without (CHAOS DICOM) only the liver channel is trained (segmentation/organs.py).
  model.organs = ("liver",)

  # ---------------------------------------------------------------- train
  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 16  # global batch, split over all devices
  train.steps = 300
  train.learning_rate = 1e-3  # Adam
  train.schedule = "constant"  # "constant" | "cosine"
  train.warmup_steps = 0
  train.dice_weight = 1.0
  train.bce_weight = 1.0
  train.jaccard_weight = 1.0
  train.log_every = 20
  train.eval_every = 100  # validation Dice; also when checkpoints are written
  train.keep_checkpoints = 2  # latest N kept, plus the best by validation Dice
  # Exponential moving average of the weights (0: off). When on, validation,
  # evaluation and prediction use the average (segmentation/state.py update_ema).
  train.ema_decay = 0.0

  # ---------------------------------------------------------------- augment
  config.augment = augment = ml_collections.ConfigDict()
  # Spatial augmentation (first, image + mask + organ map alike; augment/ops.py
  # random_spatial): rotation in +-spatial_rotate degrees, zoom log-uniform in
  # spatial_scale, shift in +-spatial_translate x the slice size; no flip.
  augment.spatial = False
  augment.spatial_rotate = 15.0
  augment.spatial_scale = (0.85, 1.2)
  augment.spatial_translate = 0.08
  augment.domain = False  # the CT<->MRI domain transformation
  augment.domain_prob = 0.8  # chance that a slice is domain-transformed
  augment.augmix = False  # AugMix
  augment.augmix_width = 3  # k chains
  augment.augmix_depth = (1, 3)  # ops per chain, inclusive range
  augment.augmix_alpha = 1.0  # Dirichlet / Beta concentration
  augment.augmix_severity = 3  # 1..10, scales op magnitudes
  # Chance of a left-right flip in AugMix's geometric step (the study lists
  # flips; they put the liver on the wrong side, so 0 keeps that cue). The real
  # protocol (configs/real) sets 0: on real scans flips taught the model to mark
  # left-sided organs (MR -> CT 0.71 with flips, 0.79-0.84 without, per seed).
  augment.flip_prob = 0.5
  # AugMix op choice shared by the slices of a batch (magnitudes stay per slice):
  # evaluates one op per chain step instead of all nine (see augmix.augmix_batch).
  augment.augmix_shared_ops = False
  # Single-source domain generalisation (liverjax/augment/dg.py), applied after
  # the domain transformation and before AugMix, inside the jitted train step.
  # GIN (Ouyang et al. TMI 2022): a random shallow conv net per slice, blended
  # with the slice by alpha ~ U(gin_alpha), rescaled to [0, 1].
  augment.gin = False
  augment.gin_prob = 1.0  # chance a slice gets GIN (else the original slice)
  augment.gin_layers = 4
  augment.gin_channels = 2  # intermediate channels of the random net
  augment.gin_kernels = (1, 3)  # kernel sizes drawn per layer (odd)
  augment.gin_alpha = (0.0, 1.0)  # range of the blend weight of the GIN output
  # One random net (and alpha) per batch instead of per slice: every batch then has a single
  # appearance, so its batch-norm statistics are that appearance's, as with eval.adapt_bn
  # on a test volume.
  augment.gin_per_batch = False
  # IPA (needs gin): every slice is seen as two GIN views (the second blended
  # from two GIN appearances through a smooth random mask of ipa_grid x ipa_grid
  # control points); the loss adds ipa_weight x the symmetric KL between the two
  # predictions (metric "consistency"). Forward/backward on 2B slices: ~2x the
  # plain step at the same train.batch_size (halve it for ~1x).
  augment.ipa = False
  # The GIN-IPA reference scripts use 10; with this loss (Dice + BCE + Jaccard,
  # 8 slices x 2 views) 10 collapses training to all-background on the real CT
  # (consistency trivially 0); 1.0 learns (val Dice 0.82 at 200 steps).
  augment.ipa_weight = 1.0
  augment.ipa_grid = 4
  # Location-scale (SLAug, Su et al. AAAI 2023): a random cubic Bezier intensity
  # curve (monotone, or non-monotone with ls_non_monotone_prob), scale
  # U(ls_scale_range) and a shift keeping [0, 1], per slice ("global").
  # location_scale_local: one curve per organ of the batch's `organs` label map
  # instead (background curve non-monotone, organs ls_non_monotone_prob; air
  # kept). saliency_fusion (needs both): SLAug's two passes in one step -- a
  # forward/backward on the global view gives |d loss / d input|, smoothed on a
  # saliency_grid x saliency_grid map, which blends global (salient) and local
  # views; a second forward/backward on the fused image; the update uses the sum
  # of both gradients (~2x the plain step at the same batch).
  augment.location_scale = False
  augment.location_scale_local = False
  augment.saliency_fusion = False
  augment.ls_non_monotone_prob = 0.5
  augment.ls_scale_range = (0.9, 1.1)
  augment.saliency_grid = 3
  # Organ label values of `organs` (len(liverjax.data.nifti.ORGANS)); larger
  # values count as background.
  augment.ls_num_labels = 16

  # ---------------------------------------------------------------- cyclegan
  # Unpaired CT <-> MR translation (experiment "cyclegan", liverjax/cyclegan/).
  # A = CT, B = MR; G: CT -> MR, F: MR -> CT; D_A judges CT, D_B judges MR.
  config.cyclegan = cg = ml_collections.ConfigDict()
  # "resnet": the paper's ResNet generator (F, 2F, 4F channels, `generator_blocks` residual
  # blocks at 1/4 resolution); "unet": a U-Net generator (`generator_depth` stages from F
  # channels, group norm) whose skips carry the input's edges to the output, so the anatomy
  # stays where it is (models/cyclegan.py UNetGenerator).
  cg.generator = "resnet"
  cg.generator_features = 32  # F of the generator
  cg.generator_blocks = 6  # resnet: residual blocks (6 at 128 px, 9 at 256 px in the paper)
  cg.generator_depth = 3  # unet: down-sampling stages (image_size divisible by 2**depth)
  cg.discriminator_features = 64  # F of the PatchGAN (paper: 64)
  cg.discriminator_layers = 3  # 3: the 70x70 PatchGAN
  cg.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params stay f32)
  cg.batch_size = 8  # global batch of CT slices and of MR slices, split over devices
  cg.steps = 4000
  cg.learning_rate = 2e-4  # Adam, for G+F and for D_A+D_B
  cg.beta1 = 0.5
  cg.beta2 = 0.999
  # The learning rate is constant, then decays linearly to 0 from this fraction
  # of `steps` on (0.5: over the second half of training, as in the paper).
  cg.decay_start_fraction = 0.5
  cg.lambda_cycle = 10.0  # weight of the cycle-consistency L1 (both directions)
  cg.lambda_identity = 0.5  # identity L1 weight, relative: lambda_identity * lambda_cycle
  # Structure term: lambda_structure * mean |MIND(x) - MIND(translated x)| per direction, the
  # modality-independent neighbourhood descriptor (cyclegan/losses.py mind_descriptor): the
  # translation keeps where the input's edges run. 0: off (the paper's objective).
  cg.lambda_structure = 0.0
  cg.pool_size = 50  # history of generated images the discriminators see (0: none)
  cg.log_every = 50
  cg.sample_every = 500  # sample grid PNG + TensorBoard image
  cg.sample_slices = 4  # columns of the sample grid
  cg.checkpoint_every = 500
  cg.keep_checkpoints = 2
  cg.histogram_bins = 64  # bins on [0,1] of the translation-quality histograms
  # Body pixels (the histograms' support): intensity above this in the image
  # that was translated (the real image for the real-target histogram).
  cg.body_threshold = 0.05
  # The task-based score (cyclegan/quality.py task_score): U-Nets trained on CT and on MR
  # (workdirs, prepared like this run's slices) segment the translated labelled scans of the
  # other modality; None: not measured. The study sets them to its in-domain runs.
  cg.task_unet_ct = ml_collections.FieldReference(None, field_type=str)
  cg.task_unet_mr = ml_collections.FieldReference(None, field_type=str)

  # ---------------------------------------------------------------- translate
  # The CycleGAN-based U-Net (a data step before training, liverjax/cyclegan/translate.py):
  # a trained CycleGAN's workdir (or one of its `.../checkpoints/<step>`
  # folders). When set, every source-domain training slice is translated once,
  # before training, to the other domain's style by the CycleGAN generator
  # (CT -> MR for source "ct", MR -> CT for "mr"); the source masks are kept.
  # None: train on the original slices.
  config.translate = tr = ml_collections.ConfigDict()
  tr.cyclegan_workdir = ml_collections.FieldReference(None, field_type=str)
  # Fraction of the training slices (a fixed random subset, drawn from `seed`)
  # kept in their original style instead of translated; 0.0 trains on
  # translated slices only, as in the study.
  tr.mix = 0.0
  tr.batch_size = 32  # slices per translation call, over all devices

  # ---------------------------------------------------------------- self_training
  # Self-training on the unlabelled target scans of `data.<m>.adapt_root`
  # (liverjax/segmentation/self_training.py, arranged by liverjax/experiment.py). A teacher
  # labels them (3D, its own test-time options `eval.*`), the labels are filtered, and a
  # student trains on the source slices + the pseudo-labelled target slices in the same
  # trainer; each student teaches the next round's.
  config.self_training = st = ml_collections.ConfigDict()
  st.rounds = 0  # students, one after the other (0: no self-training)
  # The teacher: None trains it first in this run, into <workdir>/teacher (this config
  # without self-training); or a trained U-Net's workdir / checkpoints/<step> folder, prepared
  # with the same data settings (its saved config gives its test-time options); or a tuple of
  # them, an ensemble.
  st.teacher = ml_collections.FieldReference(None, field_type=object)
  # Round 1's teachers: an ensemble whose mean probability makes the pseudo-labels. Those that
  # `teacher` does not name are trained in this run (teacher k with seed `seed` + k, into
  # <workdir>/teacher, teacher1, ...). Teacher seeds disagree most where they are wrong.
  st.teachers = 1
  # A pixel is labelled where the teacher's probability is >= confidence (liver, inside the
  # largest 3D component) or <= 1 - confidence (background); the rest is left out of the loss.
  # With its test-time options the best CT -> MR teacher labels 94-97 % of a T2 scan's body
  # at 0.8 (labelled pixels 97-99 % right) but 35-80 % at 0.9 (docs/results.md).
  st.confidence = 0.8
  # A scan whose predicted liver is outside this volume (mL), or lies mostly on the patient's
  # left, or has fewer than min_confident_fraction of its body pixels labelled, is dropped.
  st.min_liver_ml = 500.0
  st.max_liver_ml = 3500.0
  st.min_confident_fraction = 0.3
  # Pixels within this distance (mm, 3D) of the predicted liver's surface, on either side, are
  # left out of the loss however confident the teacher is (0: none).
  st.ignore_margin_mm = 0.0
  # The slices within this depth (mm) below the predicted liver's lowest slice are left out of
  # the loss inside the liver's axial footprint (0: none). On the development T2 scans the
  # CT-trained teachers stop a median of 3 slices (23 mm) short of the liver's lower end and
  # label the rest background, 82 % of it confidently. Left out (40 mm), the students overshoot
  # the lower end in some seeds instead: CT -> MR -0.007 / -0.017 on the two T2 halves (3 seeds;
  # docs/results.md, "Where the teachers' labels go wrong", 2026-12-06).
  st.ignore_below_mm = 0.0
  # About this share of the slices drawn are pseudo-labelled target slices. 0.3: the best CT ->
  # MR student kept its source validation Dice (0.910, teacher 0.895) where 0.5 lost 0.03
  # (0.867) for the same target Dice (0.628 / 0.633, seed 0; docs/results.md).
  st.target_fraction = 0.3
  # Test-time options of the students (their evaluation, and their pseudo-labels as the
  # next round's teacher). "none": a student has seen target scans and takes them as they
  # are; "histogram_match": the target slices it trains on and is tested on are matched to
  # the source (then `eval.intensity_gamma`), as the teacher saw them.
  st.student_intensity = "none"
  st.student_adapt_bn = "none"
  # Training steps of each student (0: `train.steps`, as its teacher); validated every
  # quarter of them.
  st.student_steps = 0
  # `augment` switches turned on for the students only, e.g. ("gin",) (names from
  # config_check.STUDENT_AUGMENT): the source and the pseudo-labelled target slices are
  # augmented alike; the teachers this run trains keep `augment` as it is.
  st.student_augment = ()

  # ---------------------------------------------------------------- eval
  config.eval = ev = ml_collections.ConfigDict()
  ev.checkpoint = ml_collections.FieldReference(None, field_type=str)  # None: best in workdir
  ev.batch_size = 32
  ev.figure_slices = 4  # slices per domain in the prediction figure
  # "largest_component": keep the largest 3D connected component of each predicted
  # liver volume; metrics.json has both (dice, assd, ... post-processed; dice_raw,
  # assd_raw, ... raw). "none": the raw prediction only.
  ev.postprocess = "largest_component"
  # Test-time intensity of the target-domain test volumes: "none" | "histogram_match"
  # (to the source domain's training-slice body histogram: the quantiles training stores
  # with each checkpoint, `source_stats`, which `liverjax.predict` uses too).
  # Per-volume standardisation is `data.normalization = "zscore"` (train and test).
  ev.intensity = "none"
  # With "histogram_match": the matched intensities x in [0, 1] then become x ** gamma (1: none;
  # < 1 brightens the mid-tones, 0 and 1 stay). CT -> T2: T2's liver sits lower in its body
  # histogram than CT's does, so matching alone leaves it darker than the CT-trained model
  # expects (configs/real BEST_INTENSITY_GAMMA, docs/results.md).
  ev.intensity_gamma = 1.0
  # Test-time batch-norm statistics of the target-domain test volumes (AdaBN, Li et al. 2016):
  # "volume" re-estimates every batch-norm mean / variance on each target volume's own slices
  # (at most adapt_bn_slices, evenly spaced; no labels, nothing learned) before predicting it;
  # "none" uses the source running averages. Needs model.norm = "batch".
  ev.adapt_bn = "none"
  ev.adapt_bn_slices = 64
  return config
