"""liverjax.predict: a tiny U-Net trained here, predicted on DICOM / CHAOS / NIfTI scans."""
import dataclasses
import pathlib
import subprocess
import sys

import highdicom as hd
import jax
import nibabel as nib
import numpy as np
import pydicom
import pytest

from liverjax import checkpointing
from liverjax import predict
from liverjax import runtime
from liverjax.data import chaos
from liverjax.data import chaos_masks
from liverjax.data import harmonize
from liverjax.data import orientation
from liverjax.data import preprocess
from liverjax.data import synthetic
from liverjax.segmentation import metrics
from liverjax.segmentation import state as state_lib
from tests.conftest import REPO
from tests.conftest import SHARED_DATA
from tests.conftest import make_tiny_config

REAL_T2 = SHARED_DATA / "real_dev" / "chaos_t2"
# The "training domain's" intensity quantiles saved with the tiny checkpoint: a made-up
# bright distribution, far from the synthetic T2 scan's own.
SOURCE_QUANTILES = np.linspace(0.3, 0.95, 101).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(workdir, synthetic CHAOS root): a 32 px U-Net trained 3 steps on synthetic slices."""
  tmp = tmp_path_factory.mktemp("predict")
  root = synthetic.generate_chaos(tmp / "synth", n_ct=1, n_mr=1, size=32, slices=6)
  config = make_tiny_config(tmp)
  volumes, _ = chaos.load_volumes(root, ("ct", "t2"))
  prepared = [preprocess.prepare_volume(v, image_size=32) for v in volumes]
  images = np.concatenate([p.image for p in prepared])[:8, ..., None]
  masks = np.concatenate([p.mask for p in prepared])[:8, ..., None].astype(np.float32)
  mesh = runtime.create_mesh()
  graphdef, state, tx = state_lib.create_train_state(config, mesh, runtime.prng_key(config))
  step = state_lib.make_train_step(config, graphdef, tx, mesh)
  sharding = runtime.batch_sharding(mesh)
  batch = {"image": jax.make_array_from_process_local_data(sharding, images),
           "mask": jax.make_array_from_process_local_data(sharding, masks)}
  for i in range(3):
    state, _ = step(state, batch, runtime.prng_key(config, i))
  manager = checkpointing.create_manager(tmp / "workdir")
  checkpointing.save(manager, 3, state, config.to_dict(), metrics={"val_dice": 0.5},
                     source_stats={"intensity_quantiles": SOURCE_QUANTILES.tolist()})
  return tmp / "workdir", root


@pytest.fixture(scope="module")
def model(trained):
  return predict.load_model(trained[0])


def _png_stack(folder: pathlib.Path, names) -> np.ndarray:
  return np.stack([chaos_masks.read_mask_png(folder / n) for n in names])


def _sop_uids(files) -> set:
  return {str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in files}


def test_load_model_takes_the_preprocessing_from_the_checkpoint(model):
  assert model.step == 3
  assert model.config.data.image_size == 32
  assert model.config.model.base_features == 4  # the saved architecture, not the default 16


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
    img = nib.load(str(out / name / "mask.nii.gz"))
    first = pydicom.dcmread(volume.image_files[0], stop_before_pixels=True)
    lps = np.array([float(v) for v in first.ImagePositionPatient])
    np.testing.assert_allclose(img.affine[:3, 3], lps * [-1, -1, 1], atol=1e-4)
    prob = nib.load(str(out / name / "probabilities.nii.gz"))
    assert prob.shape == img.shape and np.allclose(prob.affine, img.affine)
    assert (out / name / "overlay.png").is_file()
  assert (out / "predictions.json").is_file()


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


def test_nifti_mask_is_mapped_back_to_the_input_voxel_order(model, tmp_path):
  """An oblique-free but permuted and flipped NIfTI: the written mask, brought to the
  display orientation, is exactly the mask predicted on the display volume."""
  rng = np.random.default_rng(0)
  display = np.full((6, 40, 36), -1000.0, np.float32)
  display[:, 5:35, 4:32] = rng.normal(40, 30, (6, 30, 28))
  display[1:5, 10:25, 5:18] = 120.0
  # Source array axes (i, j, k) = display (W, Z, H), with W and Z reversed.
  r = orientation.Reorientation(axes=(1, 2, 0), flip=(True, False, True))
  source = np.ascontiguousarray(orientation.from_display(display, r))
  affine = np.eye(4)
  affine[:3, 3] = (-20.0, 30.0, 10.0)
  for t, (s, flip) in enumerate(zip(r.axes, r.flip)):  # source axis s shows display axis t
    lps = orientation.DISPLAY[t] * (-1.0 if flip else 1.0)
    affine[:3, s] = np.diag([-1.0, -1.0, 1.0]) @ lps * (2.5, 0.8, 0.9)[t]
  # The affine says r: reading the file brings it to the display orientation with r.
  assert orientation.to_display(orientation.nifti_directions(affine)) == r
  path = tmp_path / "case_0000.nii.gz"
  nib.save(nib.Nifti1Image(source, affine), str(path))
  (record,) = predict.predict_paths(model, [path], tmp_path / "out", keep_largest=False,
                                    modality="CT")
  written = nib.load(str(tmp_path / "out" / "case" / "mask.nii.gz"))
  assert written.shape == source.shape
  np.testing.assert_allclose(written.affine, affine, atol=1e-6)
  scan = predict.read_scan(predict.find_scans(path)[0], "CT")
  np.testing.assert_array_equal(scan.volume.image, display)
  expected = predict.predict_volume(model, scan.volume, keep_largest=False)
  np.testing.assert_array_equal(orientation.apply(np.asarray(written.dataobj), r), expected)
  assert record["slices"] == 6


def _one_line(e: BaseException, path) -> None:
  assert str(path) in str(e) and "\n" not in str(e), str(e)


def test_bad_inputs_raise_one_line_naming_the_file(tmp_path):
  empty = tmp_path / "no_dicom"
  empty.mkdir()
  (empty / "notes.txt").write_text("not a DICOM file")
  with pytest.raises(chaos.ChaosError) as e:
    predict.read_scan(predict.find_scans(empty)[0])
  _one_line(e.value, empty)
  four_d = tmp_path / "four_d.nii.gz"
  nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), str(four_d))
  with pytest.raises(chaos.ChaosError, match="expected a 3D volume") as e:
    predict.read_scan(predict.find_scans(four_d)[0])
  _one_line(e.value, four_d)
  with pytest.raises(predict.PredictError) as e:
    predict.find_scans(tmp_path / "missing.nii.gz")
  _one_line(e.value, tmp_path / "missing.nii.gz")
  config = make_tiny_config(tmp_path)
  _, state, _ = state_lib.create_train_state(config, runtime.create_mesh(),
                                             runtime.prng_key(config))
  bare = tmp_path / "bare"
  checkpointing.save(checkpointing.create_manager(bare), 1, state, None,
                     metrics={"val_dice": 0.1})
  with pytest.raises(predict.PredictError, match="without a saved config") as e:
    predict.load_model(bare)
  _one_line(e.value, bare / "checkpoints" / "1")


def test_command_line_ends_with_one_line_naming_the_bad_file(trained, tmp_path):
  workdir, _ = trained
  four_d = tmp_path / "four_d.nii.gz"
  nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), str(four_d))
  run = subprocess.run([sys.executable, "-m", "liverjax.predict", f"--workdir={workdir}",
                        f"--input={four_d}", f"--out={tmp_path / 'out'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 1
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith("liverjax.predict: ") and str(four_d) in last and "3D" in last


def test_batch_norm_adaptation_follows_the_checkpoint_config(model, trained):
  # "auto" adapts only where the checkpoint was evaluated so (eval.adapt_bn="volume") and only
  # scans of the modality it was not trained on; "on" / "off" force it; adapting changes the
  # logits (the scan's own statistics replace the training running averages).
  volumes, _ = chaos.load_volumes(trained[1], ("ct", "t2"))
  mr = next(v for v in volumes if v.modality == "MR")
  ct = next(v for v in volumes if v.modality == "CT")
  assert model.config.data.source == "ct"
  assert not predict.adapts_batch_norm(model, mr)  # the saved config says adapt_bn "none"
  model.config.eval.adapt_bn = "volume"
  try:
    assert predict.adapts_batch_norm(model, mr) and not predict.adapts_batch_norm(model, ct)
    assert predict.adapts_batch_norm(model, ct, "on")
    assert not predict.adapts_batch_norm(model, mr, "off")
    on = predict.predict_logits(model, mr, adapt_bn="on")
    off = predict.predict_logits(model, mr, adapt_bn="off")
    assert on.shape == off.shape == mr.image.shape
    assert not np.allclose(on, off, atol=1e-3)
    np.testing.assert_allclose(predict.predict_logits(model, mr), on, atol=1e-5)
  finally:
    model.config.eval.adapt_bn = "none"
  with pytest.raises(predict.PredictError, match="adapt_bn"):
    predict.adapts_batch_norm(model, mr, "yes")


def test_histogram_matching_follows_the_checkpoint_config(model, trained):
  # "auto" matches only where the checkpoint was evaluated so (eval.intensity="histogram_match")
  # and only scans of the modality it was not trained on, to the quantiles saved with it.
  volumes, _ = chaos.load_volumes(trained[1], ("ct", "t2"))
  mr = next(v for v in volumes if v.modality == "MR")
  ct = next(v for v in volumes if v.modality == "CT")
  np.testing.assert_array_equal(model.source_stats["intensity_quantiles"], SOURCE_QUANTILES)
  assert not predict.matches_histogram(model, mr)  # the saved config says intensity "none"
  np.testing.assert_array_equal(predict.prepare_input(model, mr), predict.prepare(model, mr))
  model.config.eval.intensity = "histogram_match"
  try:
    assert predict.matches_histogram(model, mr) and not predict.matches_histogram(model, ct)
    assert predict.matches_histogram(model, ct, "histogram_match")
    assert not predict.matches_histogram(model, mr, "none")
    np.testing.assert_array_equal(predict.prepare_input(model, ct), predict.prepare(model, ct))
    matched, plain = predict.prepare_input(model, mr), predict.prepare(model, mr)
    np.testing.assert_allclose(matched, harmonize.histogram_match(plain, None, SOURCE_QUANTILES),
                               atol=1e-6)
    body = matched[plain > harmonize.BODY_THRESHOLD]  # the scan's body now has the saved levels
    np.testing.assert_allclose(np.quantile(body, [0.1, 0.5, 0.9]),
                               SOURCE_QUANTILES[[10, 50, 90]], atol=0.03)
    model.config.eval.intensity_gamma = 0.5  # then x ** gamma, as the evaluation does
    np.testing.assert_allclose(predict.prepare_input(model, mr), np.sqrt(matched), atol=1e-6)
    model.config.eval.intensity_gamma = 1.0
    assert not np.allclose(predict.predict_logits(model, mr),
                           predict.predict_logits(model, mr, intensity="none"), atol=1e-3)
    # A checkpoint made before the quantiles were kept: one line naming it.
    old = dataclasses.replace(model, source_stats=None)
    with pytest.raises(predict.PredictError, match="intensity quantiles.*--intensity=none"):
      predict.prepare_input(old, mr)
    np.testing.assert_array_equal(predict.prepare_input(old, mr, "none"),
                                  predict.prepare(model, mr))
  finally:
    model.config.eval.intensity = "none"
    model.config.eval.intensity_gamma = 1.0
  with pytest.raises(predict.PredictError, match="intensity"):
    predict.matches_histogram(model, mr, "zscore")


def test_field_of_view_logits_go_back_to_the_scan_grid(model, trained):
  # With `data.field_of_view`, the model sees the scan resampled to fov / S mm pixels and centred;
  # its logits go back to the scan's own grid: the centre carries the model's output, and what
  # the crop cut away (a field of view half the scan's) is background.
  volumes, _ = chaos.load_volumes(trained[1], ("ct",))
  ct = volumes[0]
  z, h, w = ct.image.shape
  native_fov = h * ct.spacing[1]
  size = int(model.config.data.image_size)
  try:
    model.config.data.field_of_view = native_fov / 2
    x = predict.prepare(model, ct)
    assert x.shape == (z, size, size)
    # Half the field of view on the same S pixels: the centre of the scan, enlarged 2x.
    whole = preprocess.prepare_volume(ct, image_size=2 * size).image
    np.testing.assert_allclose(x, whole[:, size // 2:size // 2 + size, size // 2:size // 2 + size],
                               atol=0.08)
    logits = predict.predict_logits(model, ct)
    assert logits.shape == ct.image.shape
    q = h // 4
    edge = np.ones((h, w), bool)
    edge[q - 1:h - q + 1, q - 1:w - q + 1] = False
    assert np.all(logits[:, edge] == predict.BACKGROUND_LOGIT)
    assert np.all(logits[:, q + 1:h - q - 1, q + 1:w - q - 1] > predict.BACKGROUND_LOGIT)
    model.config.data.field_of_view = native_fov * 2  # padded: every voxel has a model logit
    assert np.all(predict.predict_logits(model, ct) > predict.BACKGROUND_LOGIT)
  finally:
    model.config.data.field_of_view = None


def test_field_of_view_edge_problem_names_a_liver_at_the_crop_edge():
  # A 400 mm scan (100 px of 4 mm) seen through a 320 mm field of view at 64 px: the model sees
  # columns within +-160 mm of the centre; the band checked is the outer 10 mm of that.
  mask = np.zeros((3, 100, 100), np.uint8)
  mask[1, 40:60, 45:55] = 1  # central liver: nothing to say
  assert predict.field_of_view_edge_problem(mask, (4.0, 4.0), 320.0, 64, "scan") is None
  mask[1, 40:60, 10:15] = 1  # 158-138 mm left of the centre: at the edge of the crop
  line = predict.field_of_view_edge_problem(mask, (4.0, 4.0), 320.0, 64, "scan_7")
  assert line is not None and "scan_7" in line and "320 mm" in line and "400 x 400 mm" in line
  # The same mask on a 300 mm scan (3 mm pixels) was padded, not cut; whole slices are never cut.
  assert predict.field_of_view_edge_problem(mask, (3.0, 3.0), 320.0, 64, "scan") is None
  assert predict.field_of_view_edge_problem(mask, (4.0, 4.0), None, 64, "scan") is None
  # Only the cut side counts: 400 mm wide, 300 mm tall, liver at the top edge -> nothing.
  top = np.zeros((3, 100, 100), np.uint8)
  top[1, 0:5, 45:55] = 1
  assert predict.field_of_view_edge_problem(top, (3.0, 4.0), 320.0, 64, "scan") is None
  assert predict.field_of_view_edge_problem(top, (4.0, 3.0), 320.0, 64, "scan") is not None
