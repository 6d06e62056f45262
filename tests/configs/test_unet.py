"""The experiment table (`liverjax/configs/unet.py`), the named config files, and `resolve`."""
import importlib
import pathlib

import pytest

from liverjax import configs
from liverjax.configs import default
from liverjax.configs import unet
from tests.conftest import REPO

NAMED = {"ct_to_ct": "ct_to_ct", "mri_to_mri": "mr_to_mr", "ct_to_mri": "ct_to_mr",
         "mri_to_ct": "mr_to_ct"}


@pytest.mark.parametrize("suffix", ["", "_augmix", "_domain", "_domain_augmix", "_cyclegan",
                                    "_cyclegan_augmix"])
def test_named_files_are_variants_of_the_table(suffix):
  for name, direction in NAMED.items():
    if name in ("ct_to_ct", "mri_to_mri") and suffix:
      continue
    module = importlib.import_module(f"liverjax.configs.{name}{suffix}")
    experiment = suffix[1:].replace("_", "+") or "baseline"
    assert module.get_config() == unet.get_config(f"{direction},{experiment}")


def test_experiments_switch_only_what_they_name():
  base = unet.get_config("ct_to_mr")
  assert (base.experiment, base.data.source, tuple(base.data.targets)) == (
      "segmentation", "ct", ("ct", "mr"))
  assert not (base.augment.domain or base.augment.augmix or base.translate.cyclegan_workdir)
  both = unet.get_config("mr_to_ct,cyclegan+augmix")
  assert both.data.source == "mr" and both.augment.augmix and not both.augment.domain
  assert both.translate.cyclegan_workdir == unet.CYCLEGAN_WORKDIR
  # Everything else is the default.
  for section in ("model", "train", "cyclegan", "eval"):
    assert both[section] == default.get_config()[section]
  with pytest.raises(ValueError, match="unknown experiment"):
    unet.get_config("ct_to_mr,nothing")
  with pytest.raises(ValueError, match="unknown direction"):
    unet.get_config("ct_to_pet")


def test_resolve_finds_installed_configs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert configs.resolve("mri_to_ct") == str(configs.DIRECTORY / "mri_to_ct.py")
  assert configs.resolve("unet.py:ct_to_mr,augmix") == (
      f"{configs.DIRECTORY / 'unet.py'}:ct_to_mr,augmix")
  assert configs.resolve("configs/study.py:full") == f"{configs.DIRECTORY / 'study.py'}:full"
  mine = tmp_path / "mine.py"
  mine.write_text("")
  assert configs.resolve(str(mine)) == str(mine)  # an existing file is kept
  assert configs.resolve("no_such_config") == "no_such_config"  # absl reports it
  assert configs.resolve_argv(["x", "--config", "mri_to_ct", "--config.seed=1"])[2] == str(
      configs.DIRECTORY / "mri_to_ct.py")


def test_repository_configs_folder_is_the_package():
  assert (REPO / "configs" / "mri_to_ct.py").resolve() == (
      configs.DIRECTORY / "mri_to_ct.py").resolve()
  assert pathlib.Path(default.__file__).parent == configs.DIRECTORY


def test_cyclegan_cpu_preset_is_smaller_than_the_default():
  from liverjax.configs import cyclegan  # pylint: disable=g-import-not-at-top
  full, cpu = cyclegan.get_config(), cyclegan.get_config("cpu")
  assert cpu.experiment == full.experiment == "cyclegan"
  assert cpu.cyclegan.generator_features < full.cyclegan.generator_features
  assert cpu.cyclegan.steps < full.cyclegan.steps
  assert cpu.data.image_size == 64
  with pytest.raises(ValueError, match="preset"):
    cyclegan.get_config("huge")
