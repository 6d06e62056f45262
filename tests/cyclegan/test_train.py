"""CycleGAN training run end to end (through `liverjax.experiment`, with its report), and resume."""
import json

import numpy as np
import pytest

from liverjax import checkpointing
from liverjax import configs
from liverjax import experiment
from liverjax import metric_writer
from liverjax.cyclegan import train as cg_train
from liverjax.data import dataset
from liverjax.data import preprocess
from tests.cyclegan.conftest import tiny_cyclegan_config


@pytest.mark.slow
def test_train_and_evaluate_end_to_end_and_resume(tmp_path):
  config = tiny_cyclegan_config(tmp_path)
  config.cyclegan.steps = 2
  workdir = tmp_path / "work"
  results = experiment.run_cyclegan(config, str(workdir))
  assert (workdir / "samples" / "step_000002.png").stat().st_size > 0
  assert (workdir / "cyclegan.md").read_text().count("| ct to mr |") == len(results["quality"])
  saved = json.loads((workdir / "cyclegan_metrics.json").read_text())
  assert set(saved["quality"]) == {"val", "test"}
  for directions in saved["quality"].values():
    assert set(directions) == {"ct_to_mr", "mr_to_ct"}
    for q in directions.values():
      assert 0.0 <= q["wasserstein"] <= 1.0 and 0.0 <= q["intersection"] <= 1.0
      assert 0.0 <= q["cycle_l1"] <= 1.0 and q["slices"] > 0
  assert checkpointing.create_manager(workdir, best_metric=None).latest_step() == 2
  # Resume: one more step, from the checkpoint at step 2.
  config.cyclegan.steps = 3
  results = experiment.run_cyclegan(config, str(workdir))
  assert results["step"] == 3
  train_steps = [r["step"] for r in metric_writer.read_scalars(workdir) if r["split"] == "train"]
  assert train_steps == [2, 3]
  # Another generator on the same workdir: one line naming the field, no orbax traceback.
  config.cyclegan.generator_features = 2 * config.cyclegan.generator_features
  with pytest.raises(configs.ConfigError, match=r"^config.cyclegan.generator_features="):
    experiment.run_cyclegan(config, str(workdir))


def test_translation_is_measured_on_held_out_scans_of_both_modalities():
  def vol(pid, modality):
    return preprocess.PreparedVolume(pid, modality, "ct" if modality == "CT" else "t2",
                                     np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 4), np.uint8),
                                     (1.0, 1.0, 1.0))
  volumes = [vol("c1", "CT"), vol("c2", "CT"), vol("m1", "MR"), vol("m2", "MR")]
  paired = {"CT": {"train": ["c1"], "val": ["c2"], "test": []},
            "MR": {"train": ["m1"], "val": ["m2"], "test": []}}
  data = dataset.Dataset("x", volumes, paired, [])
  assert set(cg_train.paired_splits(data, ("t2",), ("val", "test"))) == {"val"}
  # MR with unlabelled scans: its labelled ones are test only, CT's held out are in val.
  adapting = {"CT": {"train": ["c1"], "val": ["c2"], "test": []},
              "MR": {"train": [], "val": [], "test": ["m2"], "adapt": ["m1"]}}
  data = dataset.Dataset("x", volumes, adapting, [])
  splits = cg_train.paired_splits(data, ("t2",), ("val", "test"))
  assert list(splits) == ["held-out"]
  ct, mr = splits["held-out"]
  assert [v.patient_id for v in ct] == ["c2"] and [v.patient_id for v in mr] == ["m2"]
