"""CycleGAN CT <-> MR translation, trained on the CT and MR training patients.

`python -m liverjax.main --config=configs/cyclegan.py` writes into workdir/cyclegan,
where the CycleGAN-based U-Net configs (`unet.py:<direction>,cyclegan`, `*_cyclegan*.py`) look
for the generators. Presets (`--config=configs/cyclegan.py:<preset>`):

  default  the paper-sized nets (F=32, 6 blocks, PatchGAN F=64), 4000 steps of 8 slices:
           meant for an accelerator (~2 min of steps on one H200); on 2 quiet CPU cores its
           step runs at 0.52 steps/s (~2 h 10 min; 0.28 steps/s, ~4 h, on a loaded machine)
  cpu      small nets (F=16, 4 blocks, PatchGAN F=32), 600 steps of 8 slices at 64 px:
           6 min on a 2-core CPU (365 s measured end to end, ~1.6 steps/s); on the real
           scans it loses the anatomy (docs/results.md)
  real     the real development set (configs/real: BTCV + CHAOS CT, CHAOS T2-SPIR) at the best
           configs' 320 mm field of view, 64 px: a U-Net generator (F=16, 3 stages) whose skips
           keep the liver where it is, a 34 px PatchGAN, 1000 steps (configs/real CYCLEGAN)
"""
from liverjax.configs import default
from liverjax.configs import real


def get_config(preset: str = "default"):
  """The CycleGAN config of `preset` ("default" | "cpu" | "real")."""
  config = default.get_config()
  config.experiment = "cyclegan"
  if preset == "cpu":
    config.data.image_size = 64
    config.cyclegan.update(batch_size=8, generator_features=16, generator_blocks=4,
                           discriminator_features=32, discriminator_layers=3, steps=600,
                           sample_every=300, checkpoint_every=300)
  elif preset == "real":
    real.set_real_sources(config)
    config.data.image_size = 64
    config.data.field_of_view = real.BEST_FIELD_OF_VIEW
    config.data.split = (0.8, 0.2, 0.0)
    config.cyclegan.update(real.CYCLEGAN)
  elif preset != "default":
    raise ValueError(f"cyclegan preset {preset!r}: expected 'default', 'cpu' or 'real'")
  return config
