"""Multi-organ training: organ ids, label maps, masked per-channel loss, a multi-organ train step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liverjax import experiment
from liverjax import runtime
from liverjax.data import preprocess
from liverjax.segmentation import losses
from liverjax.segmentation import organs
from liverjax.segmentation import state as train

SPLEEN = 2


def test_organ_ids_need_liver_first_and_known_names():
  assert organs.organ_ids(("liver", "spleen", "kidney_r", "kidney_l")) == (1, 2, 3, 4)
  for bad in (("spleen", "liver"), ("liver", "heart"), ("liver", "liver"), ()):
    with pytest.raises(ValueError, match="model.organs"):
      organs.organ_ids(bad)


def _prepared(organ_map, pid="1"):
  mask = (organ_map == 1).astype(np.uint8)
  return preprocess.PreparedVolume(patient_id=pid, modality="CT", sequence="ct",
                                   image=np.zeros(mask.shape, np.float32), mask=mask,
                                   spacing=(1.0, 1.0, 1.0), organs=organ_map)


def test_stack_labels_uses_organ_maps_and_marks_volumes_without():
  m = np.zeros((2, 4, 4), np.uint8)
  m[:, 0, :2], m[:, 3, 3] = 1, SPLEEN
  with_map = _prepared(m)
  without = _prepared(m, "2")
  without.organs = None
  labels, known = organs.stack_labels([with_map, without])
  assert labels.shape == (4, 4, 4) and labels.dtype == np.int32
  np.testing.assert_array_equal(known, [1, 1, 0, 0])
  np.testing.assert_array_equal(labels[:2], m)
  np.testing.assert_array_equal(labels[2:], (m == 1).astype(np.int32))  # liver only


def _logits_and_labels(seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, (4, 8, 8)).astype(np.int32)
  logits = jnp.asarray(rng.normal(0, 2, (4, 8, 8, 2)), jnp.float32)
  return logits, labels


def test_multi_organ_loss_sums_channels_and_masks_unknown_slices():
  logits, labels = _logits_and_labels()
  ids = (1, SPLEEN)
  targets, w = organs.organ_targets(labels, jnp.ones(4), ids)
  total, terms = organs.multi_organ_loss(logits, targets, w)
  per_channel = [losses.segmentation_loss(logits[..., c:c + 1], targets[..., c:c + 1])[0]
                 for c in range(2)]
  np.testing.assert_allclose(total, sum(per_channel), rtol=1e-5)
  np.testing.assert_allclose(terms["organ_total"], per_channel[1], rtol=1e-5)
  np.testing.assert_allclose(terms["dice_loss"],
                             losses.segmentation_loss(logits[..., :1], targets[..., :1])[1]
                             ["dice_loss"], rtol=1e-5)
  # Slices 2, 3 without organ labels: their spleen logits do not change the loss.
  known = jnp.array([1.0, 1.0, 0.0, 0.0])
  targets, w = organs.organ_targets(labels, known, ids)
  np.testing.assert_array_equal(w[:, 0], 1.0)
  base, _ = organs.multi_organ_loss(logits, targets, w)
  moved, _ = organs.multi_organ_loss(logits.at[2:, ..., 1].add(5.0), targets, w)
  np.testing.assert_allclose(base, moved, rtol=1e-6)
  changed, _ = organs.multi_organ_loss(logits.at[:2, ..., 1].add(5.0), targets, w)
  assert abs(float(changed) - float(base)) > 1e-3
  # No known slice: the spleen channel adds nothing.
  targets, w = organs.organ_targets(labels, jnp.zeros(4), ids)
  _, terms = organs.multi_organ_loss(logits, targets, w)
  assert float(terms["organ_total"]) == 0.0


def _organ_batch(n=8, size=32, seed=0):
  """Bright disks are liver, darker squares spleen; half the slices without organ labels."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  images = rng.normal(0.3, 0.05, (n, size, size, 1)).astype(np.float32)
  labels = np.zeros((n, size, size), np.int32)
  for i in range(n):
    cy, cx = rng.integers(10, size - 10, 2)
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= 25
    images[i, :6, :6, 0] += 0.2
    labels[i, :6, :6] = SPLEEN
    images[i, disk, 0] += 0.4
    labels[i, disk] = 1
  known = np.array([1.0, 0.0] * (n // 2), np.float32)
  shown = np.where(known[:, None, None] > 0, labels, (labels == 1).astype(np.int32))
  return {"image": np.clip(images, 0, 1), "mask": (labels == 1)[..., None].astype(np.float32),
          "organs": shown, "organs_known": known}


def test_multi_organ_steps_lower_the_loss_and_predict_the_liver(tiny_config):
  tiny_config.train.learning_rate = 1e-2
  tiny_config.model.organs = ("liver", "spleen")
  mesh = runtime.create_mesh()
  config = tiny_config
  graphdef, state, tx = train.create_train_state(config, mesh, runtime.prng_key(config, 0))
  step_fn = train.make_train_step(config, graphdef, tx, mesh)
  batch = {k: jax.device_put(v, runtime.batch_sharding(mesh))
           for k, v in _organ_batch().items()}
  history = []
  for i in range(30):
    state, metrics = step_fn(state, batch, runtime.prng_key(config, i))
    history.append(jax.device_get(metrics))
  liver = [h["total"] - h["organ_total"] for h in history]
  assert liver[-1] < 0.8 * liver[0], liver
  assert history[-1]["organ_total"] < 0.9 * history[0]["organ_total"]
  assert history[-1]["dice"] > 0.8  # the liver channel's hard Dice
  predict = train.make_predict_fn(graphdef, mesh)
  pred, _ = predict(state, batch["image"], batch["mask"])
  assert pred.shape == (8, 32, 32, 1)  # channel 0 = liver only


@pytest.mark.slow
def test_multi_organ_experiment_runs_on_chaos_data_without_organ_maps(tiny_config, tmp_path):
  tiny_config.model.organs = ("liver", "spleen", "kidney_r", "kidney_l")
  results = experiment.run_segmentation(tiny_config, tmp_path / "run")
  assert results["organs"] == ["liver", "spleen", "kidney_r", "kidney_l"]
  assert results["experiment"].endswith("+multiorgan")
  assert 0.0 <= results["summary"]["ct"]["dice"]["mean"] <= 1.0
  assert "dice_raw" in results["summary"]["mr"]
