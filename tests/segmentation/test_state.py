"""Tests for the DG recipes in liverjax/segmentation/state.py's train step: GIN, GIN-IPA (two
views + consistency) and SLAug (saliency fusion) run sharded, are deterministic for a key, log
their terms, and read the batch's organ map. The plain step is tested in test_train.py."""
import jax
import numpy as np
import pytest

from liverjax import runtime
from liverjax.segmentation import state as state_lib
from tests.conftest import make_tiny_config
from tests.segmentation.test_train import _batch

RECIPES = {
    "gin": {"augment.gin": True, "augment.gin_prob": 0.5},
    "ipa": {"augment.gin": True, "augment.ipa": True},
    "slaug": {"augment.location_scale": True, "augment.location_scale_local": True,
              "augment.saliency_fusion": True},
}


def _global_batch(mesh, organs_offset=0):
  batch = _batch()
  organs = batch["mask"][..., 0].astype(np.int32)
  organs[:, :, :8] = np.where(organs[:, :, :8] == 0, 2 + organs_offset, organs[:, :, :8])
  batch.update(organs=organs, is_t2=np.zeros(len(organs), np.float32))
  return {k: jax.device_put(v, runtime.batch_sharding(mesh)) for k, v in batch.items()}


def _two_steps(config, mesh, step_fn, batch):
  _, state, _ = state_lib.create_train_state(config, mesh, runtime.prng_key(config, 0))
  history = []
  for i in range(2):
    state, metrics = step_fn(state, batch, runtime.prng_key(config, 10 + i))
    history.append(jax.device_get(metrics))
  return jax.device_get(state.params), history


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_dg_train_step_runs_and_is_deterministic_for_a_key(recipe, tmp_path):
  config = make_tiny_config(tmp_path, **RECIPES[recipe])
  mesh = runtime.create_mesh()
  graphdef, _, tx = state_lib.create_train_state(config, mesh, runtime.prng_key(config, 0))
  step_fn = state_lib.make_train_step(config, graphdef, tx, mesh)
  batch = _global_batch(mesh)
  params_a, hist_a = _two_steps(config, mesh, step_fn, batch)
  params_b, hist_b = _two_steps(config, mesh, step_fn, batch)
  assert all(h["finite"] == 1.0 for h in hist_a)
  for ha, hb in zip(hist_a, hist_b):
    assert ha.keys() == hb.keys()
    for k in ha:
      np.testing.assert_array_equal(ha[k], hb[k])
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(a, b)
  last = hist_a[-1]
  if recipe == "ipa":
    # The consistency term is logged, positive, and weighted into the total.
    assert last["consistency"] > 0.0
    np.testing.assert_allclose(
        last["total"], last["seg_total"] + config.augment.ipa_weight * last["consistency"],
        rtol=1e-5)
  if recipe == "slaug":
    assert np.isfinite(last["global_total"]) and last["global_total"] > 0.0
    # The local view reads the batch's organ map: another map, another step.
    _, hist_c = _two_steps(config, mesh, step_fn, _global_batch(mesh, organs_offset=1))
    assert hist_c[0]["total"] != hist_a[0]["total"]


def test_plain_config_has_no_augmentation_or_second_view(tiny_config):
  assert state_lib.make_augment_fn(tiny_config) is None
  tiny_config.augment.gin = True
  assert state_lib.make_augment_fn(tiny_config).func.__name__ == "augment_batch"
  tiny_config.augment.ipa = True
  assert state_lib.make_augment_fn(tiny_config).func.__name__ == "augment_views"
