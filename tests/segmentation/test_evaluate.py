"""Per-volume evaluation: perfect and empty predictors, summaries, figure examples,
post-processing, test-time histogram matching and batch-norm adaptation, progress lines."""
import dataclasses
import logging

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from liverjax import checkpointing
from liverjax import experiment
from liverjax import metric_writer
from liverjax import progress
from liverjax import runtime
from liverjax.configs import default
from liverjax.data import dataset as dataset_lib
from liverjax.data import preprocess
from liverjax.segmentation import evaluate
from liverjax.segmentation import losses
from liverjax.segmentation import state as state_lib


def _volume(pid="1", sequence="ct", z=6, size=16, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.zeros((z, size, size), np.uint8)
  mask[1:5, 4:11, 3:12] = 1  # liver on slices 1..4 only
  image = np.clip(rng.normal(0.3, 0.05, mask.shape) + 0.4 * mask, 0, 1).astype(np.float32)
  return preprocess.PreparedVolume(patient_id=pid, modality="CT" if sequence == "ct" else "MR",
                                   sequence=sequence, image=image, mask=mask,
                                   spacing=(2.0, 0.8, 0.8))


def _oracle(offset):
  """A predictor that returns the true mask (offset=+20) or nothing (offset=-20)."""
  def predict(state, images, masks):
    del state, images
    logits = jnp.where(masks > 0, 20.0, -20.0) if offset > 0 else jnp.full_like(masks, -20.0)
    return (logits > 0).astype(jnp.uint8), losses.loss_sums(logits, masks)
  return predict


def test_perfect_prediction_scores_perfectly():
  mesh = runtime.create_mesh()
  vols = [_volume("1"), dataclasses.replace(_volume("2", seed=1), liver_cut=0.25)]
  results = evaluate.evaluate_volumes(_oracle(+1), None, vols, mesh=mesh, batch_size=4,
                                      keep_predictions=True)
  assert len(results) == 2
  assert [r["liver_cut"] for r in results] == [0.0, 0.25]  # reported beside the scores
  for r, v in zip(results, vols):
    assert r["slices"] == 6
    assert r["dice"] == 1.0
    assert r["dice_loss"] < 1e-3 and r["jaccard_loss"] < 1e-3 and r["bce"] < 1e-6
    assert r["ravd"] == 0.0 and r["assd"] == 0.0 and r["mssd"] == 0.0
    np.testing.assert_array_equal(r["prediction"], v.mask)  # slice order kept


def test_evaluation_logs_a_progress_line_per_volume_when_the_interval_allows(monkeypatch,
                                                                             caplog):
  mesh = runtime.create_mesh()
  vols = [_volume("1"), _volume("7", sequence="t2", seed=1)]

  def lines():
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("evaluated ")]

  with caplog.at_level(logging.INFO):
    evaluate.evaluate_volumes(_oracle(+1), None, vols, mesh=mesh, batch_size=4)
  assert lines() == []  # quicker than progress.INTERVAL_SECONDS: quiet
  monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.0)
  with caplog.at_level(logging.INFO):
    evaluate.evaluate_volumes(_oracle(+1), None, vols, mesh=mesh, batch_size=4)
  assert [line.split(",")[0] for line in lines()] == [
      "evaluated 1/2 volumes (CT 1)", "evaluated 2/2 volumes (MR 7 t2)"]
  assert "ETA" in lines()[0]


def test_empty_prediction_scores_zero():
  mesh = runtime.create_mesh()
  (r,) = evaluate.evaluate_volumes(_oracle(-1), None, [_volume()], mesh=mesh, batch_size=8)
  assert r["dice"] == 0.0
  assert r["ravd"] == 100.0
  assert r["dice_loss"] > 0.99


def test_summarize_counts_and_means():
  rs = [dict(patient_id="1", slices=5, dice=0.5, bce=0.1, dice_loss=0.5, jaccard_loss=0.6,
             total=1.2),
        dict(patient_id="1", slices=5, dice=0.7, bce=0.3, dice_loss=0.3, jaccard_loss=0.4,
             total=1.0),
        dict(patient_id="2", slices=7, dice=0.9, bce=0.2, dice_loss=0.1, jaccard_loss=0.2,
             total=0.5)]
  s = evaluate.summarize(rs)
  assert (s["volumes"], s["patients"], s["slices"]) == (3, 2, 17)
  np.testing.assert_allclose(s["dice"]["mean"], 0.7)
  np.testing.assert_allclose(s["dice"]["std"], np.std([0.5, 0.7, 0.9]))
  assert "assd" not in s


def test_examples_show_the_slices_with_most_liver():
  v = _volume()
  r = {"prediction": v.mask}
  rows = evaluate._pick_examples([(v, r)], 2, "ct")  # pylint: disable=protected-access
  assert len(rows) == 2
  for row in rows:
    assert row["mask"].sum() == 63  # a full liver slice, never an empty one


def _stray(state, images, masks):
  """The true mask plus a stray blob at the corner of every slice."""
  del state, images
  stray = jnp.zeros_like(masks).at[:, 13:16, 0:2].set(1.0)
  logits = jnp.where((masks > 0) | (stray > 0), 20.0, -20.0)
  return (logits > 0).astype(jnp.uint8), losses.loss_sums(logits, masks)


def test_postprocess_scores_raw_and_largest_component():
  mesh = runtime.create_mesh()
  (r,) = evaluate.evaluate_volumes(_stray, None, [_volume()], mesh=mesh, batch_size=4,
                                   keep_predictions=True, postprocess="largest_component")
  # The liver block (4x7x9 voxels) is kept, the 6x3x2 blob along every slice dropped.
  assert r["dice"] == 1.0 and r["assd"] == 0.0 and r["mssd"] == 0.0
  assert r["dice_raw"] < 0.95 and r["assd_raw"] > 0.0 and r["ravd_raw"] > 0.0
  np.testing.assert_array_equal(r["prediction"], _volume().mask)
  (plain,) = evaluate.evaluate_volumes(_stray, None, [_volume()], mesh=mesh, batch_size=4)
  assert "dice_raw" not in plain and abs(plain["dice"] - r["dice_raw"]) < 1e-6
  assert plain["assd"] == r["assd_raw"]
  s = evaluate.summarize([r])
  assert s["dice_raw"]["mean"] == r["dice_raw"] and s["assd"]["mean"] == 0.0


def test_postprocess_without_surface_metrics_gives_dice_only():
  mesh = runtime.create_mesh()
  (r,) = evaluate.evaluate_volumes(_stray, None, [_volume()], mesh=mesh, batch_size=8,
                                   surface_metrics=False, postprocess="largest_component")
  assert r["dice"] == 1.0 and r["dice_raw"] < 0.95 and "assd" not in r and "assd_raw" not in r


def test_unknown_postprocess_is_rejected():
  with pytest.raises(ValueError, match="eval.postprocess"):
    evaluate.postprocess_prediction(np.zeros((2, 4, 4), np.uint8), "biggest")


def _dataset():
  """CT (source) train volumes around 0.3-0.7; MR test volumes darker and narrower."""
  ct = [_volume(str(i), seed=i) for i in range(2)]
  mr = []
  for i in range(2):
    v = _volume(str(10 + i), sequence="t2", seed=10 + i)
    mr.append(dataclasses.replace(v, image=(0.1 + 0.3 * v.image).astype(np.float32)))
  splits = {"CT": {"train": ["0", "1"], "val": [], "test": []},
            "MR": {"train": [], "val": [], "test": ["10", "11"]}}
  return dataset_lib.Dataset(root="mem", volumes=ct + mr, splits=splits, problems=[])


def _config(**eval_fields):
  config = default.get_config()
  config.data.source = "ct"
  config.data.targets = ("mr",)
  config.data.mr_sequences = ("t2",)
  config.eval.batch_size = 8
  config.eval.update(eval_fields)
  return config


def test_histogram_match_moves_target_quantiles_to_the_source():
  data, config = _dataset(), _config(intensity="histogram_match")
  ref = evaluate.intensity_reference(data, config)
  mr = data.select("mr", "test", ("t2",))
  matched = evaluate.harmonize_volumes(mr, ref)
  levels = np.linspace(0, 1, ref.size)
  for before, after in zip(mr, matched):
    q_before = np.quantile(before.image[before.image > 0.05], levels)
    q_after = np.quantile(after.image[after.image > 0.05], levels)
    assert np.abs(q_after - ref).mean() < 0.2 * np.abs(q_before - ref).mean()
    np.testing.assert_array_equal(after.mask, before.mask)
  assert mr[0].image.max() < 0.45  # the originals are untouched


def test_evaluate_domains_with_histogram_match_and_postprocess():
  mesh = runtime.create_mesh()
  data = _dataset()
  seen = []

  def brightness(state, images, masks):
    del state
    seen.append(float(jnp.max(images)))
    logits = jnp.where(images > 0.55, 20.0, -20.0)
    return (logits > 0).astype(jnp.uint8), losses.loss_sums(logits, masks)

  summary, per_volume, _ = evaluate.evaluate_domains(
      brightness, None, data, _config(intensity="none"), mesh=mesh, examples_per_domain=1)
  assert summary["mr"]["dice"]["mean"] == 0.0 and max(seen) < 0.45
  seen.clear()
  reference = evaluate.intensity_reference(data, _config(intensity="histogram_match"))
  summary, per_volume, examples = evaluate.evaluate_domains(
      brightness, None, data, _config(intensity="histogram_match"), mesh=mesh,
      examples_per_domain=1, reference=reference)
  assert max(seen) > 0.55  # the predictor saw matched (brighter) volumes
  assert summary["mr"]["dice"]["mean"] > 0.5
  assert {"dice_raw", "assd_raw"} <= set(per_volume[0]) and len(examples) == 1
  # eval.intensity_gamma < 1 then brightens the matched volumes before prediction.
  matched_max = max(seen)
  seen.clear()
  evaluate.evaluate_domains(brightness, None, data,
                            _config(intensity="histogram_match", intensity_gamma=0.5),
                            mesh=mesh, examples_per_domain=1, reference=reference)
  np.testing.assert_allclose(max(seen), np.sqrt(matched_max), atol=1e-5)
  with pytest.raises(ValueError, match="reference"):  # matching to what: the caller says
    evaluate.evaluate_domains(brightness, None, data, _config(intensity="histogram_match"),
                              mesh=mesh)
  with pytest.raises(ValueError, match="eval.intensity"):
    evaluate.evaluate_domains(brightness, None, data, _config(intensity="zscore"), mesh=mesh)


def _tiny_unet_state(mesh):
  config = _config(adapt_bn="volume")
  config.model.update(depth=2, base_features=4, norm="batch")
  config.data.image_size = 16
  graphdef, state, _ = state_lib.create_train_state(config, mesh, runtime.prng_key(config, 0))
  return config, graphdef, state


def test_adapt_bn_statistics_are_the_volume_slices_and_remove_intensity_scale():
  # AdaBN re-estimates every batch norm on the volume: the first one's mean / variance are
  # those of the first conv's output over the volume's slices, and a prediction becomes
  # invariant to a global intensity scale of the volume (conv is linear, batch norm
  # removes the scale), which the source running averages do not give.
  mesh = runtime.create_mesh()
  config, graphdef, state = _tiny_unet_state(mesh)
  stats_fn = state_lib.make_volume_stats_fn(graphdef, mesh)
  predict_fn = state_lib.make_predict_fn(graphdef, mesh)
  v = _volume(z=6)
  adapted = evaluate.adapted_state(stats_fn, state, v.image, 64, mesh)
  model = nnx.merge(graphdef, state.params, state.batch_stats)
  first = model.down[0].block1
  conv_out = np.asarray(first.conv(jnp.asarray(v.image[..., None])), np.float64)
  stats = nnx.merge(graphdef, state.params, adapted.batch_stats).down[0].block1.norm
  np.testing.assert_allclose(stats.mean[...], conv_out.reshape(-1, 4).mean(0), atol=1e-5)
  np.testing.assert_allclose(stats.var[...], conv_out.reshape(-1, 4).var(0), rtol=1e-3,
                             atol=1e-6)
  # Only 3 of 6 slices: statistics differ from the full volume's.
  few = evaluate.adapted_state(stats_fn, state, v.image, 3, mesh)
  assert not np.allclose(nnx.merge(graphdef, state.params, few.batch_stats)
                         .down[0].block1.norm.mean[...], stats.mean[...])

  def logits(vol_state, image):
    _, sums = evaluate.predict_volume(predict_fn, vol_state, image, v.mask, mesh=mesh,
                                      batch_size=8)
    return losses.losses_from_sums(sums)["bce"]
  scaled = (0.5 * v.image).astype(np.float32)
  adapted_scaled = evaluate.adapted_state(stats_fn, state, scaled, 64, mesh)
  np.testing.assert_allclose(logits(adapted_scaled, scaled), logits(adapted, v.image),
                             rtol=1e-3)
  assert not np.isclose(logits(state, scaled), logits(state, v.image), rtol=1e-3)


def test_evaluate_domains_adapts_only_target_volumes():
  mesh = runtime.create_mesh()
  config, graphdef, state = _tiny_unet_state(mesh)
  data = _dataset()
  config.data.targets = ("ct", "mr")
  data.splits["CT"]["test"] = ["0"]  # the source domain evaluated too
  calls = []
  stats_fn = state_lib.make_volume_stats_fn(graphdef, mesh)

  def counting(state, images):
    calls.append(images.shape[0])
    return stats_fn(state, images)

  predict_fn = state_lib.make_predict_fn(graphdef, mesh)
  summary, per_volume, _ = evaluate.evaluate_domains(
      predict_fn, state, data, config, mesh=mesh, examples_per_domain=1, stats_fn=counting)
  assert calls == [6, 6]  # the two MR test volumes, not the CT (source) one
  assert {"ct", "mr"} <= set(summary)
  with pytest.raises(ValueError, match="adapt_bn"):
    evaluate.evaluate_domains(predict_fn, state, data, _config(adapt_bn="batch"), mesh=mesh)
  with pytest.raises(ValueError, match="stats_fn"):
    evaluate.evaluate_domains(predict_fn, state, data, config, mesh=mesh)


@pytest.mark.slow
def test_checkpoint_curve_scores_every_kept_checkpoint_like_the_evaluation(tiny_config, tmp_path):
  workdir = tmp_path / "run"
  results = experiment.run_segmentation(tiny_config, workdir)  # 6 steps, checkpoints 3 and 6
  rows = experiment.run(tiny_config, workdir, "checkpoint_curve")
  assert [r["step"] for r in rows] == [3, 6]
  logged = {r["step"]: r["val_dice"] for r in metric_writer.read_scalars(workdir)
            if r.get("split") == "val"}
  assert [r["val_dice"] for r in rows] == [logged[3], logged[6]]
  # The evaluated checkpoint's row holds the run's own test Dice, group by group.
  best = next(r for r in rows if r["step"] == results["step"])
  for group, summary in results["summary"].items():
    assert best[f"{group}_dice"] == pytest.approx(summary["dice"]["mean"], abs=1e-9)
  for name in ("checkpoint_curve.json", "checkpoint_curve.md", "checkpoint_curve.png"):
    assert (workdir / name).stat().st_size > 0
  assert "| 6 |" in (workdir / "checkpoint_curve.md").read_text()
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    evaluate.checkpoint_curve(tiny_config, tmp_path / "empty")


def test_evaluation_matches_to_the_checkpoints_stored_quantiles(tiny_config, tmp_path,
                                                                  monkeypatch):
  # eval.intensity="histogram_match" matches target scans to the quantiles the checkpoint keeps
  # (as liverjax.predict does), not to ones recomputed from whatever data is loaded now.
  tiny_config.eval.intensity = "histogram_match"
  tiny_config.data.targets = ("mr",)
  workdir = tmp_path / "run"
  results = experiment.run_segmentation(tiny_config, workdir)
  data = dataset_lib.load_dataset(tiny_config.data)
  manager = checkpointing.open_read_only(workdir / "checkpoints")
  stored = evaluate.checkpoint_reference(manager, results["step"], data, tiny_config)
  np.testing.assert_allclose(stored, evaluate.intensity_reference(data, tiny_config), atol=1e-7)
  # The evaluation and the checkpoint curve use the stored quantiles, never recomputing them.
  seen = []
  real_match = evaluate.harmonize_volumes
  monkeypatch.setattr(evaluate, "harmonize_volumes",
                      lambda v, ref, gamma=1.0: (seen.append(np.asarray(ref)),
                                                 real_match(v, ref, gamma))[1])
  monkeypatch.setattr(evaluate, "intensity_reference",
                      lambda *a: pytest.fail("recomputed the reference from the data"))
  evaluate.evaluate_experiment(tiny_config, workdir, data=data)
  np.testing.assert_array_equal(seen[-1], stored)
  evaluate.checkpoint_curve(tiny_config, workdir, data=data)
  np.testing.assert_array_equal(seen[-1], stored)
  # A checkpoint made before the quantiles were stored: computed from the data instead.
  monkeypatch.setattr(checkpointing, "restore_source_stats", lambda manager, step: None)
  monkeypatch.setattr(evaluate, "intensity_reference", lambda d, c: np.full(101, 0.5, np.float32))
  evaluate.evaluate_experiment(tiny_config, workdir, data=data)
  np.testing.assert_array_equal(seen[-1], np.full(101, 0.5, np.float32))
  tiny_config.eval.intensity = "none"
  assert evaluate.checkpoint_reference(manager, results["step"], data, tiny_config) is None
