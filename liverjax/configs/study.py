"""The whole study (`python -m liverjax.study`): sizes "smoke" (2-core CPU, minutes), "full" (GPU)
and "cpu" (the real protocol on the real scans, 2-core CPU).

`python -m liverjax.study --workdir=W --size=full` is the same as
`--config=configs/study.py:full`; every field can still be overridden
(`--config.train.steps=...`, `--config.data.root=...`).
"""
import ml_collections

from liverjax.configs import cyclegan
from liverjax.configs import default
from liverjax.configs import real
from liverjax.configs import unet


def get_config(size: str = "smoke") -> ml_collections.ConfigDict:
  """The study's config of `size` ("smoke" | "full"): default.py's sections plus `study`."""
  config = default.get_config()
  config.study = study = ml_collections.ConfigDict()
  study.size = size
  study.directions = ("ct_to_mr", "mr_to_ct")
  study.seeds = 1
  study.protocol = "all"  # "all": MR = T1 in/out + T2; "t2spir": MR = T2-SPIR only; "real"
  # In-domain rows (real protocol): k-fold over each modality's patients (0: none).
  study.in_domain_folds = 0
  if size == "smoke":
    study.experiments = ("baseline", "domain+augmix", "cyclegan", "cyclegan+augmix")
    config.data.synthetic.update(ct=5, mr=5, size=64, slices=16)
    config.data.image_size = 64
    config.model.update(depth=3, base_features=8)
    config.train.update(batch_size=16, steps=120, log_every=20, eval_every=60)
    config.cyclegan.update(generator_features=8, generator_blocks=2, discriminator_features=16,
                           batch_size=4, steps=100, log_every=25, sample_every=50,
                           checkpoint_every=50)
    config.eval.figure_slices = 2
  elif size == "full":
    study.experiments = tuple(unet.EXPERIMENTS)
    config.data.synthetic.update(ct=20, mr=20, size=256, slices=32)
    config.data.image_size = 256
    config.model.update(depth=5, base_features=32, dtype="bfloat16")
    config.train.update(batch_size=32, steps=6000, log_every=100, eval_every=500,
                        schedule="cosine", warmup_steps=200)
    config.cyclegan.update(generator_features=64, generator_blocks=9, discriminator_features=64,
                           batch_size=8, steps=20000, log_every=200, sample_every=2000,
                           checkpoint_every=2000)
  elif size == "cpu":
    # The real protocol on a 2-core CPU: every row's own config from configs/real
    # (`real.get_study_row_config`), 3 seeds, the in-domain rows 5-fold; the CycleGAN is the
    # `configs/cyclegan.py:real` preset.
    study.protocol = "real"
    study.seeds = 3
    study.experiments = REAL_EXPERIMENTS
    study.in_domain_folds = 5
    real.set_real_sources(config)
    config.cyclegan = cyclegan.get_config("real").cyclegan
    config.data.image_size = 64
  else:
    raise ValueError(f"study size {size!r}: expected 'smoke', 'full' or 'cpu'")
  return config


# The rows of the real study per direction (`configs.real.get_study_row_config`).
REAL_EXPERIMENTS = ("baseline", "domain+augmix", "best", "cyclegan", "cyclegan+augmix", "uda")
