"""CycleGAN translation: reloading generators from checkpoints, translating training slices."""
import jax
import numpy as np
import pytest

from liverjax import runtime
from liverjax.cyclegan import state as cg_state
from liverjax.cyclegan import translate
from tests.cyclegan.conftest import tiny_cyclegan_config, toy_batches


def test_checkpoint_round_trip(setup, trained):
  config, mesh, graphs, _, _, _ = setup
  state, workdir = trained
  x = jax.device_put(toy_batches(seed=3)[0], runtime.batch_sharding(mesh))
  apply = cg_state.make_translate_fn(graphs.generator)
  want_g = np.asarray(apply(state.g, x))
  want_f = np.asarray(apply(state.f, x))
  assert not np.allclose(want_g, want_f)
  # The workdir, and an explicit step folder, with a config whose architecture differs
  # (the checkpoint's own settings win).
  other = tiny_cyclegan_config(workdir / "other")
  other.cyclegan.generator_features = 8
  for path, cfg in ((workdir, config), (workdir / "checkpoints" / "3", other)):
    ct_to_mr, mr_to_ct = translate.load_generators(path, cfg)
    np.testing.assert_array_equal(np.asarray(ct_to_mr(x)), want_g)
    np.testing.assert_array_equal(np.asarray(mr_to_ct(x)), want_f)
  with pytest.raises(FileNotFoundError):
    translate.load_generators(workdir / "nowhere", config)


def test_translate_slices(setup, trained):
  config, mesh, graphs, _, _, _ = setup
  state, workdir = trained
  images = np.concatenate(toy_batches(n=6, seed=5))  # 12 slices: not a multiple of 8
  with pytest.raises(ValueError, match="cyclegan_workdir"):
    translate.translate_slices(images, config)  # no CycleGAN configured
  config = tiny_cyclegan_config(workdir / "unet")
  config.translate.cyclegan_workdir = str(workdir)
  out = translate.translate_slices(images, config)
  assert out.shape == images.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0
  apply = cg_state.make_translate_fn(graphs.generator)
  np.testing.assert_allclose(out, np.asarray(apply(state.g, images)), atol=1e-6)  # G: CT -> MR
  config.data.source = "mr"
  out_mr = translate.translate_slices(images, config)
  np.testing.assert_allclose(out_mr, np.asarray(apply(state.f, images)), atol=1e-6)
  config.data.source = "ct"
  config.translate.mix = 0.5
  mixed = translate.translate_slices(images, config)
  same = np.all(mixed == images, axis=(1, 2, 3))
  assert 0 < same.sum() < len(images)
  np.testing.assert_array_equal(mixed[~same], out[~same])
