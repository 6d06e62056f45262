"""CT -> MR with the CycleGAN: train the U-Net on CT slices restyled as MR by the
CycleGAN's G (train it first with configs/cyclegan.py), evaluate on CT and MR."""
from configs import ct_to_mri


def get_config():
  config = ct_to_mri.get_config()
  config.augment.cyclegan_workdir = "workdir/cyclegan"
  config.augment.cyclegan_mix = 0.0  # translated slices only
  return config
