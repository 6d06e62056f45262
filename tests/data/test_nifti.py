"""Tests for liverjax/data/nifti.py: MSD / plain NIfTI datasets, orientation, labels, errors."""
import json
import pathlib

import nibabel as nib
import numpy as np
import pytest

from liverjax.data import chaos
from liverjax.data import nifti
from tests.conftest import SHARED_DATA

REAL_DEV = SHARED_DATA / "real_dev"
RAS = np.diag([2.0, 1.5, 4.0, 1.0])  # i -> right, j -> anterior, k -> head; zooms 2, 1.5, 4 mm


def tiny_label(shape=(6, 5, 4)) -> np.ndarray:
  """A RAS label map (i, j, k): liver 6 at high i (the patient's right), spleen 1 at low i."""
  label = np.zeros(shape, np.uint8)
  label[-2:, 1:3, 1:3] = 6
  label[:2, :2, 2:] = 1
  return label


def write_nifti(path: pathlib.Path, array: np.ndarray, affine=RAS, slope=None, inter=None):
  path.parent.mkdir(parents=True, exist_ok=True)
  img = nib.Nifti1Image(array, affine)
  if slope is not None:
    img.header.set_slope_inter(slope, inter)
  nib.save(img, str(path))
  return path


def write_msd(root: pathlib.Path, cases=("case_a", "case_b"), channel="CT",
              labels=None, affine=RAS, seed=0, with_training=True) -> pathlib.Path:
  """A tiny MSD / nnU-Net dataset: uint8 images stored with slope 2, intercept -100."""
  labels = labels or {"background": 0, "spleen": 1, "liver": 6}
  rng = np.random.default_rng(seed)
  training = []
  for case in cases:
    label = tiny_label()
    raw = rng.integers(0, 200, label.shape).astype(np.uint8)
    write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", raw, affine, slope=2.0, inter=-100.0)
    write_nifti(root / "labelsTr" / f"{case}.nii.gz", label, affine)
    training.append({"image": f"./imagesTr/{case}_0000.nii.gz",
                     "label": f"./labelsTr/{case}.nii.gz"})
  meta = {"channel_names": {"0": channel}, "labels": labels, "file_ending": ".nii.gz"}
  if with_training:
    meta["training"] = training
  (root / "dataset.json").write_text(json.dumps(meta))
  return root


def to_display_ras(array: np.ndarray) -> np.ndarray:
  """The display orientation of a RAS array, as the nibabel docs put it: arr[::-1, ::-1, k].T."""
  return np.stack([array[::-1, ::-1, k].T for k in range(array.shape[2])][::-1])


def test_msd_reader_reads_image_label_modality_spacing(tmp_path):
  root = write_msd(tmp_path / "ds")
  vols, problems = nifti.load_volumes(root)
  assert problems == [] and [v.patient_id for v in vols] == ["case_a", "case_b"]
  v = vols[0]
  assert (v.modality, v.sequence) == ("CT", "ct")
  raw = nib.load(str(root / "imagesTr" / "case_a_0000.nii.gz")).dataobj.get_unscaled()
  np.testing.assert_allclose(v.image, to_display_ras(raw.astype(np.float32) * 2 - 100))
  assert v.image.dtype == np.float32 and v.image.shape == (4, 5, 6)
  assert v.spacing == (4.0, 1.5, 2.0)  # (z, y, x) from the zooms (2, 1.5, 4)
  np.testing.assert_array_equal(v.mask, to_display_ras(tiny_label() == 6).astype(np.uint8))
  assert v.mask.dtype == np.uint8 and set(np.unique(v.mask)) == {0, 1}
  organs = to_display_ras(tiny_label())
  assert np.all((v.organs == nifti.ORGANS.index("liver")) == (organs == 6))
  assert np.all((v.organs == nifti.ORGANS.index("spleen")) == (organs == 1))


def test_msd_cases_found_without_training_list(tmp_path):
  root = write_msd(tmp_path / "ds", cases=("x1", "x2", "x3"), with_training=False)
  info = nifti.dataset_info(root)
  assert [c.case_id for c in info.cases] == ["x1", "x2", "x3"]
  assert info.liver_label == 6


def test_liver_label_from_labels_and_overridable(tmp_path):
  root = write_msd(tmp_path / "ds")
  default = nifti.load_volumes(root)[0][0]
  spleen = nifti.load_volumes(root, liver_label=1)[0][0]
  organs = to_display_ras(tiny_label())
  np.testing.assert_array_equal(default.mask, organs == 6)
  np.testing.assert_array_equal(spleen.mask, organs == 1)


@pytest.mark.parametrize("name,organ", [
    ("right_kidney", "kidney_r"), ("Left Kidney", "kidney_l"), ("liver", "liver"),
    ("inferior_vena_cava", "ivc"), ("portal_and_splenic_vein", "portal_splenic_vein"),
    ("right_adrenal_gland", "adrenal_r"), ("tumour", None)])
def test_canonical_organ_names(name, organ):
  assert nifti.canonical_organ(name) == organ


@pytest.mark.parametrize("channel,sequence", [("MR", "t2"), ("T2", "t2"), ("T1_in", "t1_in"),
                                              ("T1 opposed", "t1_out")])
def test_mr_sequence_from_channel_name(tmp_path, channel, sequence):
  root = write_msd(tmp_path / "ds", cases=("m",), channel=channel,
                   labels={"background": 0, "liver": 1})
  v = nifti.load_volumes(root, modality="MR")[0][0]
  assert (v.modality, v.sequence) == ("MR", sequence)


def test_unnamed_channel_takes_the_source_modality(tmp_path):
  root = write_msd(tmp_path / "ds", cases=("z",), channel="zscore")
  assert nifti.dataset_info(root, modality="CT").modality == "CT"
  with pytest.raises(chaos.ChaosError, match="channel 0 is 'zscore'") as err:
    nifti.dataset_info(root)
  _one_line_naming(err, root / "dataset.json")


def test_any_affine_reaches_the_same_display_array(tmp_path):
  """The same anatomy stored RAS, LPS (x and y flipped) or with i/j swapped reads identically."""
  label = tiny_label()
  ras = write_nifti(tmp_path / "ras.nii.gz", label)
  # LPS storage: voxel (i, j, k) of the flipped array is RAS voxel (5 - i, 4 - j, k).
  lps_aff = RAS.copy()
  lps_aff[0, 0], lps_aff[1, 1] = -2.0, -1.5
  lps_aff[:3, 3] = [10.0, 6.0, 0.0]
  lps = write_nifti(tmp_path / "lps.nii.gz", label[::-1, ::-1].copy(), lps_aff)
  swap_aff = np.array([[0, 2.0, 0, 0], [1.5, 0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 1]])
  swapped = write_nifti(tmp_path / "swap.nii.gz", label.transpose(1, 0, 2).copy(), swap_aff)
  info = nifti.DatasetInfo(root=tmp_path, modality="CT", sequence="ct",
                           labels={"background": 0, "spleen": 1, "liver": 6}, liver_label=6,
                           cases=[])
  reads = [nifti.read_case(nifti.Case(p.name, p, p), info) for p in (ras, lps, swapped)]
  for v in reads:
    np.testing.assert_array_equal(v.mask, reads[0].mask)
    assert v.spacing == (4.0, 1.5, 2.0)
  # High RAS i is the patient's right: the first display columns, so the liver is on the left.
  assert np.argwhere(reads[0].mask)[:, 2].mean() < reads[0].mask.shape[2] / 2


def test_plain_folder_of_image_label_pairs(tmp_path):
  for case in ("p1", "p2"):
    write_nifti(tmp_path / "images" / f"{case}.nii.gz", np.ones((6, 5, 4), np.int16))
    write_nifti(tmp_path / "labels" / f"{case}.nii.gz", (tiny_label() == 6).astype(np.uint8))
  vols, problems = nifti.load_volumes(tmp_path, modality="MR")
  assert problems == [] and [v.patient_id for v in vols] == ["p1", "p2"]
  assert vols[0].modality == "MR" and vols[0].sequence == "t2" and vols[0].mask.sum() == 8
  with pytest.raises(chaos.ChaosError, match="needs its modality"):
    nifti.load_volumes(tmp_path)


def test_plain_folder_one_folder_per_case(tmp_path):
  write_nifti(tmp_path / "c7" / "image.nii.gz", np.zeros((6, 5, 4), np.float32))
  write_nifti(tmp_path / "c7" / "seg.nii.gz", (tiny_label() == 6).astype(np.uint8))
  vols, _ = nifti.load_volumes(tmp_path, modality="CT")
  assert [v.patient_id for v in vols] == ["c7"] and vols[0].mask.sum() == 8


def _one_line_naming(err: pytest.ExceptionInfo, path: pathlib.Path) -> None:
  msg = str(err.value)
  assert "\n" not in msg and str(path) in msg, msg


def test_bad_dataset_json_is_one_line_naming_the_file(tmp_path):
  root = write_msd(tmp_path / "ds")
  path = root / "dataset.json"
  path.write_text("{not json")
  with pytest.raises(chaos.ChaosError, match="not valid JSON") as err:
    nifti.load_volumes(root)
  _one_line_naming(err, path)
  path.write_text(json.dumps({"labels": {"liver": 1}}))
  with pytest.raises(chaos.ChaosError, match="channel_names") as err:
    nifti.load_volumes(root)
  _one_line_naming(err, path)
  path.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0,
                                                                       "tumour": 2}}))
  with pytest.raises(chaos.ChaosError, match="no 'liver'") as err:
    nifti.load_volumes(root)
  _one_line_naming(err, path)


def test_missing_label_file_is_one_line_naming_the_file(tmp_path):
  root = write_msd(tmp_path / "ds")
  missing = root / "labelsTr" / "case_b.nii.gz"
  missing.unlink()
  info = nifti.dataset_info(root)
  with pytest.raises(chaos.ChaosError, match="label file missing") as err:
    nifti.read_case(info.cases[1], info)
  _one_line_naming(err, missing)
  vols, problems = nifti.load_volumes(root)  # the dataset loads, the case is reported
  assert [v.patient_id for v in vols] == ["case_a"]
  assert len(problems) == 1 and str(missing) in problems[0]


def test_shape_mismatch_is_one_line_naming_the_label(tmp_path):
  root = write_msd(tmp_path / "ds", cases=("a",))
  label = write_nifti(root / "labelsTr" / "a.nii.gz", np.zeros((6, 5, 3), np.uint8))
  info = nifti.dataset_info(root)
  with pytest.raises(chaos.ChaosError, match=r"label shape \(6, 5, 3\) differs") as err:
    nifti.read_case(info.cases[0], info)
  _one_line_naming(err, label)


def test_modality_mismatch_names_dataset_json(tmp_path):
  root = write_msd(tmp_path / "ds", channel="MR", labels={"background": 0, "liver": 1})
  with pytest.raises(chaos.ChaosError, match="given as a CT source") as err:
    nifti.dataset_info(root, modality="CT")
  _one_line_naming(err, root / "dataset.json")


# ----------------------------------------------------------------------------- real data


def _real_case(name: str):
  root = REAL_DEV / name
  if not (root / "dataset.json").is_file():
    pytest.skip(f"real development set not found at {root}")
  info = nifti.dataset_info(root)
  return nifti.read_case(info.cases[0], info)


def _centroid(mask: np.ndarray) -> np.ndarray:
  """Centroid (z, y, x) as fractions of the volume's extent."""
  return np.argwhere(mask).mean(0) / np.array(mask.shape)


def _bright_rows(image_hu: np.ndarray, mask: np.ndarray, threshold: float = 270.0):
  """Bright (bone / contrast) pixels in the top and in the bottom third of the rows, on the
  slice with the most liver: the spine sits at the bottom in the display orientation."""
  z = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(1)))
  bright = image_hu[z] >= threshold
  third = bright.shape[0] // 3
  return int(bright[:third].sum()), int(bright[-third:].sum())


def test_real_nifti_and_dicom_share_the_display_orientation(ct_sample_root):
  """BTCV (NIfTI) and the CHAOS CT patient (DICOM): liver on the image's left, spine at the
  bottom; the T2 patient's liver on the left too; kidneys below the liver (head -> feet)."""
  btcv, t2 = _real_case("btcv_ct"), _real_case("chaos_t2")
  dicom = chaos.read_series(chaos.discover(ct_sample_root, ("ct",))[0])
  dicom_liver = dicom.mask > 127
  for name, mask in (("btcv", btcv.mask), ("chaos_t2", t2.mask), ("dicom", dicom_liver)):
    assert _centroid(mask)[2] < 0.45, f"{name}: liver not on the image's left"
  # BTCV HU is clipped at 275: bone is the top of its range.
  for name, image, mask in (("btcv", btcv.image, btcv.mask), ("dicom", dicom.image, dicom_liver)):
    top, bottom = _bright_rows(image, mask)
    assert bottom > 1.5 * top, f"{name}: bright pixels top {top}, bottom {bottom}"
  for vol in (btcv, t2):
    kidneys = np.isin(vol.organs, [nifti.ORGANS.index("kidney_r"),
                                   nifti.ORGANS.index("kidney_l")])
    assert _centroid(kidneys)[0] > _centroid(vol.mask)[0], f"{vol.patient_id}: z not head->feet"
  assert btcv.image.min() >= -125.5 and btcv.image.max() <= 275.5  # scl_slope/inter applied
  assert btcv.modality == "CT" and t2.modality == "MR" and t2.sequence == "t2"


# ----------------------------------------------------------------------------- bad input (#26)


@pytest.mark.parametrize("channel", ["MR", "CT"])
def test_non_finite_voxels_are_replaced_and_named(tmp_path, channel):
  """A NaN in an MR volume made the percentile scaling return all zeros; in a CT one it
  reached the slices. Both now read finite, with a problem naming the image and the count."""
  from liverjax.data import preprocess  # pylint: disable=g-import-not-at-top
  root = write_msd(tmp_path / "ds", cases=("n",), channel=channel,
                   labels={"background": 0, "liver": 6})
  image = root / "imagesTr" / "n_0000.nii.gz"
  array = np.random.default_rng(0).uniform(0, 500, (6, 5, 4)).astype(np.float32)
  array[0, 0, 0], array[1, 1, 1] = np.nan, np.inf
  write_nifti(image, array)
  vols, problems = nifti.load_volumes(root)
  assert np.isfinite(vols[0].image).all()
  assert [p for p in problems if str(image) in p and "2 non-finite voxels" in p]
  prepared = preprocess.prepare_volume(vols[0], image_size=8)
  assert np.isfinite(prepared.image).all() and prepared.image.max() > 0.5


def test_unlabelled_images_follow_the_non_finite_rule(tmp_path):
  array = np.random.default_rng(1).uniform(0, 500, (6, 5, 4)).astype(np.float32)
  array[2, 2, 2] = np.nan
  write_nifti(tmp_path / "scans" / "u1.nii.gz", array)
  info = nifti.unlabelled_info(tmp_path / "scans", modality="MR")
  v = nifti.read_image(info.cases[0], info)
  assert np.isfinite(v.image).all()
  assert len(v.problems) == 1 and "u1.nii.gz" in v.problems[0]


def test_plain_folder_needs_the_liver_label_unless_its_labels_are_binary(tmp_path):
  """BTCV-like labels (1 = spleen, 6 = liver) in a folder without dataset.json: the label
  that was taken for the liver by default is refused, naming the file and the field."""
  for case in ("b1", "b2"):
    write_nifti(tmp_path / "images" / f"{case}.nii.gz", np.ones((6, 5, 4), np.int16))
    write_nifti(tmp_path / "labels" / f"{case}.nii.gz", tiny_label())
  info = nifti.dataset_info(tmp_path, modality="CT")
  with pytest.raises(chaos.ChaosError, match="data.ct.liver_label") as err:
    nifti.read_case(info.cases[0], info)
  _one_line_naming(err, tmp_path / "labels" / "b1.nii.gz")
  vols, problems = nifti.load_volumes(tmp_path, modality="CT", liver_label=6)
  assert len(vols) == 2 and problems == []
  np.testing.assert_array_equal(vols[0].mask, to_display_ras(tiny_label() == 6))


def test_a_label_map_without_the_liver_is_refused_as_chaos_refuses_empty_masks(tmp_path):
  root = write_msd(tmp_path / "ds", cases=("good", "empty"))
  write_nifti(root / "labelsTr" / "empty.nii.gz", np.where(tiny_label() == 6, 0,
                                                           tiny_label()).astype(np.uint8))
  info = nifti.dataset_info(root)
  with pytest.raises(chaos.ChaosError, match="no voxel with the liver label 6") as err:
    nifti.read_case(info.cases[1], info)
  _one_line_naming(err, root / "labelsTr" / "empty.nii.gz")
  vols, problems = nifti.load_volumes(root)
  assert [v.patient_id for v in vols] == ["good"]
  assert any("case skipped" in p and "empty.nii.gz" in p for p in problems)


@pytest.mark.parametrize("entry", ["../outside/o_0000.nii.gz", "ABSOLUTE",
                                   "imagesTr/../../outside/o_0000.nii.gz"])
def test_dataset_json_paths_must_stay_inside_the_folder(tmp_path, entry):
  root = write_msd(tmp_path / "ds", cases=("a",))
  outside = write_nifti(tmp_path / "outside" / "o_0000.nii.gz", np.ones((6, 5, 4), np.uint8))
  entry = str(outside) if entry == "ABSOLUTE" else entry
  meta = json.loads((root / "dataset.json").read_text())
  meta["training"].append({"image": entry, "label": "./labelsTr/a.nii.gz"})
  (root / "dataset.json").write_text(json.dumps(meta))
  with pytest.raises(chaos.ChaosError, match="leaves the dataset folder") as err:
    nifti.dataset_info(root)
  _one_line_naming(err, root / "dataset.json")
  assert entry in str(err.value)


def test_a_link_inside_the_folder_is_followed_as_the_cache_key_follows_it(tmp_path):
  """The path rule is the cache key's: a folder link inside the dataset is walked by both."""
  from liverjax.data import cache  # pylint: disable=g-import-not-at-top
  import hashlib  # pylint: disable=g-import-not-at-top
  real = write_msd(tmp_path / "real", cases=("a",))
  root = tmp_path / "ds"
  root.mkdir()
  (root / "imagesTr").symlink_to(real / "imagesTr")
  (root / "labelsTr").symlink_to(real / "labelsTr")
  (root / "dataset.json").write_text((real / "dataset.json").read_text())
  vols, problems = nifti.load_volumes(root)
  assert len(vols) == 1 and problems == []
  before = hashlib.sha256()
  cache.digest_tree(before, root)
  write_nifti(real / "imagesTr" / "a_0000.nii.gz", np.zeros((6, 5, 4), np.uint8))
  after = hashlib.sha256()
  cache.digest_tree(after, root)
  assert before.hexdigest() != after.hexdigest()  # an edit behind the link changes the key


def test_unlabelled_info_reads_no_path_from_dataset_json(tmp_path):
  """Unlabelled scans are the files of the folder's image folders: a dataset.json entry that
  points outside it is never opened."""
  root = write_msd(tmp_path / "ds", cases=("a",))
  outside = write_nifti(tmp_path / "outside" / "o_0000.nii.gz", np.ones((6, 5, 4), np.uint8))
  meta = json.loads((root / "dataset.json").read_text())
  meta["training"] = [{"image": str(outside), "label": "../x.nii.gz"}]
  meta["test"] = [str(outside)]
  (root / "dataset.json").write_text(json.dumps(meta))
  info = nifti.unlabelled_info(root)
  assert [c.image for c in info.cases] == [root / "imagesTr" / "a_0000.nii.gz"]


@pytest.mark.parametrize("channel", ["PET", "SPECT", "US"])
def test_a_channel_of_another_modality_is_refused_not_read_as_mr(tmp_path, channel):
  root = write_msd(tmp_path / "ds", cases=("p",), channel=channel)
  with pytest.raises(chaos.ChaosError, match="neither CT nor MR") as err:
    nifti.dataset_info(root, modality="MR")
  _one_line_naming(err, root / "dataset.json")


def test_a_truncated_label_is_named_as_the_label(tmp_path):
  root = write_msd(tmp_path / "ds", cases=("t",))
  label = root / "labelsTr" / "t.nii.gz"
  write_nifti(label, np.random.default_rng(0).integers(0, 7, (60, 50, 40)).astype(np.uint8),
              affine=RAS)
  data = label.read_bytes()
  label.write_bytes(data[: len(data) // 2])
  write_nifti(root / "imagesTr" / "t_0000.nii.gz", np.zeros((60, 50, 40), np.uint8))
  info = nifti.dataset_info(root)
  with pytest.raises(chaos.ChaosError, match="label data, truncated") as err:
    nifti.read_case(info.cases[0], info)
  _one_line_naming(err, label)
  assert "t_0000" not in str(err.value)
