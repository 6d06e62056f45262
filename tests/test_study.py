"""The study: a tiny smoke study writes every table row and figure, and resumes."""
import json
import os
import subprocess
import sys

import pytest

from liverjax import experiment
from liverjax import study
from liverjax.configs import study as study_configs
from liverjax import config_check
from liverjax.reporting import real_study as real_report
from liverjax.reporting import study as study_report
from tests.data.test_nifti import write_msd
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

  # --report_only trains nothing and names the run that has not finished.
  unfinished = workdir / rep["rows"][0]["workdirs"][0] / "study_done.json"
  unfinished.unlink()
  partial = study.run_study(config, workdir, report_only=True)
  assert partial["missing"] == [rep["rows"][0]["workdirs"][0]]
  assert not unfinished.exists()
  assert "Partial report: 1 of 9 runs" in (workdir / "report.md").read_text()


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


def _real_study_config(tmp_path, ct_root, mr_root):
  config = study_configs.get_config("cpu")
  config.data.ct.root, config.data.mr.root = str(ct_root), str(mr_root)
  config.data.cache_dir = str(tmp_path / "cache")
  config.study.seeds = 2
  return config


def test_real_study_plans_every_row_fold_and_translator(tmp_path):
  config = study.apply_protocol(_real_study_config(tmp_path, "/data/ct", "/data/mr"), "real")
  workdir = tmp_path / "study"
  runs = study.plan_runs(config, workdir)
  per_seed = 2 * 5 + 1 + 2 * len(study_configs.REAL_EXPERIMENTS)  # folds, CycleGAN, rows
  assert len(runs) == 2 * per_seed
  for run in runs:
    config_check.check(run.config)
    assert run.config.seed == run.seed
  folds = [r for r in runs if r.experiment == "in-domain" and r.seed == 0]
  assert [(r.direction, r.fold) for r in folds] == [
      (d, f) for d in ("ct_to_ct", "mr_to_mr") for f in range(5)]
  for r in folds:
    assert (r.config.data.folds, r.config.data.fold) == (5, r.fold)
    assert tuple(r.config.data.targets) == (r.config.data.source,)
  (cg,) = [r for r in runs if r.kind == "cyclegan" and r.seed == 1]
  # The translator sees the adapt halves of both modalities, and is scored by the seed's
  # first in-domain folds.
  assert cg.config.data.ct.adapt_root == "/data/ct" and cg.config.data.mr.adapt_root == "/data/mr"
  assert cg.config.cyclegan.task_unet_mr == str(workdir / "seed1/mr_to_mr/fold0")
  rows = {(r.direction, r.experiment): r.config for r in runs if r.seed == 1 and not r.fold
          and r.kind == "unet" and r.experiment != "in-domain"}
  assert rows[("ct_to_mr", "cyclegan")].translate.cyclegan_workdir == str(
      workdir / "seed1/cyclegan")
  assert not rows[("ct_to_mr", "baseline")].translate.cyclegan_workdir
  uda = rows[("mr_to_ct", "uda")]
  assert uda.data.ct.adapt_root == "/data/ct" and uda.self_training.rounds >= 1
  assert uda.self_training.teacher == str(workdir / "seed1/mr_to_ct/best")  # trained before it
  assert not rows[("mr_to_ct", "best")].data.ct.adapt_root
  # AdaBN is evaluated both ways on cross-modality rows, not on in-domain ones.
  assert study._other_adapt_bn(rows[("ct_to_mr", "baseline")]).eval.adapt_bn == "volume"
  assert study._other_adapt_bn(folds[0].config) is None


def test_real_study_test_halves_are_the_patients_no_row_adapts_to(tmp_path):
  ct = write_msd(tmp_path / "ct", cases=[f"c{i}" for i in range(5)])
  mr = write_msd(tmp_path / "mr", cases=[f"m{i}" for i in range(4)], channel="T2",
                 labels={"background": 0, "liver": 1})
  config = study.apply_protocol(_real_study_config(tmp_path, ct, mr), "real")
  assert study.test_halves(config) == {"CT": {"c1", "c3"}, "MR": {"m1", "m3"}}


def _record(seed, direction, experiment, dice_by_patient, modality, fold=None, other=None):
  volumes = [dict(patient_id=p, modality=modality, sequence="t2" if modality == "MR" else "ct",
                  slices=4, dice=d, dice_raw=d, bce=0.1, dice_loss=0.2, jaccard_loss=0.3,
                  total=0.6, ravd=1.0, assd=2.0, mssd=3.0, ravd_raw=1.0, assd_raw=2.0,
                  mssd_raw=3.0) for p, d in dice_by_patient.items()]
  results = dict(volumes=volumes, adapt_bn="none", source_val_dice=0.9, seconds=10.0)
  if other is not None:
    results["other_adapt_bn"] = dict(volumes=[dict(v, dice=other) for v in volumes])
  return dict(seed=seed, direction=direction, experiment=experiment, fold=fold,
              workdir=f"seed{seed}/{direction}/{experiment}", results=results)


def test_real_study_report_rows(tmp_path):
  config = _real_study_config(tmp_path, "/ct", "/mr")
  halves = {"MR": {"m1", "m3"}, "CT": {"c1"}}
  runs = [_record(s, "ct_to_mr", "baseline", {"m0": 0.1, "m1": 0.3, "m2": 0.5, "m3": 0.5}, "MR",
                  other=0.9) for s in (0, 1)]
  runs += [_record(0, "ct_to_mr", "uda", {"m1": 0.7, "m3": 0.9}, "MR")]
  runs += [_record(0, "ct_to_ct", "in-domain", {"c0": 0.8}, "CT", fold=0),
           _record(0, "ct_to_ct", "in-domain", {"c1": 0.9}, "CT", fold=1)]
  rep = real_report.build_report(config, runs, {}, halves, {}, tmp_path)
  rows = {(r["direction"], r["experiment"]): r for r in rep["rows"]}
  base = rows[("ct_to_mr", "baseline")]
  assert base["paper"] == 0.0097
  assert abs(base["target_half"]["dice"]["mean"] - 0.4) < 1e-9  # m1, m3 over 2 seeds
  assert base["target_half"]["patients"] == 2 and base["target_half"]["pairs"] == 4
  assert abs(base["target"]["dice"]["mean"] - 0.35) < 1e-9  # every patient
  assert abs(base["target_half_other"]["dice"]["mean"] - 0.9) < 1e-9  # AdaBN on
  assert abs(base["source_val"]["mean"] - 0.9) < 1e-9
  uda = rows[("ct_to_mr", "uda")]
  assert uda["target"] is None  # saw target scans: compared on the test half only
  assert abs(uda["target_half"]["dice"]["mean"] - 0.8) < 1e-9
  inner = rows[("ct_to_ct", "in-domain")]
  assert inner["paper"] == 0.924 and inner["target"]["patients"] == 2  # both folds pooled
  assert inner["source_val"] is None
  md = real_report.render_markdown(rep)
  assert "| baseline (AdaBN off) | 0.0097 | 0.400 ± 0.100 | 0.900 ± 0.000 (AdaBN on) | 2 × 2 |" in md
  assert "| uda (AdaBN off) |" in md and "| CT → CT | 0.924 |" in md
  assert "| experiment | m0 | m1* | m2 | m3* |" in md  # the test half marked
  assert "| CT → MR (T2-SPIR) | uda | — | 0.70 | — | 0.90 |" in md
