"""Tests for liverjax/data/phantom.py: the anatomy's tissues and their CT / MR contrasts."""
import numpy as np
from scipy import ndimage

from liverjax.data import phantom


def test_ct_tissue_values_from_the_phantom():
  rng = np.random.default_rng(3)
  ph = phantom.make_phantom(rng, 96, 12, 400.0)
  hu = phantom.render_ct(ph, rng, 96)
  interior = lambda t: ndimage.binary_erosion(ph.tissue == t,
                                              np.ones((1, 3, 3)))
  assert -120 <= hu[interior(phantom.FAT)].mean() <= -80
  assert hu[interior(phantom.AIR)].mean() < -950
  assert hu[ph.tissue == phantom.CORTICAL].mean() > 300
  assert -5 <= hu[interior(phantom.FLUID)].mean() <= 25
  assert 40 <= hu[interior(phantom.MUSCLE)].mean() <= 60
  noise = hu[interior(phantom.LIVER_T)].std()
  assert 8 <= noise <= 25


def test_out_of_phase_cancels_at_fat_water_boundaries():
  # In the phantom: boundaries between fat and water tissue cancel, and
  # pure fat stays bright out of phase.
  rng = np.random.default_rng(5)
  ph = phantom.make_phantom(rng, 96, 10, 400.0)
  t1_in, t1_out, _ = phantom.render_mr(ph, rng, 96)
  fat = ph.tissue == phantom.FAT
  k = np.ones((1, 3, 3))
  boundary = ndimage.binary_dilation(fat, k) & ndimage.binary_dilation(
      np.isin(ph.tissue, [phantom.MUSCLE, phantom.LIVER_T,
                          phantom.SPLEEN_T]), k)
  pure_fat = ndimage.binary_erosion(fat, np.ones((1, 5, 5)))
  assert (t1_out / (t1_in + 1))[boundary].mean() < 0.6
  assert (t1_out / (t1_in + 1))[pure_fat].mean() > 0.8
  assert not np.allclose(t1_in, t1_out)
