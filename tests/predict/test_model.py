"""Tests for liverjax/predict/model.py: the checkpoint's config and preprocessing, test-time
adaptation and matching, the field-of-view logits."""
import dataclasses

import numpy as np
import pytest

from liverjax import checkpointing
from liverjax import predict
from liverjax import runtime
from liverjax.data import chaos
from liverjax.data import harmonize
from liverjax.data import preprocess
from liverjax.segmentation import state as state_lib
from tests.conftest import make_tiny_config
from tests.predict.conftest import SOURCE_QUANTILES
from tests.predict.conftest import assert_one_line


def test_load_model_takes_the_preprocessing_from_the_checkpoint(model):
  assert model.step == 3
  assert model.config.data.image_size == 32
  assert model.config.model.base_features == 4  # the saved architecture, not the default 16


def test_checkpoint_without_config_raises_one_line_naming_it(tmp_path):
  config = make_tiny_config(tmp_path)
  _, state, _ = state_lib.create_train_state(config, runtime.create_mesh(),
                                             runtime.prng_key(config))
  bare = tmp_path / "bare"
  checkpointing.save(checkpointing.create_manager(bare), 1, state, None,
                     metrics={"val_dice": 0.1})
  with pytest.raises(predict.PredictError, match="without a saved config") as e:
    predict.load_model(bare)
  assert_one_line(e.value, bare / "checkpoints" / "1")


def test_batch_norm_adaptation_follows_the_checkpoint_config(model, trained):
  # "auto" adapts only where the checkpoint was evaluated so (eval.adapt_bn="volume") and only
  # scans of the modality it was not trained on; "on" / "off" force it; adapting changes the
  # logits (the scan's own statistics replace the training running averages).
  volumes, _ = chaos.load_volumes(trained[1], ("ct", "t2"))
  mr = next(v for v in volumes if v.modality == "MR")
  ct = next(v for v in volumes if v.modality == "CT")
  assert model.config.data.source == "ct"
  assert not predict.adapts_batch_norm(model, mr)  # the saved config says adapt_bn "none"
  model.config.eval.adapt_bn = "volume"
  try:
    assert predict.adapts_batch_norm(model, mr) and not predict.adapts_batch_norm(model, ct)
    assert predict.adapts_batch_norm(model, ct, "on")
    assert not predict.adapts_batch_norm(model, mr, "off")
    on = predict.predict_logits(model, mr, adapt_bn="on")
    off = predict.predict_logits(model, mr, adapt_bn="off")
    assert on.shape == off.shape == mr.image.shape
    assert not np.allclose(on, off, atol=1e-3)
    np.testing.assert_allclose(predict.predict_logits(model, mr), on, atol=1e-5)
  finally:
    model.config.eval.adapt_bn = "none"
  with pytest.raises(predict.PredictError, match="adapt_bn"):
    predict.adapts_batch_norm(model, mr, "yes")


def test_histogram_matching_follows_the_checkpoint_config(model, trained):
  # "auto" matches only where the checkpoint was evaluated so (eval.intensity="histogram_match")
  # and only scans of the modality it was not trained on, to the quantiles saved with it.
  volumes, _ = chaos.load_volumes(trained[1], ("ct", "t2"))
  mr = next(v for v in volumes if v.modality == "MR")
  ct = next(v for v in volumes if v.modality == "CT")
  np.testing.assert_array_equal(model.source_stats["intensity_quantiles"], SOURCE_QUANTILES)
  assert not predict.matches_histogram(model, mr)  # the saved config says intensity "none"
  np.testing.assert_array_equal(predict.prepare_input(model, mr), predict.prepare(model, mr))
  model.config.eval.intensity = "histogram_match"
  try:
    assert predict.matches_histogram(model, mr) and not predict.matches_histogram(model, ct)
    assert predict.matches_histogram(model, ct, "histogram_match")
    assert not predict.matches_histogram(model, mr, "none")
    np.testing.assert_array_equal(predict.prepare_input(model, ct), predict.prepare(model, ct))
    matched, plain = predict.prepare_input(model, mr), predict.prepare(model, mr)
    np.testing.assert_allclose(matched, harmonize.histogram_match(plain, None, SOURCE_QUANTILES),
                               atol=1e-6)
    body = matched[plain > harmonize.BODY_THRESHOLD]  # the scan's body now has the saved levels
    np.testing.assert_allclose(np.quantile(body, [0.1, 0.5, 0.9]),
                               SOURCE_QUANTILES[[10, 50, 90]], atol=0.03)
    model.config.eval.intensity_gamma = 0.5  # then x ** gamma, as the evaluation does
    np.testing.assert_allclose(predict.prepare_input(model, mr), np.sqrt(matched), atol=1e-6)
    model.config.eval.intensity_gamma = 1.0
    assert not np.allclose(predict.predict_logits(model, mr),
                           predict.predict_logits(model, mr, intensity="none"), atol=1e-3)
    # A checkpoint made before the quantiles were kept: one line naming it.
    old = dataclasses.replace(model, source_stats=None)
    with pytest.raises(predict.PredictError, match="intensity quantiles.*--intensity=none"):
      predict.prepare_input(old, mr)
    np.testing.assert_array_equal(predict.prepare_input(old, mr, "none"),
                                  predict.prepare(model, mr))
  finally:
    model.config.eval.intensity = "none"
    model.config.eval.intensity_gamma = 1.0
  with pytest.raises(predict.PredictError, match="intensity"):
    predict.matches_histogram(model, mr, "zscore")


def test_field_of_view_logits_go_back_to_the_scan_grid(model, trained):
  # With `data.field_of_view`, the model sees the scan resampled to fov / S mm pixels and centred;
  # its logits go back to the scan's own grid: the centre carries the model's output, and what
  # the crop cut away (a field of view half the scan's) is background.
  volumes, _ = chaos.load_volumes(trained[1], ("ct",))
  ct = volumes[0]
  z, h, w = ct.image.shape
  native_fov = h * ct.spacing[1]
  size = int(model.config.data.image_size)
  try:
    model.config.data.field_of_view = native_fov / 2
    x = predict.prepare(model, ct)
    assert x.shape == (z, size, size)
    # Half the field of view on the same S pixels: the centre of the scan, enlarged 2x.
    whole = preprocess.prepare_volume(ct, image_size=2 * size).image
    np.testing.assert_allclose(x, whole[:, size // 2:size // 2 + size, size // 2:size // 2 + size],
                               atol=0.08)
    logits = predict.predict_logits(model, ct)
    assert logits.shape == ct.image.shape
    q = h // 4
    edge = np.ones((h, w), bool)
    edge[q - 1:h - q + 1, q - 1:w - q + 1] = False
    assert np.all(logits[:, edge] == predict.BACKGROUND_LOGIT)
    assert np.all(logits[:, q + 1:h - q - 1, q + 1:w - q - 1] > predict.BACKGROUND_LOGIT)
    model.config.data.field_of_view = native_fov * 2  # padded: every voxel has a model logit
    assert np.all(predict.predict_logits(model, ct) > predict.BACKGROUND_LOGIT)
  finally:
    model.config.data.field_of_view = None
