"""Self-training's pseudo-labels (liverjax/segmentation/self_training.py) on cases with known
answers."""
import numpy as np

from liverjax.data import preprocess
from liverjax.segmentation import losses
from liverjax.segmentation import self_training

SPACING = (10.0, 10.0, 10.0)  # 1 mL per voxel


def _case(liver_cols=slice(2, 6)):
  """A 4 x 16 x 16 scan: body over columns 1..14, a confident liver block on the patient's
  right (image left), an uncertain rim around it, a small confident blob elsewhere."""
  image = np.zeros((4, 16, 16), np.float32)
  image[:, 2:14, 1:15] = 0.5
  p = np.full((4, 16, 16), 0.02, np.float32)
  p[:, 4:10, liver_cols] = 0.97
  p[:, 3, liver_cols] = 0.6  # the uncertain rim: still liver for the threshold, not confident
  p[0, 12, 12] = 0.99  # a speck outside the largest component
  return p, image


def test_confident_pixels_are_labelled_and_the_rest_ignored():
  p, image = _case()
  pl = self_training.pseudo_label(p, image, SPACING, patient_id="x", confidence=0.9,
                                  min_liver_ml=10, max_liver_ml=1000,
                                  min_confident_fraction=0.5)
  assert pl.kept and pl.reason == ""
  assert (pl.mask[:, 4:10, 2:6] == 1).all()  # confident liver
  assert (pl.mask[:, 3, 2:6] == losses.IGNORE).all()  # the uncertain rim
  assert pl.mask[0, 12, 12] == losses.IGNORE  # liver-like, outside the kept component
  assert pl.mask[0, 0, 0] == 0 and pl.mask[2, 12, 8] == 0  # confident background
  assert pl.liver_ml == 4 * 7 * 4  # rows 3..9 of the component, 1 mL a voxel
  assert pl.liver_side == 1.0  # all of it on the patient's right


def test_the_margin_around_the_predicted_liver_is_left_out():
  # The liver block spans rows 3..9 (the uncertain row 3 included in the component), columns
  # 2..5, all 4 slices; 10 mm = one voxel, so the band is the block's outer layer and the
  # layer just outside it. In z the block fills the scan, so no slice is its surface.
  p, image = _case()
  pl = self_training.pseudo_label(p, image, SPACING, confidence=0.9, min_liver_ml=10,
                                  max_liver_ml=1000, ignore_margin_mm=10.0)
  assert pl.kept
  assert (pl.mask[:, 4:9, 3:5] == 1).all()  # the interior stays liver
  for rows, cols in ((slice(3, 10), 2), (slice(3, 10), 5), (9, slice(2, 6)),  # outer layer
                     (slice(3, 10), 1), (slice(3, 10), 6), (2, slice(2, 6)), (10, slice(2, 6))):
    assert (pl.mask[:, rows, cols] == losses.IGNORE).all(), (rows, cols)
  assert pl.mask[0, 10, 6] == 0  # a diagonal neighbour of the corner: 14 mm away
  assert (pl.mask[:, 4:9, 7] == 0).all() and pl.mask[0, 0, 0] == 0  # background beyond it
  # Nothing else changes: without the margin those layers were labelled.
  plain = self_training.pseudo_label(p, image, SPACING, confidence=0.9, min_liver_ml=10,
                                     max_liver_ml=1000)
  assert plain.mask[1, 4, 2] == 1 and plain.mask[1, 5, 6] == 0
  changed = pl.mask != plain.mask
  assert (pl.mask[changed] == losses.IGNORE).all()
  assert pl.confident_fraction < plain.confident_fraction
  assert pl.liver_ml == plain.liver_ml  # the filters judge the whole predicted liver


def test_the_slices_below_the_predicted_liver_are_left_out_inside_its_footprint():
  # 8 slices (head -> feet, 10 mm apart); the confident liver fills slices 1..3, rows 4..9,
  # columns 2..5. 25 mm below it: slices 4 and 5, only where some slice has liver.
  image = np.zeros((8, 16, 16), np.float32)
  image[:, 2:14, 1:15] = 0.5
  p = np.full((8, 16, 16), 0.02, np.float32)
  p[1:4, 4:10, 2:6] = 0.97
  pl = self_training.pseudo_label(p, image, SPACING, confidence=0.9, min_liver_ml=10,
                                  max_liver_ml=1000, ignore_below_mm=25.0)
  assert pl.kept and (pl.mask[1:4, 4:10, 2:6] == 1).all()
  assert (pl.mask[4:6, 4:10, 2:6] == losses.IGNORE).all()  # below, in the footprint
  assert (pl.mask[4:6, 4:10, 6:10] == 0).all() and (pl.mask[4:6, 11, 2:6] == 0).all()  # beside
  assert (pl.mask[6:, 4:10, 2:6] == 0).all() and (pl.mask[0, 4:10, 2:6] == 0).all()  # deeper;
  # above the liver nothing changes
  plain = self_training.pseudo_label(p, image, SPACING, confidence=0.9, min_liver_ml=10,
                                     max_liver_ml=1000)
  changed = pl.mask != plain.mask
  assert changed.sum() == 2 * 6 * 4 and (plain.mask[changed] == 0).all()
  assert pl.liver_ml == plain.liver_ml


def test_surface_band_is_the_distance_in_mm_on_both_sides():
  region = np.zeros((1, 9, 9), bool)
  region[0, 2:7, 2:7] = True
  band = self_training.surface_band(region, (5.0, 2.0, 2.0), 4.0)  # 2 voxels in-plane
  assert band[0, 2, 4] and band[0, 3, 4] and not band[0, 4, 4]  # inside: 2 layers
  assert band[0, 1, 4] and band[0, 0, 4]  # outside: 2 layers
  assert not band[0, 0, 0]  # a corner 2 + 2 voxels off: 5.7 mm


def test_implausible_volumes_are_dropped_with_the_reason():
  p, image = _case()
  small = self_training.pseudo_label(p, image, SPACING, min_liver_ml=500, max_liver_ml=3500)
  assert not small.kept and "outside the plausible 500-3500 mL" in small.reason
  assert (small.mask == losses.IGNORE).all()  # nothing of a dropped volume is trained on
  left = self_training.pseudo_label(*_case(slice(10, 14)), SPACING, min_liver_ml=10,
                                    max_liver_ml=1000)
  assert not left.kept and "patient's left" in left.reason
  p, image = _case()
  p[:, 10:14, 1:15] = 0.5  # most of the body uncertain
  vague = self_training.pseudo_label(p, image, SPACING, min_liver_ml=10, max_liver_ml=1000,
                                     min_confident_fraction=0.8)
  assert not vague.kept and "confidently labelled" in vague.reason


def test_only_kept_volumes_become_training_slices():
  p, image = _case()
  vols = [preprocess.PreparedVolume(patient_id=pid, modality="MR", sequence="t2", image=image,
                                    mask=np.zeros(image.shape, np.uint8), spacing=SPACING,
                                    labelled=False) for pid in ("a", "b")]
  kept = self_training.pseudo_label(p, image, SPACING, min_liver_ml=10, max_liver_ml=1000)
  dropped = self_training.pseudo_label(p, image, SPACING, min_liver_ml=500)
  slices = self_training.pseudo_labelled_slices(vols, [kept, dropped])
  assert slices["image"].shape == (4, 16, 16, 1) and slices["mask"].shape == (4, 16, 16, 1)
  np.testing.assert_array_equal(slices["mask"][..., 0], kept.mask)
  np.testing.assert_array_equal(slices["is_t2"], np.ones(4, np.float32))
  none = self_training.pseudo_labelled_slices(vols, [dropped, dropped])
  assert none["image"].shape == (0, 16, 16, 1)
