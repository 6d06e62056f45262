"""The study: a tiny smoke study writes every table row and figure, and resumes."""
import json
import os
import subprocess
import sys

import pytest

from liverjax import experiment
from liverjax import study
from liverjax.configs import study as study_configs
from liverjax.reporting import study as study_report
from tests.conftest import REPO


def _tiny_study_config(tmp_path):
  config = study_configs.get_config("smoke")
  config.data.cache_dir = str(tmp_path / "cache")
  config.data.synthetic.update(ct=3, mr=3, size=32, slices=8)
  config.data.split = (0.34, 0.33, 0.33)
  config.data.image_size = 32
  config.data.use_tf = False
  config.model.update(depth=2, base_features=4)
  config.train.update(batch_size=8, steps=2, log_every=1, eval_every=2)
  config.augment.augmix_width = 2
  config.cyclegan.update(generator_features=4, generator_blocks=1, discriminator_features=4,
                         batch_size=8, steps=2, log_every=1, sample_every=2,
                         checkpoint_every=2, sample_slices=2)
  config.eval.update(batch_size=8, figure_slices=1)
  return config


@pytest.mark.slow
def test_smoke_study_writes_every_row_and_figure(tmp_path):
  config = _tiny_study_config(tmp_path)
  workdir = tmp_path / "study"
  rep = study.run_study(config, workdir)

  experiments = config.study.experiments
  assert set(experiments) == {"baseline", "domain+augmix", "cyclegan", "cyclegan+augmix"}
  rows = {(r["direction"], r["experiment"]) for r in rep["rows"]}
  assert rows == {(d, e) for d in ("ct_to_mr", "mr_to_ct") for e in experiments}
  for r in rep["rows"]:
    assert set(r["summary"]) == {"ct", "mr", "mr/t1_in", "mr/t1_out", "mr/t2"}
    target = r["summary"][r["target"]]
    assert target["patients"] >= 1 and target["slices"] > 0
    assert 0.0 <= target["dice"]["mean"] <= 1.0
    run_dir = workdir / r["workdirs"][0]
    for name in ("predictions.png", "curves.png", "metrics.json", "metrics.md"):
      assert (run_dir / name).exists(), run_dir / name
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["augment"]["augmix"] == ("augmix" in r["experiment"])
    assert bool(saved["augment"]["cyclegan"]) == ("cyclegan" in r["experiment"])
  md = (workdir / "report.md").read_text()
  for e in experiments:
    assert md.count(f"| {e} |") >= 6, e  # source, target, per-group, CHAOS, figures tables
    assert md.count(f"| {e} (raw) |") == 2, e  # CHAOS before post-processing, per direction
  for path in list(rep["previews"].values()) + [rep["cyclegan"]["seed0"]["samples"]]:
    assert (workdir / path).exists(), path
    assert f"({path})" in md
  assert rep["cyclegan"]["seed0"]["quality"]
  assert json.loads((workdir / "report.json").read_text())["size"] == "smoke"

  # A second call re-runs nothing: every run is marked finished.
  marks = {p: p.stat().st_mtime_ns for p in workdir.rglob("study_done.json")}
  assert len(marks) == 9  # 8 U-Net runs + 1 CycleGAN
  study.run_study(config, workdir)
  assert {p: p.stat().st_mtime_ns for p in workdir.rglob("study_done.json")} == marks


def test_t2spir_protocol_restricts_mr():
  config = study.apply_protocol(study_configs.get_config("smoke"), "t2spir")
  assert tuple(config.data.mr_sequences) == ("t2",)
  c = study.experiment_config(config, "ct_to_mr", "cyclegan+augmix", 2, "/x/cg")
  assert (c.data.source, c.seed, c.augment.augmix, c.translate.cyclegan_workdir) == (
      "ct", 2, True, "/x/cg")
  assert not c.augment.domain


def test_pooled_summary_over_seeds():
  def vol(pid, modality, sequence, dice):
    return dict(patient_id=pid, modality=modality, sequence=sequence, slices=10, dice=dice,
                bce=0.1, dice_loss=0.2, jaccard_loss=0.3, total=0.6)
  seed0 = {"volumes": [vol("1", "CT", "ct", 0.8), vol("2", "CT", "ct", 0.6),
                       vol("5", "MR", "t2", 0.5)]}
  seed1 = {"volumes": [vol("1", "CT", "ct", 0.9), vol("2", "CT", "ct", 0.9),
                       vol("5", "MR", "t2", 0.3)]}
  s = study_report.pooled_summary([seed0, seed1])
  assert set(s) == {"ct", "mr", "mr/t2"}
  ct = s["ct"]
  assert (ct["volumes"], ct["patients"], ct["slices"], ct["seeds"]) == (2, 2, 20, 2)
  assert abs(ct["dice"]["mean"] - 0.8) < 1e-9  # pooled over 4 (seed, volume) pairs
  assert ct["dice"]["n"] == 4
  assert abs(ct["dice_seed_std"] - 0.1) < 1e-9  # seed means 0.7 and 0.9
  assert s["mr"]["dice"]["mean"] == s["mr/t2"]["dice"]["mean"] == 0.4


def test_a_study_refuses_a_workdir_held_by_another_study(tmp_path):
  workdir = tmp_path / "study"
  hold = ("import sys, time\nfrom liverjax import experiment\n"
          "with experiment.workdir_lock(sys.argv[1]):\n  print('held', flush=True)\n"
          "  time.sleep(600)\n")
  holder = subprocess.Popen([sys.executable, "-c", hold, str(workdir)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(experiment.WorkdirLocked, match=f"pid {holder.pid} on host"):
      study.run_study(_tiny_study_config(tmp_path), workdir)
  finally:
    holder.kill()
    holder.wait(60)
  assert sorted(p.name for p in workdir.iterdir()) == [".lock"]  # nothing run
