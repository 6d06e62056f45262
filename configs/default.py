"""Default configuration: every field of every section, with its meaning.

Experiment configs (`configs/ct_to_mri.py`, ...) import `get_config` from here
and override a few fields. Any field can also be overridden on the command line:
`python -m liverjax.main --config=configs/ct_to_mri.py --config.train.steps=500`.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration (CT -> CT baseline on synthetic data)."""
  config = ml_collections.ConfigDict()
  config.experiment = "segmentation"  # "segmentation" | "cyclegan"
  config.seed = 0

  # ---------------------------------------------------------------- data
  config.data = data = ml_collections.ConfigDict()
  # A CHAOS folder (`CHAOS_Train_Sets`, `Train_Sets`, or a folder holding CT/
  # and MR/). None: generate the synthetic CHAOS dataset into `cache_dir`.
  data.root = ml_collections.FieldReference(None, field_type=str)
  data.cache_dir = "~/.cache/liverjax"
  # The synthetic CHAOS generator, used when `root` is None.
  data.synthetic = ml_collections.ConfigDict(
      dict(ct=6, mr=6, size=128, slices=24, seed=0))
  data.source = "ct"  # domain trained on: "ct" | "mr"
  data.targets = ("ct", "mr")  # domains evaluated
  # MR sequences used as MR data, each slice a separate example.
  data.mr_sequences = ("t1_in", "t1_out", "t2")
  data.image_size = 128  # slices are resized to image_size x image_size
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
  data.use_tf = True  # tf.data when TensorFlow is importable, else numpy
  data.shuffle_buffer = 2048

  # ---------------------------------------------------------------- model
  config.model = model = ml_collections.ConfigDict()
  model.depth = 4  # number of down-sampling stages
  model.base_features = 16  # channels at the first stage, doubled per stage
  model.norm = "batch"  # "batch" | "group" | "none"
  model.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params stay f32)

  # ---------------------------------------------------------------- train
  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 16  # global batch, split over all devices
  train.steps = 400
  train.learning_rate = 1e-3  # Adam
  train.schedule = "constant"  # "constant" | "cosine"
  train.warmup_steps = 0
  train.dice_weight = 1.0
  train.bce_weight = 1.0
  train.jaccard_weight = 1.0
  train.log_every = 20
  train.eval_every = 100  # validation Dice; also when checkpoints are written
  train.keep_checkpoints = 2  # latest N kept, plus the best by validation Dice

  # ---------------------------------------------------------------- augment
  config.augment = augment = ml_collections.ConfigDict()
  augment.domain = False  # the CT<->MRI domain transformation
  augment.domain_prob = 0.8  # chance that a slice is domain-transformed
  augment.augmix = False  # AugMix
  augment.augmix_width = 3  # k chains
  augment.augmix_depth = (1, 3)  # ops per chain, inclusive range
  augment.augmix_alpha = 1.0  # Dirichlet / Beta concentration
  augment.augmix_severity = 3  # 1..10, scales op magnitudes

  # ---------------------------------------------------------------- eval
  config.eval = ev = ml_collections.ConfigDict()
  ev.checkpoint = ml_collections.FieldReference(None, field_type=str)  # None: best in workdir
  ev.batch_size = 32
  ev.figure_slices = 4  # slices per domain in the prediction figure
  return config
