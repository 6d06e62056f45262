"""Tests for liverjax/data/sources.py (NIfTI / CHAOS roots per modality, the unlabelled
adapt scans, the halved shared folder, the progress of reading them) and the splits it leads to
in liverjax/data/dataset.py."""
import json
import logging

import numpy as np
import pytest

from liverjax import progress
from liverjax.data import chaos
from liverjax.data import dataset
from liverjax.data import sources as sources_lib
from tests.conftest import make_tiny_config
from tests.data.test_chaos import build_ct_patient
from tests.data.test_chaos import ct_mask
from tests.data.test_chaos import write_mask
from tests.data.test_nifti import tiny_label
from tests.data.test_nifti import write_msd
from tests.data.test_nifti import write_nifti


def _config(tmp_path, **data):
  config = make_tiny_config(tmp_path)
  config.data.image_size = 8
  config.data.mr_sequences = ("t2",)
  for key, value in data.items():
    section, _, name = key.partition("__")
    if name:
      config.data[section][name] = value
    else:
      config.data[key] = value
  return config


def test_sources_per_modality_nifti_and_chaos(tmp_path, ct_sample_root):
  ct = write_msd(tmp_path / "ct_ds", cases=("c1", "c2"))
  config = _config(tmp_path, ct__root=(str(ct), str(ct_sample_root)),
                   mr__root=str(write_msd(tmp_path / "mr_ds", channel="MR",
                                          labels={"background": 0, "liver": 1})))
  sources = sources_lib.resolve_sources(config.data)
  assert [(s.kind, s.modality) for s in sources] == [("nifti", "CT"), ("chaos", "CT"),
                                                     ("nifti", "MR")]
  assert sources[1].path.name == "Train_Sets"


def test_no_source_is_the_synthetic_default(tmp_path):
  config = _config(tmp_path)
  (source,) = sources_lib.resolve_sources(config.data)
  assert source.kind == "chaos" and "synthetic" in str(source.path)
  assert sources_lib.describe_sources(config.data).startswith("synthetic")


def test_a_folder_that_is_neither_names_it(tmp_path):
  (tmp_path / "empty").mkdir()
  config = _config(tmp_path, ct__root=str(tmp_path / "empty"))
  with pytest.raises(chaos.ChaosError, match="neither a CHAOS folder") as err:
    sources_lib.resolve_sources(config.data)
  assert str(tmp_path / "empty") in str(err.value)


def test_load_dataset_target_modality_is_all_test(tmp_path):
  ct = write_msd(tmp_path / "ct_ds", cases=[f"c{i}" for i in range(5)])
  mr = write_msd(tmp_path / "mr_ds", cases=[f"m{i}" for i in range(4)], channel="T2",
                 labels={"background": 0, "liver": 1, "spleen": 6})
  config = _config(tmp_path, ct__root=str(ct), mr__root=str(mr), source="ct",
                   split=(0.6, 0.2, 0.2))
  data = dataset.load_dataset(config.data)
  assert data.splits["MR"] == {"train": [], "val": [], "test": ["m0", "m1", "m2", "m3"],
                               "adapt": []}
  assert [len(data.splits["CT"][k]) for k in ("train", "val", "test")] == [3, 1, 1]
  test_mr = data.select("mr", "test", ("t2",))
  assert len(test_mr) == 4 and all(v.image.shape[1:] == (8, 8) for v in test_mr)
  # The MR liver is label 1 here; label 6 (the CT liver value) is this set's spleen.
  assert all(set(np.unique(v.mask)) <= {0, 1} and v.mask.any() for v in test_mr)
  # The CycleGAN trains on both modalities: then data.split applies to both.
  both = dataset.load_dataset(config.data, trained_domains=("ct", "mr"))
  assert [len(both.splits["MR"][k]) for k in ("train", "val", "test")] == [2, 1, 1]
  config.data.target_test_only = False
  assert len(dataset.load_dataset(config.data).splits["MR"]["train"]) == 2


def test_split_dataset_target_only_follows_source(tmp_path):
  config = _config(tmp_path, source="mr", targets=("ct", "mr"))
  vols = [dataset.preprocess.PreparedVolume(pid, mod, seq, None, None, (1.0, 1.0, 1.0))
          for pid, mod, seq in [("a", "CT", "ct"), ("b", "CT", "ct"), ("1", "MR", "t2"),
                                ("2", "MR", "t2"), ("3", "MR", "t2")]]
  splits = dataset.split_dataset(vols, config.data)
  assert splits["CT"]["test"] == ["a", "b"] and splits["CT"]["train"] == []
  assert sum(len(v) for v in splits["MR"].values()) == 3 and splits["MR"]["train"]
  config.data.targets = ("mr",)  # CT neither trained nor evaluated: data.split applies
  assert dataset.split_dataset(vols, config.data)["CT"]["train"]


def test_patient_ids_unique_across_roots(tmp_path):
  a = write_msd(tmp_path / "set_a", cases=("p1", "p2"))
  b = write_msd(tmp_path / "set_b", cases=("p1", "p3"), seed=1)
  config = _config(tmp_path, ct__root=(str(a), str(b)), targets=("ct",))
  data = dataset.load_dataset(config.data)
  ids = sorted(v.patient_id for v in data.volumes)
  assert ids == ["p1", "p2", "p3", "set_b/p1"]
  assert sum(len(v) for v in data.splits["CT"].values()) == 4


def test_modality_of_a_source_is_checked(tmp_path):
  mr = write_msd(tmp_path / "mr_ds", channel="MR", labels={"background": 0, "liver": 1})
  config = _config(tmp_path, ct__root=str(mr))
  with pytest.raises(chaos.ChaosError, match="given as a CT source"):
    dataset.load_dataset(config.data)


def test_real_protocol_points_at_the_shared_set_unless_overridden(tmp_path):
  from liverjax.configs import real  # pylint: disable=g-import-not-at-top
  from liverjax.configs.real import mr_to_ct  # pylint: disable=g-import-not-at-top
  from liverjax import study  # pylint: disable=g-import-not-at-top
  config = study.apply_protocol(_config(tmp_path), "real")
  assert config.data.ct.root == real.CT_ROOTS and config.data.mr.root == real.MR_ROOTS
  assert config.data.mr_sequences == ("t2",)
  assert real.CT_ROOTS[0].endswith("shared/data/real_dev/btcv_ct")
  custom = _config(tmp_path, ct__root="/elsewhere/ct")
  assert study.apply_protocol(custom, "real").data.ct.root == "/elsewhere/ct"
  c = mr_to_ct.get_config()
  assert c.data.source == "mr" and c.data.mr.root == real.MR_ROOTS


def _corrupt_labels(root, cases):
  """Overwrites the label files of `cases` with bytes no reader could take."""
  for case in cases:
    (root / "labelsTr" / f"{case}.nii.gz").write_bytes(b"not a label")


def test_adapt_scans_are_read_without_labels_and_never_tested(tmp_path):
  ct = write_msd(tmp_path / "ct_ds", cases=[f"c{i}" for i in range(3)])
  mr = write_msd(tmp_path / "mr_ds", cases=[f"m{i}" for i in range(4)], channel="T2",
                 labels={"background": 0, "liver": 1})
  unlabelled = write_msd(tmp_path / "mr_unlabelled", cases=["u0", "u1"], channel="T2",
                         labels={"background": 0, "liver": 1})
  _corrupt_labels(unlabelled, ["u0", "u1"])  # a label file read would fail loudly
  config = _config(tmp_path, ct__root=str(ct), mr__root=str(mr),
                   mr__adapt_root=str(unlabelled), source="ct", split=(0.67, 0.33, 0.0))
  data = dataset.load_dataset(config.data)
  assert data.problems == []
  assert data.splits["MR"]["adapt"] == ["u0", "u1"]
  assert data.splits["MR"]["test"] == ["m0", "m1", "m2", "m3"]
  adapt = data.select("mr", "adapt", ("t2",))
  assert [v.patient_id for v in adapt] == ["u0", "u1"]
  assert all(not v.labelled and not v.mask.any() for v in adapt)
  assert all(v.labelled for v in data.select("mr", "test", ("t2",)))
  tested = {v.patient_id for s in ("train", "val", "test") for m in ("ct", "mr")
            for v in data.select(m, s, ("t2",))}
  assert not tested & {"u0", "u1"}


def test_a_folder_both_root_and_adapt_root_is_halved_by_patient(tmp_path):
  cases = [f"m{i}" for i in range(5)]
  mr = write_msd(tmp_path / "mr_ds", cases=cases, channel="T2",
                 labels={"background": 0, "liver": 1})
  adapt_half, test_half = sources_lib.halve_shared_folder(cases)
  assert (adapt_half, test_half) == (("m0", "m2", "m4"), ("m1", "m3"))
  _corrupt_labels(mr, adapt_half)  # the adapt half's labels are never opened
  config = _config(tmp_path, ct__root=str(write_msd(tmp_path / "ct_ds", cases=["c0", "c1"])),
                   mr__root=str(mr), mr__adapt_root=str(mr), source="ct",
                   split=(0.5, 0.5, 0.0))
  data = dataset.load_dataset(config.data)
  assert data.problems == []
  assert data.splits["MR"]["adapt"] == list(adapt_half)
  assert data.splits["MR"]["test"] == list(test_half)


def test_a_halved_folder_adapts_on_its_images_without_a_label_too(tmp_path):
  # imagesTs/ scans have no label, so they can never be tested: they join the adapt half,
  # and the labelled cases are halved as without them.
  cases = [f"m{i}" for i in range(4)]
  mr = write_msd(tmp_path / "mr_ds", cases=cases, channel="T2",
                 labels={"background": 0, "liver": 1})
  (mr / "imagesTs").mkdir()
  image = (mr / "imagesTr" / "m0_0000.nii.gz").read_bytes()
  (mr / "imagesTs" / "a9_0000.nii.gz").write_bytes(image)
  config = _config(tmp_path, ct__root=str(write_msd(tmp_path / "ct_ds", cases=["c0", "c1"])),
                   mr__root=str(mr), mr__adapt_root=str(mr), source="ct",
                   split=(0.5, 0.5, 0.0))
  data = dataset.load_dataset(config.data)
  assert data.problems == []
  assert sorted(data.splits["MR"]["adapt"]) == ["a9", "m0", "m2"]
  assert data.splits["MR"]["test"] == ["m1", "m3"]


def test_a_halved_folder_whose_label_names_differ_from_its_images_is_refused(tmp_path):
  # dataset.json may name a case's label differently from its image; then the adapt half's
  # images could not be told apart from the test half's, and the folder is refused.
  mr = write_msd(tmp_path / "mr_ds", cases=[f"m{i}" for i in range(4)], channel="T2",
                 labels={"background": 0, "liver": 1})
  meta = json.loads((mr / "dataset.json").read_text())
  for entry in meta["training"]:
    old = mr / entry["label"]
    entry["label"] = f"./labelsTr/lab_{old.name}"
    old.rename(mr / entry["label"])
  (mr / "dataset.json").write_text(json.dumps(meta))
  config = _config(tmp_path, mr__root=str(mr), mr__adapt_root=str(mr))
  with pytest.raises(chaos.ChaosError, match=r"mr_ds: both data.mr.root and "
                     r"data.mr.adapt_root, but labelled case\(s\) lab_m0, lab_m2 have no image"):
    sources_lib.resolve_sources(config.data)


def test_an_unlabelled_folder_of_images_alone_is_enough(tmp_path):
  folder = tmp_path / "plain"
  write_msd(tmp_path / "src", cases=["s0"], channel="T2", labels={"background": 0, "liver": 1})
  (folder / "images").mkdir(parents=True)
  (tmp_path / "src" / "imagesTr" / "s0_0000.nii.gz").rename(folder / "images" / "s0.nii.gz")
  source = sources_lib.make_source(folder, "MR", adapt=True)
  vols, problems = sources_lib.read_source(source, ("t2",))
  assert problems == [] and [v.patient_id for v in vols] == ["s0"]
  assert vols[0].mask_files == [] and not vols[0].mask.any()
  with pytest.raises(chaos.ChaosError, match="neither a CHAOS folder"):
    sources_lib.make_source(folder, "MR")  # with labels expected, it is no dataset


def test_reading_logs_progress_over_every_source(tmp_path, monkeypatch, caplog):
  """One count over the scans of all sources, a line per scan when the interval is 0 (then
  one per volume prepared); none at the default interval for a read this quick (the summary
  line alone)."""
  a = write_msd(tmp_path / "set_a", cases=("p1", "p2"))
  mr = write_msd(tmp_path / "mr_ds", cases=("m1",), channel="T2",
                 labels={"background": 0, "liver": 1})
  config = _config(tmp_path, ct__root=str(a), mr__root=str(mr))
  reads = [sources_lib.plan_reads(s, ("ct", "t2"))
           for s in sources_lib.resolve_sources(config.data)]
  assert [[r.label(item) for item in r.items] for r in reads] == [["CT p1", "CT p2"],
                                                                  ["MR m1 t2"]]

  def read_lines():
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("read ")
            and "scans (" in r.getMessage()]

  with caplog.at_level(logging.INFO):
    dataset.load_dataset(config.data)
  assert read_lines() == []  # under progress.INTERVAL_SECONDS: no progress line
  assert "reading 3 scans from" in caplog.text
  caplog.clear()
  monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.0)
  config.data.cache_dir = str(tmp_path / "another_cache")
  with caplog.at_level(logging.INFO):
    dataset.load_dataset(config.data)
  lines = read_lines()
  assert [line.split(",")[0] for line in lines] == [
      "read 1/3 scans (CT p1)", "read 2/3 scans (CT p2)", "read 3/3 scans (MR m1 t2)"]
  assert all("so far, ETA " in line for line in lines)
  prepared = [r.getMessage().split(",")[0] for r in caplog.records
              if r.getMessage().startswith("prepared ")]
  assert prepared == ["prepared 1/3 volumes (CT p1)", "prepared 2/3 volumes (CT p2)",
                      "prepared 3/3 volumes (MR m1 t2)"]


# ----------------------------------------------------------------------------- bad input (#26)


def test_a_labelled_folder_with_no_usable_case_is_an_error_naming_it(tmp_path):
  """Every label map lacks the liver label: the run used to train on empty masks and exit 0."""
  ct = write_msd(tmp_path / "ct_ds", cases=("c1", "c2", "c3"))
  for case in ("c1", "c2", "c3"):
    write_nifti(ct / "labelsTr" / f"{case}.nii.gz",
                np.where(tiny_label() == 6, 0, tiny_label()).astype(np.uint8))
  config = _config(tmp_path, ct__root=str(ct), targets=("ct",))
  with pytest.raises(chaos.ChaosError, match="none of its 3 CT cases is usable") as err:
    dataset.load_dataset(config.data)
  assert str(ct) in str(err.value) and "no voxel with the liver label" in str(err.value)
  assert "\n" not in str(err.value)


def test_a_plain_btcv_like_folder_without_the_liver_label_is_refused(tmp_path):
  for case in ("b1", "b2", "b3"):
    write_nifti(tmp_path / "btcv" / "images" / f"{case}.nii.gz", np.ones((6, 5, 4), np.int16))
    write_nifti(tmp_path / "btcv" / "labels" / f"{case}.nii.gz", tiny_label())
  config = _config(tmp_path, ct__root=str(tmp_path / "btcv"), targets=("ct",))
  with pytest.raises(chaos.ChaosError, match="data.ct.liver_label"):
    dataset.load_dataset(config.data)
  config.data.ct.liver_label = 6
  assert len(dataset.load_dataset(config.data).volumes) == 3


def test_chaos_ct_masks_of_0_and_1_are_named_not_the_split(tmp_path):
  """0/1 CT masks: every series is refused for its encoding; the error says so and names
  the folder instead of blaming config.data.split later."""
  for pid in (1, 2, 3):
    pdir = build_ct_patient(tmp_path / "chaos", pid, n=4)
    for k in range(4):
      write_mask(pdir / "Ground" / f"liver_GT_{k:03d}.png", ct_mask(k) // 255)
  config = _config(tmp_path, ct__root=str(tmp_path / "chaos"), targets=("ct",))
  with pytest.raises(chaos.ChaosError, match="CT series is usable") as err:
    dataset.load_dataset(config.data)
  assert "CHAOS CT encoding" in str(err.value) and "split" not in str(err.value)


def test_a_modality_with_only_unlabelled_scans_is_no_error(tmp_path):
  """MR read only from adapt_root (no labels, some voxels NaN): no 'no usable case' error,
  and the NaN scan is read finite with its problem named."""
  ct = write_msd(tmp_path / "ct_ds", cases=("c1", "c2", "c3"))
  rng = np.random.default_rng(0)
  for case in ("u1", "u2"):
    array = rng.uniform(0, 400, (6, 5, 4)).astype(np.float32)
    array[0, 0, 0] = np.nan
    write_nifti(tmp_path / "mr_unlabelled" / f"{case}.nii.gz", array)
  config = _config(tmp_path, ct__root=str(ct), mr__adapt_root=str(tmp_path / "mr_unlabelled"))
  data = dataset.load_dataset(config.data)
  adapt = data.select("mr", "adapt", ("t2",))
  assert len(adapt) == 2 and all(np.isfinite(v.image).all() for v in adapt)
  assert sum("non-finite" in p for p in data.problems) == 2
