"""CycleGAN CT <-> MR translation, trained on the CT and MR training patients.

`python -m liverjax.main --config=configs/cyclegan.py` writes into workdir/cyclegan,
where the CycleGAN-based U-Net configs (`unet.py:<direction>,cyclegan`, `*_cyclegan*.py`) look for the generators.
"""
from liverjax.configs import default


def get_config():
  config = default.get_config()
  config.experiment = "cyclegan"
  return config
