"""The real-protocol recipes (liverjax/configs/real/__init__.py) and their named files."""
import importlib

import jax
import jax.numpy as jnp
import pytest

from liverjax import config_check
from liverjax import experiment
from liverjax.augment import pipeline
from liverjax.configs import cyclegan
from liverjax.configs import real

DIRECTIONS = {"ct_to_mr": "ct", "mr_to_ct": "mr"}


@pytest.mark.parametrize("recipe", ["gin", "gin_ipa", "slaug", "augmix", "domain_augmix",
                                    "histmatch", "multiorgan"])
def test_named_recipe_files_are_the_table(recipe):
  for stem, source in DIRECTIONS.items():
    config = importlib.import_module(f"liverjax.configs.real.{stem}_{recipe}").get_config()
    assert config == real.get_real_config(source, recipe)
    pipeline.check_augment_config(config.augment)  # a recipe the train step accepts
    assert real.RECIPES[recipe]  # every named recipe sets something
    for section, fields in real.RECIPES[recipe].items():
      for field, value in fields.items():
        assert config[section][field] == value


def test_best_files_follow_best_and_two_view_recipes_halve_the_batch():
  for stem, source in DIRECTIONS.items():
    best = importlib.import_module(f"liverjax.configs.real.best_{stem}").get_config()
    recipe = real.get_real_config(source, real.BEST[source])
    assert best.augment == recipe.augment
    assert best.data.image_size == real.BEST_IMAGE_SIZE[source]
    assert best.data.field_of_view == real.BEST_FIELD_OF_VIEW
    assert recipe.data.field_of_view is None  # the other recipes resize whole slices
    recipe.data.image_size = best.data.image_size
    recipe.data.field_of_view = best.data.field_of_view
    assert best.data == recipe.data
    assert best.train.steps == real.BEST_STEPS[source] >= recipe.train.steps
    assert best.train.eval_every * 4 == best.train.steps  # four checkpoints to choose from
    assert best.eval.intensity == real.BEST_INTENSITY[source]
    assert best.eval.intensity_gamma == real.BEST_INTENSITY_GAMMA[source]
    assert best.eval.adapt_bn == real.BEST_ADAPT_BN[source]
  assert real.get_real_config("ct", "gin_ipa").train.batch_size == 8
  assert real.get_real_config("ct", "gin").train.batch_size == 16
  assert real.get_real_config("ct") == importlib.import_module(
      "liverjax.configs.real.ct_to_mr").get_config()
  with pytest.raises(ValueError, match="unknown recipe"):
    real.get_real_config("ct", "nothing")


@pytest.mark.parametrize("source", ["ct", "mr"])
def test_real_augmix_recipes_keep_the_liver_on_its_side(source):
  # A left-right flip puts the liver on the patient's left; the real recipes turn flips off
  # (docs/results.md, "Real scans", left-right flips, 2026-11-27: MR -> CT 0.71 with flips,
  # 0.84 without).
  config = real.get_real_config(source, "domain_augmix")
  mask = jnp.zeros((32, 32, 32, 1)).at[:, 8:24, 2:12].set(1.0)  # liver on the image's left
  images = mask * 0.6 + 0.2
  is_t2 = jnp.ones((32,)) if source == "mr" else None

  def augmented_masks(augment_config):
    return jax.jit(lambda k: pipeline.augment_batch(k, images, mask, augment_config, source,
                                                    is_t2)[1])(jax.random.key(0))

  masks = augmented_masks(config.augment)
  cols = jnp.arange(32)[None, None, :, None]
  centre = (masks * cols).sum((1, 2, 3)) / jnp.maximum(masks.sum((1, 2, 3)), 1.0)
  assert float(centre.max()) < 16  # every slice's mask still on the left half
  config.augment.flip_prob = 0.5  # the default: about half the slices are flipped
  masks = augmented_masks(config.augment)
  centre = (masks * cols).sum((1, 2, 3)) / jnp.maximum(masks.sum((1, 2, 3)), 1.0)
  assert 4 <= int((centre > 16).sum()) <= 28


def test_cyclegan_real_preset_reads_the_real_scans_at_the_best_field_of_view():
  config = cyclegan.get_config("real")
  config_check.check(config)
  assert config.experiment == "cyclegan"
  assert config.data.ct.root == real.CT_ROOTS and config.data.mr.root == real.MR_ROOTS
  assert tuple(config.data.mr_sequences) == ("t2",)
  assert config.data.field_of_view == real.BEST_FIELD_OF_VIEW  # one pixel size for both
  assert config.data.image_size == 64
  assert config.cyclegan.generator == "unet"  # skips keep the anatomy in place
  assert config.cyclegan.steps <= cyclegan.get_config().cyclegan.steps


@pytest.mark.parametrize("source", ["ct", "mr"])
def test_uda_configs_are_the_best_recipe_plus_self_training_on_the_halved_target(source):
  target = "mr" if source == "ct" else "ct"
  uda = importlib.import_module(
      f"liverjax.configs.real.uda_{source}_to_{target}").get_config()
  best = real.get_best_config(source)
  assert uda.self_training.rounds == real.UDA_ROUNDS[source] >= 1
  assert uda.data[target].adapt_root == uda.data[target].root == best.data[target].root
  assert not uda.data[source].get("adapt_root")  # the source keeps its labels
  for section in ("model", "train", "eval"):
    assert uda[section] == best[section], section
  # The teacher trains as the best config; the student adds UDA_STUDENT's switches.
  changed = real.UDA_STUDENT[source].get("augment", {})
  assert {k: v for k, v in uda.augment.items() if k not in changed} == {
      k: v for k, v in best.augment.items() if k not in changed}
  for field in changed:  # e.g. gin_prob: a setting of a switch only the students turn on
    switch = field.split("_")[0]
    assert switch in uda.self_training.student_augment and not best.augment[switch], field
  student = experiment.student_config(uda)
  for name in uda.self_training.student_augment:
    assert student.augment[name] and not uda.augment[name], name
  # The owners' command: other test patients, every development scan adapts.
  uda.data[target].root = "/elsewhere"
  assert uda.data[target].adapt_root == best.data[target].root


def test_study_rows_share_the_field_of_view_of_the_cyclegan():
  for source in ("ct", "mr"):
    for row in list(real.STUDY_ROWS) + ["best", "uda"]:
      config = real.get_study_row_config(source, row)
      assert config.data.field_of_view == real.BEST_FIELD_OF_VIEW, row
      assert config.data.source == source
  assert real.get_study_row_config("ct", "cyclegan+augmix").augment.augmix
  with pytest.raises(ValueError, match="unknown study row"):
    real.get_study_row_config("ct", "nothing")
