"""Input pipeline: shapes, dtypes, sharding, determinism, resume, eval padding."""
import jax
import numpy as np
import pytest

from liverjax import configs
from liverjax import runtime
from liverjax.data import pipeline


def _slices(n=40, size=16):
  rng = np.random.default_rng(0)
  images = rng.random((n, size, size, 1), dtype=np.float32)
  # Tag every slice with its index so batches can be traced back.
  images[:, 0, 0, 0] = np.arange(n)
  masks = (rng.random((n, size, size, 1)) > 0.5).astype(np.float32)
  return images, masks


def _ids(batch):
  return tuple(np.asarray(batch["image"])[:, 0, 0, 0].astype(int))


@pytest.mark.parametrize("use_tf", [False, True])
def test_global_batches_shapes_dtypes_sharding(use_tf):
  if use_tf and runtime.tensorflow_or_none() is None:
    pytest.skip("TensorFlow not installed")
  images, masks = _slices()
  mesh = runtime.create_mesh()
  it = pipeline.train_batches(images, masks, global_batch_size=16, mesh=mesh,
                                    seed=0, use_tf=use_tf)
  batch = next(it)
  assert set(batch) == {"image", "mask"}
  for k in batch:
    assert batch[k].shape == (16, 16, 16, 1)
    assert batch[k].dtype == np.float32
    assert batch[k].sharding.spec == jax.sharding.PartitionSpec("data")
    # Each device holds its share of the batch.
    assert len(batch[k].addressable_shards) == jax.device_count()
    assert batch[k].addressable_shards[0].data.shape[0] == 16 // jax.device_count()
  ids = _ids(batch)
  # A batch holds distinct slices, and the mask travels with its image.
  assert len(set(ids)) == 16
  np.testing.assert_array_equal(np.asarray(batch["mask"]), masks[list(ids)])


@pytest.mark.parametrize("use_tf", [False, True])
def test_deterministic_and_epochs_cover_all(use_tf):
  if use_tf and runtime.tensorflow_or_none() is None:
    pytest.skip("TensorFlow not installed")
  images, masks = _slices(n=32)
  mesh = runtime.create_mesh()
  run = lambda seed: [_ids(b) for b, _ in zip(pipeline.train_batches(
      images, masks, global_batch_size=8, mesh=mesh, seed=seed, use_tf=use_tf), range(8))]
  a, b, c = run(1), run(1), run(2)
  assert a == b
  assert a != c
  # The first epoch (4 batches of 8) visits every slice once.
  assert sorted(sum(a[:4], ())) == list(range(32))


def test_numpy_resume_is_exact():
  images, masks = _slices(n=30)
  full = [tuple(b["image"][:, 0, 0, 0].astype(int)) for b, _ in
          zip(pipeline.numpy_batches({"image": images, "mask": masks}, 8, seed=3), range(10))]
  resumed = [tuple(b["image"][:, 0, 0, 0].astype(int)) for b, _ in
             zip(pipeline.numpy_batches({"image": images, "mask": masks}, 8, seed=3,
                                          start_step=6),
                 range(4))]
  assert resumed == full[6:]


def test_tf_resume_skips_consumed_batches():
  if runtime.tensorflow_or_none() is None:
    pytest.skip("TensorFlow not installed")
  images, masks = _slices(n=30)
  full = [tuple(b["image"][:, 0, 0, 0].astype(int)) for b, _ in
          zip(pipeline.tf_batches({"image": images, "mask": masks}, 8, seed=3), range(10))]
  resumed = [tuple(b["image"][:, 0, 0, 0].astype(int)) for b, _ in
             zip(pipeline.tf_batches({"image": images, "mask": masks}, 8, seed=3,
                                       start_step=6), range(4))]
  assert resumed == full[6:]


def test_batch_size_must_divide_over_devices():
  images, masks = _slices()
  mesh = runtime.create_mesh()
  with pytest.raises(ValueError, match="divisible"):
    next(pipeline.train_batches(images, masks, global_batch_size=jax.device_count() + 1,
                                      mesh=mesh, seed=0, use_tf=False))


def test_too_few_slices_is_a_clear_error():
  images, masks = _slices(n=4)
  with pytest.raises(ValueError, match="only 4 training slices"):
    next(pipeline.numpy_batches({"image": images, "mask": masks}, 8, seed=0))


def test_eval_batches_pad_and_keep_order():
  images, _ = _slices(n=13)
  mesh = runtime.create_mesh()
  got, valid = [], []
  for batch, n in pipeline.eval_batches(images, 5, mesh):
    assert batch.shape[0] % jax.device_count() == 0
    got.append(np.asarray(batch)[:n])
    valid.append(n)
  np.testing.assert_array_equal(np.concatenate(got), images)
  assert sum(valid) == 13


def test_extras_travel_with_their_slices():
  images, masks = _slices(n=24)
  tags = np.arange(24, dtype=np.float32) * 10
  mesh = runtime.create_mesh()
  batch = next(pipeline.train_batches(images, masks, global_batch_size=8, mesh=mesh,
                                            seed=0, use_tf=False, extras={"tag": tags}))
  np.testing.assert_array_equal(np.asarray(batch["tag"]), np.array(_ids(batch)) * 10.0)
  with pytest.raises(ValueError, match="different lengths"):
    next(pipeline.numpy_batches({"image": images, "tag": tags[:5]}, 4, seed=0))


def test_batch_errors_name_the_config_field():
  images, masks = _slices(n=4)
  mesh = runtime.create_mesh()
  n = jax.device_count()
  with pytest.raises(configs.ConfigError, match=rf"^config.cyclegan.batch_size={n + 1}: must "
                                                rf"be divisible by the number of devices \({n}\)"):
    next(pipeline.train_batches(images, masks, global_batch_size=n + 1, mesh=mesh, seed=0,
                                use_tf=False, batch_field="cyclegan.batch_size"))
  with pytest.raises(configs.ConfigError, match=rf"^config.train.batch_size={2 * n}: larger "
                                                r"than the training set: 4 slices"):
    next(pipeline.train_batches(images, masks, global_batch_size=2 * n, mesh=mesh, seed=0,
                                use_tf=False))
