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


# ----------------------------------------------------------------------------- bad scans and
# outputs (#26): atomic, fenced, one bad scan does not stop the rest


def _nifti_scan(path: pathlib.Path, seed: int = 0) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  array = np.random.default_rng(seed).uniform(-100, 200, (32, 32, 6)).astype(np.float32)
  nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 4.0, 1.0])), str(path))
  return path


def test_one_bad_scan_is_reported_and_the_others_are_written(model, tmp_path):
  good = _nifti_scan(tmp_path / "in" / "good.nii.gz")
  cut = tmp_path / "in" / "cut.nii.gz"
  cut.write_bytes(good.read_bytes()[:1500])
  later = _nifti_scan(tmp_path / "in" / "later.nii.gz", seed=1)
  out = tmp_path / "out"
  records = predict.predict_paths(model, [good, cut, later], out, modality="CT")
  assert [r["name"] for r in records] == ["good", "cut", "later"]
  (failed,) = predict.failures(records)
  assert failed["name"] == "cut" and str(cut) in failed["error"] and "\n" not in failed["error"]
  assert (out / "good" / "mask.nii.gz").is_file() and (out / "later" / "mask.nii.gz").is_file()
  assert not (out / "cut").exists() and not list(out.glob(".*partial*"))
  saved = json.loads((out / "predictions.json").read_text())
  assert [s["name"] for s in saved["scans"]] == ["good", "cut", "later"]
  assert saved["failed"] == ["cut"]


def test_a_non_empty_out_is_refused_and_overwrite_clears_only_this_runs_outputs(model, trained,
                                                                                tmp_path):
  scan = _nifti_scan(tmp_path / "in" / "s1.nii.gz")
  out = tmp_path / "out"
  predict.predict_paths(model, [scan], out, modality="CT", save_probabilities=True)
  (out / "notes.txt").write_text("the lab's own file")
  (out / "old_scan").mkdir()
  with pytest.raises(predict.PredictError, match="not empty") as err:
    predict.predict_paths(model, [scan], out, modality="CT")
  assert str(out) in str(err.value) and "--overwrite" in str(err.value)
  records = predict.predict_paths(model, [scan], out, modality="CT", overwrite=True)
  # The old checkpoint's probability map is gone from the scan's folder; others' files stay.
  assert not (out / "s1" / "probabilities.nii.gz").exists()
  assert (out / "s1" / "mask.nii.gz").is_file()
  assert (out / "notes.txt").is_file() and (out / "old_scan").is_dir()
  saved = json.loads((out / "predictions.json").read_text())
  assert [s["name"] for s in saved["scans"]] == [r["name"] for r in records] == ["s1"]


def test_a_scan_folder_appears_only_when_complete(model, tmp_path, monkeypatch):
  """Killed while writing the second scan: its outputs were going to a hidden temporary folder,
  so no folder of its name exists, and no predictions.json claims a finished run."""
  from liverjax.reporting import prediction as writers  # pylint: disable=g-import-not-at-top
  inputs = [_nifti_scan(tmp_path / "in" / f"s{i}.nii.gz", seed=i) for i in (1, 2)]
  out = tmp_path / "out"
  real_overlay, seen = writers.write_overlay, []

  def overlay_then_die(path, *args, **kwargs):
    real_overlay(path, *args, **kwargs)
    seen.append(pathlib.Path(path).parent.name)
    if len(seen) == 2:
      assert not (out / "s2").exists()  # the scan's own name is not there while it is written
      raise KeyboardInterrupt

  monkeypatch.setattr(writers, "write_overlay", overlay_then_die)
  with pytest.raises(KeyboardInterrupt):
    predict.predict_paths(model, inputs, out, modality="CT")
  assert seen[1].startswith(".s2.partial")
  assert sorted(p.name for p in out.iterdir()) == ["s1"]  # no partial folder, no record
  assert (out / "s1" / "overlay.png").is_file()


def test_a_dicom_seg_that_cannot_be_written_is_a_problem_not_a_stop(model, trained, tmp_path):
  """Anonymisers often strip StudyInstanceUID: the DICOM-SEG cannot be made, the mask can."""
  _, root = trained
  series = tmp_path / "anonymised"
  series.mkdir()
  for f in sorted((root / "CT" / "1" / "DICOM_anon").glob("*.dcm")):
    ds = pydicom.dcmread(str(f))
    del ds.StudyInstanceUID
    ds.save_as(str(series / f.name))
  later = _nifti_scan(tmp_path / "later.nii.gz")
  records = predict.predict_paths(model, [series, later], tmp_path / "out")
  first, second = records
  assert "error" not in first and "error" not in second
  assert (tmp_path / "out" / first["name"] / "mask.nii.gz").is_file()
  assert not (tmp_path / "out" / first["name"] / "seg.dcm").exists()
  assert "dicom_seg" not in first["outputs"]
  assert [p for p in first["problems"] if "no DICOM-SEG written" in p and str(series) in p]
