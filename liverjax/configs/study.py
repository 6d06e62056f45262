"""The whole study (`python -m liverjax.study`): sizes "smoke" (2-core CPU, minutes) and "full" (GPU).

`python -m liverjax.study --workdir=W --size=full` is the same as
`--config=configs/study.py:full`; every field can still be overridden
(`--config.train.steps=...`, `--config.data.root=...`).
"""
import ml_collections

from liverjax.configs import default
from liverjax.configs import unet


def get_config(size: str = "smoke") -> ml_collections.ConfigDict:
  """The study's config of `size` ("smoke" | "full"): default.py's sections plus `study`."""
  config = default.get_config()
  config.study = study = ml_collections.ConfigDict()
  study.size = size
  study.directions = ("ct_to_mr", "mr_to_ct")
  study.seeds = 1
  study.protocol = "all"  # "all": MR = T1 in/out + T2; "t2spir": MR = T2-SPIR only
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
  else:
    raise ValueError(f"study size {size!r}: expected 'smoke' or 'full'")
  return config
