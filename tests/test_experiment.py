"""Tests for liverjax/experiment.py: the workdir lock (one run per workdir), self-training rounds
(with the progress lines of every long step)."""
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from liverjax import config_check
from liverjax import experiment
from liverjax import predict
from liverjax import progress
from liverjax.configs import default
from liverjax.data import chaos as data_chaos
from liverjax.data import sources
from liverjax.data import synthetic
from tests.conftest import REPO
from tests.conftest import make_tiny_config

_HOLD = ("import sys, time\nfrom liverjax import experiment\n"
         "with experiment.workdir_lock(sys.argv[1]):\n"
         "  print('held', flush=True)\n  time.sleep(600)\n")


def _holder(workdir):
  p = subprocess.Popen([sys.executable, "-c", _HOLD, str(workdir)], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                       text=True)
  assert p.stdout.readline().strip() == "held"
  return p


def test_a_held_workdir_is_refused_naming_the_holder_until_it_dies(tmp_path):
  workdir = tmp_path / "w"
  holder = _holder(workdir)
  try:
    with pytest.raises(experiment.WorkdirLocked) as e:
      with experiment.workdir_lock(workdir):
        pass
    message = str(e.value)
    assert message.startswith(f"workdir {workdir} is in use by another run (pid {holder.pid} "
                              f"on host ")
    assert str(workdir) in message.split(": -c ")[1]  # its command line
    assert f"lock file {workdir / '.lock'}" in message
    # The U-Net and CycleGAN runs take it first, before reading any data.
    with pytest.raises(experiment.WorkdirLocked):
      experiment.run_segmentation(None, workdir)
    with pytest.raises(experiment.WorkdirLocked):
      experiment.run_cyclegan(None, workdir)
  finally:
    holder.send_signal(signal.SIGKILL)  # as kill -9: no clean-up in the holder
    holder.wait(60)
  # The kernel released the dead holder's lock: the workdir is free again.
  with experiment.workdir_lock(workdir) as path:
    assert path == workdir / ".lock"
    assert f"pid {os.getpid()} on host" in path.read_text()
    with experiment.workdir_lock(workdir):  # the same process again (the study's runs)
      pass


def test_student_config_sets_the_students_steps_and_augmentation():
  config = default.get_config()
  config.self_training.update(student_steps=8, student_augment=("gin", "spatial"),
                              student_intensity="none")
  student = experiment.student_config(config)
  assert (student.augment.gin, student.augment.spatial, student.augment.augmix) == (
      True, True, False)
  assert (student.train.steps, student.train.eval_every) == (8, 2)
  assert student.eval.intensity_gamma == 1.0
  assert not config.augment.gin and not config.augment.spatial  # the run's config is kept


def test_final_model_config_is_the_students_only_in_a_self_training_run():
  config = default.get_config()
  config.eval.adapt_bn = "volume"
  config.self_training.update(student_adapt_bn="none", student_steps=8)
  config.self_training.rounds = 0
  assert experiment.final_model_config(config) is config  # a plain run: its own options
  config.self_training.rounds = 2
  final = experiment.final_model_config(config)
  assert (final.eval.adapt_bn, final.train.steps) == ("none", 8)
  assert config.eval.adapt_bn == "volume"  # the run's config is kept


def test_checkpoint_curve_of_a_self_training_run_uses_the_students_options(tmp_path,
                                                                          monkeypatch):
  # The checkpoints of a self-training run are its student's: the curve scores them with the
  # students' test-time options, as the run's own evaluation does; a plain run keeps `eval`.
  seen = []
  monkeypatch.setattr(experiment.dataset_lib, "load_dataset", lambda data_config: None)
  monkeypatch.setattr(experiment.evaluate, "checkpoint_curve",
                      lambda config, workdir, data: seen.append(config) or [])
  monkeypatch.setattr(experiment.experiment_report, "write_checkpoint_curve", lambda *a: None)
  monkeypatch.setattr(experiment.experiment_report, "checkpoint_curve_table", lambda rows: "")
  config = default.get_config()
  config.eval.update(intensity="histogram_match", intensity_gamma=0.3, adapt_bn="volume")
  config.self_training.update(student_intensity="none", student_adapt_bn="none")
  experiment.run(config, tmp_path / "plain", "checkpoint_curve")
  config.self_training.rounds = 1
  experiment.run(config, tmp_path / "student", "checkpoint_curve")
  assert [(c.eval.intensity, c.eval.intensity_gamma, c.eval.adapt_bn) for c in seen] == [
      ("histogram_match", 0.3, "volume"), ("none", 1.0, "none")]


def test_lock_files_per_process_of_a_job(tmp_path):
  assert experiment.lock_path(tmp_path, 0) == tmp_path / ".lock"
  assert experiment.lock_path(tmp_path, 3) == tmp_path / ".lock.3"


@pytest.mark.slow
def test_self_training_run_never_reads_or_tests_the_adapt_scans(tmp_path, monkeypatch,
                                                                caplog):
  root = synthetic.generate_chaos(tmp_path / "synth", n_ct=3, n_mr=4, size=32, slices=8)
  mr_ids = sorted(p.name for p in (root / "MR").iterdir())
  adapt, test = sources.halve_shared_folder(mr_ids)
  for pid in adapt:  # labels that could not be read: the run must never open them
    for png in (root / "MR" / pid).rglob("Ground/*.png"):
      png.write_bytes(b"not a PNG")
  config = make_tiny_config(tmp_path, **{"train.steps": 4, "train.eval_every": 4})
  config.data.root = str(root)
  config.data.mr.adapt_root = str(root)
  config.data.mr_sequences = ("t2",)
  config.data.split = (0.67, 0.33, 0.0)
  config.data.source, config.data.targets = "ct", ("ct", "mr")
  config.self_training.update(rounds=2, confidence=0.51, min_liver_ml=0.0, max_liver_ml=1e9,
                              min_confident_fraction=0.0, student_steps=6, teachers=2,
                              student_augment=("spatial",))
  config_check.check(config)
  workdir = tmp_path / "run"
  monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.0)  # a progress line per item
  with caplog.at_level(logging.INFO):
    results = experiment.run(config, workdir)
  assert results["experiment"].endswith("+selftrain2")
  # Every long step logs its progress: reading and preparing the scans (the adapt ones
  # included), the teacher labelling the adapt scans, the evaluation.
  lines = [r.getMessage() for r in caplog.records]
  n_scans = 3 + 4  # CT, and MR T2 (test half and adapt half)
  for head in (f"read {n_scans}/{n_scans} scans (", f"prepared {n_scans}/{n_scans} volumes (",
               f"labelled {len(adapt)}/{len(adapt)} target scans (MR ", "evaluated "):
    assert any(line.startswith(head) and ", ETA " in line for line in lines), head
  labelled = [line.split(" (")[1].split(")")[0] for line in lines
              if line.startswith("labelled ")]
  # Round 1: each of the 2 teachers labels the adapt half; round 2: the round-1 student.
  assert labelled == [f"MR {pid} t2" for pid in adapt] * 3
  # Each round's verdict on each adapt scan names the scan as the progress lines do.
  for r, pid in ((1, adapt[0]), (2, adapt[-1])):
    assert any(line.startswith(f"round {r}: MR {pid} t2 pseudo-labelled: liver ")
               for line in lines), (r, pid)
  assert sorted({v["patient_id"] for v in results["volumes"] if v["modality"] == "MR"}) == list(test)
  records = json.loads((workdir / "pseudo_labels.json").read_text())
  assert [r["round"] for r in records] == [1, 2]
  assert records[0]["teachers"] == [str(workdir / "teacher"), str(workdir / "teacher1")]
  assert records[1]["teachers"] == [str(workdir / "round1")]
  assert sorted(s["patient_id"] for s in records[0]["scans"]) == list(adapt)
  for name in ("teacher/metrics.json", "teacher1/metrics.json", "round1/metrics.json",
               "metrics.json", "pseudo_labels_round1.png", "pseudo_labels_round2.png"):
    assert (workdir / name).exists(), name
  # The teachers train `train.steps`, each student `self_training.student_steps`.
  curves = {}
  for name, steps in (("teacher", 4), ("teacher1", 4), ("round1", 6), (".", 6)):
    jsonl = (workdir / name / "metrics.jsonl").read_text().splitlines()
    curves[name] = [r for r in map(json.loads, jsonl) if r["split"] == "train"]
    assert max(r["step"] for r in curves[name]) == steps, name
  # The second teacher is another seed: another initialisation and draw of batches.
  assert [r["total"] for r in curves["teacher"]] != [r["total"] for r in curves["teacher1"]]
  # Only the students add `self_training.student_augment`'s switches.
  saved = {name: json.loads((workdir / name / "metrics.json").read_text())["augment"]
           for name in ("teacher", "teacher1", "round1", ".")}
  assert {name: a["spatial"] for name, a in saved.items()} == {
      "teacher": False, "teacher1": False, "round1": True, ".": True}
  # The students are evaluated with their own options, not the teacher's matching.
  assert results["intensity"] == "none"
  # The last student predicts like any other checkpoint, with the options it was tested with.
  model = predict.load_model(workdir)
  assert model.step == results["step"]
  assert model.config.eval.intensity == "none" and model.config.self_training.rounds == 2
  volume = data_chaos.read_series(next(r for r in data_chaos.discover(root, ("t2",))
                                       if r.patient_id == test[0]))
  mask = predict.predict_volume(model, volume)
  assert mask.shape == volume.image.shape
