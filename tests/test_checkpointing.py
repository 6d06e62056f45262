"""Checkpoints: retention (latest N + best), save -> restore -> identical predictions."""
from typing import Any

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from liverjax import checkpointing
from liverjax import runtime
from liverjax.segmentation import state as train


def test_keeps_latest_and_best(tmp_path):
  manager = checkpointing.create_manager(tmp_path, keep=2)
  state = {"w": np.arange(4, dtype=np.float32)}
  for step, dice in [(1, 0.2), (2, 0.9), (3, 0.4), (4, 0.5), (5, 0.3)]:
    checkpointing.save(manager, step, state, {"note": step}, metrics={"val_dice": dice})
  assert manager.all_steps() == [2, 4, 5]
  assert checkpointing.best_step(manager) == 2
  assert checkpointing.restore_config(manager, 4) == {"note": 4}
  # Evaluation opens the same checkpoints read-only: same best, nothing deleted.
  reader = checkpointing.create_manager(tmp_path, keep=1, read_only=True)
  assert checkpointing.best_step(reader) == 2
  assert reader.all_steps() == [2, 4, 5]


def test_checkpoint_location(tmp_path):
  (tmp_path / "checkpoints" / "7").mkdir(parents=True)
  assert checkpointing.checkpoint_location(tmp_path) == (tmp_path / "checkpoints", None)
  assert checkpointing.checkpoint_location(tmp_path / "checkpoints" / "7") == (
      tmp_path / "checkpoints", 7)
  with pytest.raises(FileNotFoundError, match="nowhere"):
    checkpointing.checkpoint_location(tmp_path / "nowhere")


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_save_restore_gives_identical_predictions(tiny_config, tmp_path, ema_decay):
  tiny_config.train.ema_decay = ema_decay  # the moving average is saved and predicts
  mesh = runtime.create_mesh()
  graphdef, state, tx = train.create_train_state(tiny_config, mesh, runtime.prng_key(tiny_config, 0))
  step_fn = train.make_train_step(tiny_config, graphdef, tx, mesh)
  rng = np.random.default_rng(0)
  batch = {"image": rng.random((8, 32, 32, 1), dtype=np.float32),
           "mask": (rng.random((8, 32, 32, 1)) > 0.7).astype(np.float32)}
  batch = {k: jax.device_put(v, runtime.batch_sharding(mesh)) for k, v in batch.items()}
  for i in range(2):  # moves params, batch stats and Adam moments off their init
    state, _ = step_fn(state, batch, runtime.prng_key(tiny_config, i))
  predict = train.make_predict_fn(graphdef, mesh)
  before_pred, before_sums = jax.device_get(predict(state, batch["image"], batch["mask"]))

  manager = checkpointing.create_manager(tmp_path, keep=1)
  checkpointing.save(manager, 2, state, tiny_config.to_dict(), metrics={"val_dice": 0.5})
  _, fresh, _ = train.create_train_state(tiny_config, mesh, runtime.prng_key(tiny_config, 1))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          fresh)
  restored, step = checkpointing.restore(manager, abstract)
  assert step == 2
  for a, b in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(jax.device_get(restored))):
    np.testing.assert_array_equal(a, b)
  after_pred, after_sums = jax.device_get(predict(restored, batch["image"], batch["mask"]))
  np.testing.assert_array_equal(before_pred, after_pred)
  for k in before_sums:
    np.testing.assert_array_equal(before_sums[k], after_sums[k])
  # The explicit-path form used by --config.eval.checkpoint.
  by_path, step = checkpointing.restore_path(tmp_path / "checkpoints" / "2", abstract)
  assert step == 2
  assert checkpointing.restore_config(manager, 2)["model"]["depth"] == tiny_config.model.depth


@flax.struct.dataclass
class _TrainStateBeforeEma:
  """The U-Net train state as checkpoints before `ema_params` stored it."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  nonfinite_step: jax.Array


def test_checkpoints_made_before_the_moving_average_still_restore(tiny_config, tmp_path):
  mesh = runtime.create_mesh()
  _, state, _ = train.create_train_state(tiny_config, mesh, runtime.prng_key(tiny_config, 0))
  old = _TrainStateBeforeEma(step=state.step, params=state.params,
                             batch_stats=state.batch_stats, opt_state=state.opt_state,
                             nonfinite_step=state.nonfinite_step)
  manager = checkpointing.create_manager(tmp_path, keep=1)
  manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave(old)), force=True)
  manager.wait_until_finished()
  abstract = train.abstract_train_state(tiny_config, mesh)[1]
  restored, step = checkpointing.restore(manager, abstract)
  assert step == 3 and isinstance(restored, train.TrainState) and restored.ema_params is None
  for a, b in zip(jax.tree.leaves(jax.device_get(state)),
                  jax.tree.leaves(jax.device_get(restored))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["state/_METADATA", "state/manifest.ocdbt"])
def test_a_damaged_checkpoint_is_one_line_naming_its_folder(tmp_path, damage):
  """A checkpoint missing an orbax file ended in a long orbax / tensorstore traceback."""
  manager = checkpointing.create_manager(tmp_path, best_metric=None)
  checkpointing.save(manager, 10, {"w": np.arange(3, dtype=np.float32)}, {"a": 1})
  (tmp_path / "checkpoints" / "10" / damage).unlink()
  manager = checkpointing.create_manager(tmp_path, best_metric=None)
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.restore(manager, {"w": jax.ShapeDtypeStruct((3,), np.float32)})
  assert str(tmp_path / "checkpoints" / "10") in str(err.value)
  assert "\n" not in str(err.value) and len(str(err.value)) < 600


def test_another_structure_is_one_line_naming_the_folder(tmp_path):
  manager = checkpointing.create_manager(tmp_path, best_metric=None)
  checkpointing.save(manager, 10, {"w": np.arange(3, dtype=np.float32)})
  with pytest.raises(checkpointing.CheckpointError, match="cannot restore") as err:
    checkpointing.restore(manager, {"w": jax.ShapeDtypeStruct((3,), np.float32),
                                    "b": jax.ShapeDtypeStruct((2,), np.float32)})
  assert "\n" not in str(err.value)
