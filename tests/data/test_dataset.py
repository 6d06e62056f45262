"""Tests for liverjax/data/dataset.py: stacking the prepared volumes into training slices, k-fold."""
import numpy as np
import pytest

from liverjax.data import dataset
from liverjax.data import preprocess


def _vol(pid, mask, organs=None):
  return preprocess.PreparedVolume(pid, "CT", "ct", np.zeros(mask.shape, np.float32), mask,
                                   (1.0, 1.0, 1.0), organs)


def test_stack_organs_follows_stack_slices_and_falls_back_to_the_liver_mask():
  mask = np.zeros((2, 4, 4), np.uint8)
  mask[:, :2] = 1
  organs = mask.copy()
  organs[:, 3] = 2  # spleen
  vols = [_vol("a", mask, organs), _vol("b", mask[:1])]  # "b": a CHAOS volume, no organ map
  out = dataset.stack_organs(vols)
  images, masks = dataset.stack_slices(vols)
  assert out.shape == images.shape[:3] and out.dtype == np.int32
  np.testing.assert_array_equal(out[:2], organs)
  np.testing.assert_array_equal(out[2], mask[0])  # the liver as label 1, the rest 0
  np.testing.assert_array_equal(out == 1, masks[..., 0] == 1)


def test_k_fold_tests_every_patient_once_and_never_trains_or_selects_on_it():
  ids = [f"p{i}" for i in range(9)]
  tested = []
  for fold in range(5):
    split = dataset.fold_split(ids, 5, fold, (0.8, 0.2, 0.0), seed=3)
    train, val, test = (set(split[k]) for k in ("train", "val", "test"))
    assert train | val | test == set(ids)
    assert not (train & val) and not (train & test) and not (val & test)
    assert test and val and train
    tested += split["test"]
  assert sorted(tested) == sorted(ids)  # each patient in exactly one test fold
  assert dataset.fold_split(ids, 5, 2, seed=3) == dataset.fold_split(ids[::-1], 5, 2, seed=3)
  with pytest.raises(ValueError, match="data.folds"):
    dataset.fold_split(ids, 10, 0)
