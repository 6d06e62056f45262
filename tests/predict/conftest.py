"""Fixtures of tests/predict: a tiny U-Net trained once for the whole package."""
import jax
import numpy as np
import pytest

from liverjax import checkpointing
from liverjax import predict
from liverjax import runtime
from liverjax.data import chaos
from liverjax.data import preprocess
from liverjax.data import synthetic
from liverjax.segmentation import state as state_lib
from tests.conftest import SHARED_DATA
from tests.conftest import make_tiny_config

REAL_T2 = SHARED_DATA / "real_dev" / "chaos_t2"
# The "training domain's" intensity quantiles saved with the tiny checkpoint: a made-up
# bright distribution, far from the synthetic T2 scan's own.
SOURCE_QUANTILES = np.linspace(0.3, 0.95, 101).astype(np.float32)


@pytest.fixture(scope="package")
def trained(tmp_path_factory):
  """(workdir, synthetic CHAOS root): a 32 px U-Net trained 3 steps on synthetic slices."""
  tmp = tmp_path_factory.mktemp("predict")
  root = synthetic.generate_chaos(tmp / "synth", n_ct=1, n_mr=1, size=32, slices=6)
  config = make_tiny_config(tmp)
  volumes, _ = chaos.load_volumes(root, ("ct", "t2"))
  prepared = [preprocess.prepare_volume(v, image_size=32) for v in volumes]
  images = np.concatenate([p.image for p in prepared])[:8, ..., None]
  masks = np.concatenate([p.mask for p in prepared])[:8, ..., None].astype(np.float32)
  mesh = runtime.create_mesh()
  graphdef, state, tx = state_lib.create_train_state(config, mesh, runtime.prng_key(config))
  step = state_lib.make_train_step(config, graphdef, tx, mesh)
  sharding = runtime.batch_sharding(mesh)
  batch = {"image": jax.make_array_from_process_local_data(sharding, images),
           "mask": jax.make_array_from_process_local_data(sharding, masks)}
  for i in range(3):
    state, _ = step(state, batch, runtime.prng_key(config, i))
  manager = checkpointing.create_manager(tmp / "workdir")
  checkpointing.save(manager, 3, state, config.to_dict(), metrics={"val_dice": 0.5},
                     source_stats={"intensity_quantiles": SOURCE_QUANTILES.tolist()})
  return tmp / "workdir", root


@pytest.fixture(scope="package")
def model(trained):
  return predict.load_model(trained[0])


def assert_one_line(e: BaseException, path) -> None:
  assert str(path) in str(e) and "\n" not in str(e), str(e)
