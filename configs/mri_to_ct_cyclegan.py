"""MR -> CT with the CycleGAN: train the U-Net on MR slices restyled as CT by the
CycleGAN's F (train it first with configs/cyclegan.py), evaluate on CT and MR."""
from configs import mri_to_ct


def get_config():
  config = mri_to_ct.get_config()
  config.augment.cyclegan_workdir = "workdir/cyclegan"
  config.augment.cyclegan_mix = 0.0  # translated slices only
  return config
