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
