"""Tests for liverjax/predict/checks.py: plausibility warnings on a predicted scan."""
import pathlib
import types

import numpy as np

from liverjax import predict
from liverjax.configs import default
from liverjax.data import chaos
from liverjax.predict import checks


def _scan(spacing=(5.0, 2.0, 2.0), modality="CT", header_sequence=None):
  """A 20 x 100 x 100 scan with a body disc in the middle (display orientation)."""
  yy, xx = np.mgrid[:100, :100]
  body = ((yy - 50) ** 2 + (xx - 50) ** 2 < 45 ** 2).astype(np.float32)
  image = np.repeat((body * 1000 - 1000)[None], 20, axis=0)
  volume = chaos.Volume("p", modality, "ct" if modality == "CT" else "t2", image,
                        np.zeros(image.shape, np.uint8), spacing, None, [], [], [])
  ref = predict.ScanRef("nifti", pathlib.Path("/scans/p.nii.gz"), "p")
  return predict.Scan(ref=ref, volume=volume, reorientation=None, affine=np.eye(4),
                      native_shape=image.shape, header_sequence=header_sequence)


def _liver(cols):
  mask = np.zeros((20, 100, 100), np.uint8)
  mask[2:18, 20:80, cols] = 1
  return mask


def _model(source="ct", mr_sequences=("t2",)):
  config = default.get_config()
  config.data.source, config.data.mr_sequences = source, mr_sequences
  return types.SimpleNamespace(config=config)


def test_a_plausible_liver_gives_no_line():
  mask = _liver(slice(15, 45))  # 16 x 60 x 30 voxels of 20 mm^3: 576 mL, the patient's right
  assert checks.plausibility_problems(_model(), _scan(), mask) == []


def test_a_small_liver_and_a_left_sided_one_are_named():
  small = _liver(slice(15, 17))  # 38 mL
  (line,) = checks.plausibility_problems(_model(), _scan(), small)
  assert "/scans/p.nii.gz" in line and "38 mL" in line and "500-3500" in line
  left = _liver(slice(60, 90))
  (line,) = checks.plausibility_problems(_model(), _scan(), left)
  assert "on the patient's left" in line


def test_an_mr_sequence_the_checkpoint_has_not_seen_is_named_when_the_header_tells():
  mask = _liver(slice(15, 45))
  t1 = _scan(modality="MR", header_sequence=("t1", "/scans/p.nii.gz: 'T1 VIBE'"))
  (line,) = checks.plausibility_problems(_model("ct", ("t2",)), t1, mask)
  assert "MR sequence t1" in line and "T1 VIBE" in line and "evaluated on MR t2" in line
  assert checks.plausibility_problems(_model("mr", ("t1_in", "t1_out", "t2")), t1, mask) == []
  untold = _scan(modality="MR")
  assert checks.plausibility_problems(_model("ct", ("t2",)), untold, mask) == []
