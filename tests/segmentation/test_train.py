"""Training: the loss goes down, sharded == unsharded, NaN stops the run, resume."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax import checkpointing
from liverjax import configs
from liverjax import experiment
from liverjax import metric_writer
from liverjax import runtime
from liverjax import training
from liverjax.data import dataset as dataset_lib
from liverjax.data import pipeline
from liverjax.segmentation import evaluate
from liverjax.segmentation import state as train
from liverjax.segmentation import train as segmentation_train


def _batch(n=8, size=32, seed=0):
  """A learnable toy batch: bright disks are liver."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  images = rng.normal(0.3, 0.05, (n, size, size, 1)).astype(np.float32)
  masks = np.zeros((n, size, size, 1), np.float32)
  for i in range(n):
    cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [rng.integers(4, 8)]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    images[i, disk, 0] += 0.4
    masks[i, disk, 0] = 1.0
  return {"image": np.clip(images, 0, 1), "mask": masks}


def _single_device_mesh():
  return jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))


def _run_steps(config, mesh, batch, n):
  graphdef, state, tx = train.create_train_state(config, mesh, runtime.prng_key(config, 0))
  step_fn = train.make_train_step(config, graphdef, tx, mesh)
  sharding = runtime.batch_sharding(mesh)
  gbatch = {k: jax.device_put(v, sharding) for k, v in batch.items()}
  history = []
  for i in range(n):
    state, metrics = step_fn(state, gbatch, runtime.prng_key(config, i))
    history.append(jax.device_get(metrics))
  return state, history


def test_a_few_steps_lower_the_loss(tiny_config):
  tiny_config.train.learning_rate = 1e-2
  mesh = runtime.create_mesh()
  _, history = _run_steps(tiny_config, mesh, _batch(), 30)
  first, last = history[0]["total"], history[-1]["total"]
  assert np.isfinite(first) and np.isfinite(last)
  assert last < 0.7 * first, (first, last)
  assert history[-1]["dice"] > history[0]["dice"]
  assert all(h["finite"] == 1.0 for h in history)


def test_sharded_equals_unsharded(tiny_config):
  assert jax.device_count() == 8, "tests/conftest.py sets 8 CPU devices"
  batch = _batch()
  state8, hist8 = _run_steps(tiny_config, runtime.create_mesh(), batch, 3)
  state1, hist1 = _run_steps(tiny_config, _single_device_mesh(), batch, 3)
  for h8, h1 in zip(hist8, hist1):
    np.testing.assert_allclose(h8["total"], h1["total"], rtol=1e-4, atol=1e-5)
  leaves8 = jax.tree.leaves(jax.device_get(state8.params))
  leaves1 = jax.tree.leaves(jax.device_get(state1.params))
  assert len(leaves8) == len(leaves1) > 0
  # Adam normalises each update to ~lr (1e-3 here) whatever the gradient's size, so float
  # rounding of a near-zero gradient (per-device partial sums) can move a parameter by ~1e-5;
  # a sharding error moves parameters by O(lr).
  for a, b in zip(leaves8, leaves1):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=5e-5)
  # BatchNorm statistics are computed over the global batch in both cases.
  for a, b in zip(jax.tree.leaves(jax.device_get(state8.batch_stats)),
                  jax.tree.leaves(jax.device_get(state1.batch_stats))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_train_step_donates_the_state(tiny_config):
  mesh = runtime.create_mesh()
  graphdef, state, tx = train.create_train_state(tiny_config, mesh, runtime.prng_key(tiny_config, 0))
  step_fn = train.make_train_step(tiny_config, graphdef, tx, mesh)
  batch = {k: jax.device_put(v, runtime.batch_sharding(mesh)) for k, v in _batch().items()}
  old_leaf = jax.tree.leaves(state.params)[0]
  state, _ = step_fn(state, batch, runtime.prng_key(tiny_config, 0))
  assert old_leaf.is_deleted()


def test_nonfinite_loss_stops_with_the_step(tiny_config):
  mesh = runtime.create_mesh()
  graphdef, state, tx = train.create_train_state(tiny_config, mesh, runtime.prng_key(tiny_config, 0))
  step_fn = train.make_train_step(tiny_config, graphdef, tx, mesh)
  sharding = runtime.batch_sharding(mesh)
  good = {k: jax.device_put(v, sharding) for k, v in _batch().items()}
  bad_np = _batch()
  bad_np["image"][0, 0, 0, 0] = np.nan
  bad = {k: jax.device_put(v, sharding) for k, v in bad_np.items()}
  state, _ = step_fn(state, good, runtime.prng_key(tiny_config, 0))
  before = jax.device_get((state.params, state.batch_stats, state.opt_state))
  state, metrics = step_fn(state, bad, runtime.prng_key(tiny_config, 1))
  assert float(metrics["finite"]) == 0.0
  with pytest.raises(training.NonFiniteError, match="step 2"):
    training.check_finite(state)
  # The bad update was not applied: parameters, batch statistics and Adam's moments as before.
  after = jax.device_get((state.params, state.batch_stats, state.opt_state))
  assert len(jax.tree.leaves(before)) == len(jax.tree.leaves(after)) > 0
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)
  state, _ = step_fn(state, good, runtime.prng_key(tiny_config, 2))
  with pytest.raises(training.NonFiniteError, match="step 2"):
    training.check_finite(state)


def test_update_ema_warms_up_then_uses_the_decay():
  ema, params = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
  # step 1: d = min(0.9, 2 / 11); step 1000: d = 0.9.
  np.testing.assert_allclose(train.update_ema(ema, params, jnp.int32(1), 0.9)["w"], 2 / 11)
  np.testing.assert_allclose(train.update_ema(ema, params, jnp.int32(1000), 0.9)["w"], 0.9,
                             rtol=1e-6)


def test_ema_follows_the_parameters_without_changing_training(tiny_config):
  mesh = runtime.create_mesh()
  batch = {k: jax.device_put(v, runtime.batch_sharding(mesh)) for k, v in _batch().items()}
  plain, _ = _run_steps(tiny_config, mesh, _batch(), 3)
  assert plain.ema_params is None
  tiny_config.train.ema_decay = 0.5
  graphdef, state, tx = train.create_train_state(tiny_config, mesh,
                                                 runtime.prng_key(tiny_config, 0))
  step_fn = train.make_train_step(tiny_config, graphdef, tx, mesh)
  expected = jax.device_get(state.params)
  for i in range(3):
    state, _ = step_fn(state, batch, runtime.prng_key(tiny_config, i))
    d = min(0.5, (2 + i) / (11 + i))
    expected = jax.tree.map(lambda e, p: d * e + (1 - d) * p, expected,
                            jax.device_get(state.params))
  for a, b in zip(jax.tree.leaves(jax.device_get(state.ema_params)), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # The average only watches: the trained parameters are those of the run without it.
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)),
                  jax.tree.leaves(jax.device_get(plain.params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Prediction uses the average, not the latest weights.
  predict = train.make_predict_fn(graphdef, mesh)
  images, masks = batch["image"], batch["mask"]
  with_ema = jax.device_get(predict(state, images, masks)[1])
  as_params = jax.device_get(predict(
      state.replace(params=state.ema_params, ema_params=None), images, masks)[1])
  latest = jax.device_get(predict(state.replace(ema_params=None), images, masks)[1])
  jax.tree.map(np.testing.assert_array_equal, with_ema, as_params)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(with_ema),
                                                      jax.tree.leaves(latest)))


def test_train_and_evaluate_resumes_after_interruption(tiny_config, tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  real_batches = pipeline.train_batches

  def interrupted(*args, **kwargs):
    for i, batch in enumerate(real_batches(*args, **kwargs)):
      if i == 4:
        raise KeyboardInterrupt("simulated kill after 4 steps")
      yield batch

  monkeypatch.setattr(pipeline, "train_batches", interrupted)
  with pytest.raises(KeyboardInterrupt):
    experiment.run_segmentation(tiny_config, str(workdir))
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()
                if p.name.isdigit()) == [3]
  monkeypatch.setattr(pipeline, "train_batches", real_batches)
  starts = []
  monkeypatch.setattr(pipeline, "train_batches",
                      lambda *a, **k: (starts.append(k["start_step"]), real_batches(*a, **k))[1])
  results = experiment.run_segmentation(tiny_config, str(workdir))
  assert starts == [3]
  steps = [r["step"] for r in metric_writer.read_scalars(workdir) if r["split"] == "train"]
  assert steps == [2, 4, 6]  # no step logged twice, ends at train.steps
  assert results["step"] in (3, 6)
  assert (workdir / "metrics.json").exists() and (workdir / "metrics.md").exists()
  # Each checkpoint keeps the source intensity quantiles the evaluation matches target scans
  # to (eval.intensity), for liverjax.predict on new scans.
  stats = checkpointing.restore_source_stats(
      checkpointing.open_read_only(workdir / "checkpoints"), 6)
  np.testing.assert_allclose(
      stats["intensity_quantiles"],
      evaluate.intensity_reference(dataset_lib.load_dataset(tiny_config.data), tiny_config),
      atol=1e-7)
  # The same workdir with another image size: refused in one line naming the field, before
  # anything is restored (it used to resume at step 6 and go on at 64 px without a word).
  tiny_config.data.image_size = 64
  with pytest.raises(configs.ConfigError, match=r"^config.data.image_size=64: the checkpoint "
                                                r".*checkpoints/6 was trained with 32"):
    segmentation_train.train(tiny_config, workdir)


def test_no_training_patients_is_a_config_error_naming_the_split(tiny_config, tmp_path):
  """A split (or data) leaving the source domain without training patients stops the run
  with a ConfigError naming data.split (one line, exit code 2 from liverjax.main)."""
  empty = dataset_lib.Dataset(root="/data/x", volumes=[], splits={}, problems=[])
  with pytest.raises(configs.ConfigError, match=r"^config.data.split=\(0.34, 0.33, 0.33\): "
                                                r"no ct training patients in /data/x"):
    segmentation_train.train(tiny_config, tmp_path / "run", data=empty)


def test_mix_repeats_bring_the_target_share_near_the_fraction_from_either_side():
  for n_source, n_target in ((962, 174), (286, 581), (100, 100), (50, 1000)):
    for fraction in (0.2, 0.3, 0.5, 0.7):
      r_s, r_t = segmentation_train.mix_repeats(n_source, n_target, fraction)
      assert r_s >= 1 and r_t >= 1 and min(r_s, r_t) == 1  # one side is kept once
      share = r_t * n_target / (r_s * n_source + r_t * n_target)
      assert abs(share - fraction) < 0.1, (n_source, n_target, fraction, share)
  # More target slices than wanted: the source is repeated (x5), not the target dropped.
  assert segmentation_train.mix_repeats(286, 581, 0.3) == (5, 1)
  assert segmentation_train.mix_repeats(962, 174, 0.3) == (1, 2)
  assert segmentation_train.mix_repeats(10, 0, 0.3) == (1, 0)
