"""Tests for liverjax/predict/run.py: every output of DICOM / CHAOS / NIfTI scans, written and
read back."""
import json
import pathlib

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

import liverjax
from liverjax import predict
from liverjax.data import chaos
from liverjax.data import chaos_masks
from liverjax.data import preprocess
from liverjax.segmentation import metrics
from tests.predict.conftest import REAL_T2


def _png_stack(folder: pathlib.Path, names) -> np.ndarray:
  return np.stack([chaos_masks.read_mask_png(folder / n) for n in names])


def _sop_uids(files) -> set:
  return {str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in files}


def test_synthetic_chaos_patient_round_trips_every_output(model, trained, tmp_path):
  """CHAOS CT + MR patients: PNGs named as the ground truth, equal to the in-memory mask;
  DICOM-SEG referencing every source slice; NIfTI affine at the first slice's position."""
  _, root = trained
  out = tmp_path / "out"
  records = predict.predict_paths(model, [root / "CT" / "1", root / "MR" / "1"], out,
                                  save_probabilities=True)
  by_name = {r["name"]: r for r in records}
  assert {"CT_1", "MR_1_t2"} <= set(by_name)
  for ref in chaos.discover(root, ("ct", "t2")):
    volume = chaos.read_series(ref)
    expected = predict.predict_volume(model, volume)
    name = "CT_1" if ref.modality == "CT" else "MR_1_t2"
    names = [pathlib.Path(m).name for m in volume.mask_files]  # the ground truth's names
    gray = _png_stack(out / name / "Results", names)
    assert set(np.unique(gray)) <= {0, 255 if ref.modality == "CT" else 63}
    np.testing.assert_array_equal(preprocess.binarize_mask(gray, ref.modality), expected)
    assert by_name[name]["slices"] == volume.image.shape[0]
    seg = hd.seg.segread(str(out / name / "seg.dcm"))
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == _sop_uids(volume.image_files)
    assert seg.SoftwareVersions == liverjax.__version__  # the software; the model apart:
    assert seg.SeriesDescription.endswith(f"checkpoint step {model.step}")
    img = nib.load(str(out / name / "mask.nii.gz"))
    first = pydicom.dcmread(volume.image_files[0], stop_before_pixels=True)
    lps = np.array([float(v) for v in first.ImagePositionPatient])
    np.testing.assert_allclose(img.affine[:3, 3], lps * [-1, -1, 1], atol=1e-4)
    prob = nib.load(str(out / name / "probabilities.nii.gz"))
    assert prob.shape == img.shape and np.allclose(prob.affine, img.affine)
    assert (out / name / "overlay.png").is_file()
  saved = json.loads((out / "predictions.json").read_text())
  assert saved["liverjax_version"] == liverjax.__version__ and saved["step"] == model.step


def test_ct_sample_chaos_pngs_score_as_the_in_memory_prediction(model, ct_sample_root,
                                                               tmp_path):
  """The acceptance check: CHAOS metrics of the written PNGs == of the in-memory mask."""
  (ref,) = chaos.discover(ct_sample_root, ("ct",))
  volume = chaos.read_series(ref)
  in_memory = predict.predict_volume(model, volume)
  (record,) = predict.predict_paths(model, [ref.image_dir.parent], tmp_path,
                                    dicom_seg_output=False)
  names = [pathlib.Path(m).name for m in volume.mask_files]
  written = preprocess.binarize_mask(_png_stack(tmp_path / record["name"] / "Results", names),
                                     "CT")
  reference = preprocess.binarize_mask(volume.mask, "CT")
  np.testing.assert_equal(metrics.chaos_metrics(written, reference, volume.spacing),
                          metrics.chaos_metrics(in_memory, reference, volume.spacing))
  np.testing.assert_array_equal(written, in_memory)
  # --chaos_format=submission: the names and encoding of the shared submission sample.
  (record,) = predict.predict_paths(model, [ref.image_dir.parent], tmp_path / "submission",
                                    dicom_seg_output=False, chaos_format="submission")
  results = tmp_path / "submission" / record["name"] / "Results"
  sample = sorted(p.name for p in (ct_sample_root / "submission_sample").glob("*.png"))
  assert sorted(p.name for p in results.iterdir()) == sample
  gray = _png_stack(results, sample)
  assert set(np.unique(gray)) <= {0, 63}
  np.testing.assert_array_equal(gray > 0, in_memory > 0)


def test_real_dev_nifti_mask_has_the_input_affine_and_shape(model, tmp_path):
  if not REAL_T2.is_dir():
    pytest.skip(f"real_dev not found at {REAL_T2}")
  image = REAL_T2 / "imagesTr" / "chaos_t2_015_0000.nii.gz"
  (record,) = predict.predict_paths(model, [image], tmp_path)
  assert record["modality"] == "MR"  # from the dataset.json next to imagesTr/
  source, written = nib.load(str(image)), nib.load(str(tmp_path / record["name"] /
                                                        "mask.nii.gz"))
  assert written.shape == source.shape
  np.testing.assert_array_equal(written.affine, source.affine)
  assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}
