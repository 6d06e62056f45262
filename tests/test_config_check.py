"""Tests for liverjax/config_check.py: every shipped config passes, each bad field is named."""
import importlib

import pytest

from liverjax import config_check
from liverjax import configs
from liverjax.configs import ConfigError
from liverjax.configs import cyclegan as cyclegan_configs
from liverjax.configs import default
from liverjax.configs import study as study_configs
from liverjax.configs import unet as unet_configs


def _shipped_configs():
  """Every config file of liverjax/configs (and its variants): name -> config."""
  out = {}
  for path in sorted(configs.DIRECTORY.rglob("*.py")):
    if path.name == "__init__.py" or path.name in ("unet.py", "study.py"):
      continue
    rel = path.relative_to(configs.DIRECTORY.parent.parent).with_suffix("")
    module = importlib.import_module(".".join(rel.parts))
    out[str(path.relative_to(configs.DIRECTORY))] = module.get_config()
  for direction in unet_configs.DIRECTIONS:
    for name in unet_configs.EXPERIMENTS:
      out[f"unet.py:{direction},{name}"] = unet_configs.get_config(f"{direction},{name}")
  for size in ("smoke", "full"):
    out[f"study.py:{size}"] = study_configs.get_config(size)
  out["cyclegan.py:cpu"] = cyclegan_configs.get_config("cpu")
  return out


def test_every_shipped_config_passes():
  shipped = _shipped_configs()
  assert len(shipped) > 20
  for name, config in shipped.items():
    config_check.check(config)  # raises, naming the field, if a default is rejected
    config_check.check_devices(config, 4)  # e.g. 4 GPUs


@pytest.mark.parametrize("field, value, message", [
    ("experiment", "gan", "config.experiment='gan': expected one of"),
    ("seed", -1, "config.seed=-1"),
    ("data.source", "pet", "config.data.source='pet'"),
    ("data.targets", ("ct", "ct"), "config.data.targets"),
    ("data.targets", (), "config.data.targets"),
    ("data.mr_sequences", ("t1",), "config.data.mr_sequences=('t1',)"),
    ("data.mr_sequences", ("ct",), "config.data.mr_sequences"),
    ("data.image_size", 100, "config.data.image_size=100: must be divisible by 2**model.depth"),
    ("data.image_size", 0, "config.data.image_size=0"),
    ("data.field_of_view", 0.0, "config.data.field_of_view=0.0: expected a number >= 1"),
    ("data.normalization", "minmax", "config.data.normalization"),
    ("data.ct_window", (40.0, -1.0), "config.data.ct_window"),
    ("data.mr_percentiles", (99.0, 1.0), "config.data.mr_percentiles"),
    ("data.split", (0.0, 0.5, 0.5), "config.data.split=(0.0, 0.5, 0.5)"),
    ("data.split", (0.5, -0.5, 0.5), "config.data.split"),
    ("data.split", (1.0, 0.0), "config.data.split"),
    ("data.synthetic.ct", 0, "config.data.synthetic.ct=0"),
    ("model.depth", 0, "config.model.depth=0"),
    ("model.norm", "layer", "config.model.norm"),
    ("model.dtype", "float16", "config.model.dtype"),
    ("train.batch_size", 0, "config.train.batch_size=0: expected an integer >= 1"),
    ("train.steps", 0, "config.train.steps=0"),
    ("train.learning_rate", -1e-3, "config.train.learning_rate=-0.001: expected a number > 0"),
    ("train.learning_rate", float("nan"), "config.train.learning_rate=nan"),
    ("train.schedule", "linear", "config.train.schedule"),
    ("train.warmup_steps", 1000, "config.train.warmup_steps=1000: longer than train.steps"),
    ("train.eval_every", 0, "config.train.eval_every=0"),
    ("train.ema_decay", 1.0, "config.train.ema_decay=1.0: expected a number >= 0 and < 1"),
    ("augment.domain_prob", 1.5, "config.augment.domain_prob=1.5"),
    ("augment.augmix_depth", (3, 1), "config.augment.augmix_depth"),
    ("augment.augmix_severity", 11, "config.augment.augmix_severity=11"),
    ("translate.mix", -0.1, "config.translate.mix"),
    ("self_training.student_steps", -1, "config.self_training.student_steps=-1: expected an "
                                        "integer >= 0"),
    ("self_training.student_augment", ("ipa",), "config.self_training.student_augment=('ipa',): "
                                                "expected a tuple of distinct names from"),
    ("self_training.student_augment", ("gin", "gin"),
     "config.self_training.student_augment=('gin', 'gin'): expected a tuple of distinct"),
    ("self_training.ignore_margin_mm", -5.0, "config.self_training.ignore_margin_mm=-5.0"),
    ("self_training.ignore_below_mm", -1.0, "config.self_training.ignore_below_mm=-1.0"),
    ("self_training.teachers", 0, "config.self_training.teachers=0"),
    ("self_training.teacher", ("a", 3), "config.self_training.teacher=('a', 3): must be a path"),
    ("eval.batch_size", 0, "config.eval.batch_size=0"),
    ("eval.intensity", "zscore", "config.eval.intensity='zscore': expected one of"),
    ("eval.intensity_gamma", 0.0, "config.eval.intensity_gamma=0.0: expected a number > 0"),
    ("eval.intensity_gamma", 0.5, "config.eval.intensity_gamma=0.5: applies after histogram "
                                  "matching"),
])
def test_a_bad_field_is_named(field, value, message):
  config = default.get_config()
  section, _, name = field.rpartition(".")
  node = config
  for part in section.split(".") if section else []:
    node = node[part]
  node[name] = value
  with pytest.raises(ConfigError) as e:
    config_check.check(config)
  assert str(e.value).startswith(message), str(e.value)
  assert e.value.field.split(".")[0] == field.split(".")[0]


def test_teachers_count_every_named_teacher():
  config = default.get_config()
  config.self_training.teacher = ("a/ckpt", "b/ckpt")
  with pytest.raises(ConfigError, match="self_training.teachers=1: counts every teacher"):
    config_check.check(config)
  config.self_training.teachers = 3  # two named, one trained by the run
  config_check.check(config)
  config.self_training.teacher = "a/ckpt"
  config_check.check(config)


def test_all_loss_weights_zero_is_rejected():
  config = default.get_config()
  config.train.update(dice_weight=0.0, bce_weight=0.0, jaccard_weight=0.0)
  with pytest.raises(ConfigError, match="loss weights"):
    config_check.check(config)


def test_cyclegan_fields_are_checked_for_cyclegan_runs_and_studies():
  config = default.get_config()
  config.cyclegan.batch_size = 0
  config_check.check(config)  # a U-Net run does not use them
  config.experiment = "cyclegan"
  with pytest.raises(ConfigError, match=r"^config.cyclegan.batch_size=0"):
    config_check.check(config)
  config = default.get_config()
  config.experiment = "cyclegan"
  config.data.image_size = 18
  with pytest.raises(ConfigError, match=r"^config.data.image_size=18: must be divisible by 4"):
    config_check.check(config)
  config.data.image_size = 16
  with pytest.raises(ConfigError, match="too small for a PatchGAN"):
    config_check.check(config)  # 16 px: 8, 4, 2 after 3 stride-2 layers, then -2 = 0
  assert config_check.discriminator_output_size(64, 3) == 6


def test_study_fields_are_checked():
  config = study_configs.get_config("smoke")
  config.study.experiments = ("baseline", "mixup")
  with pytest.raises(ConfigError, match=r"^config.study.experiments"):
    config_check.check(config)
  config = study_configs.get_config("smoke")
  config.study.protocol = "t1"
  with pytest.raises(ConfigError, match=r"^config.study.protocol='t1'"):
    config_check.check(config)


def test_batch_sizes_must_divide_over_the_devices():
  config = default.get_config()
  config.train.batch_size = 12
  config_check.check_devices(config, 4)
  with pytest.raises(ConfigError, match=r"^config.train.batch_size=12: must be divisible by "
                                        r"the number of devices \(8\); e.g. 8"):
    config_check.check_devices(config, 8)


def test_shipped_configs_cover_every_file():
  names = {n.split(":")[0] for n in _shipped_configs()}
  files = {str(p.relative_to(configs.DIRECTORY)) for p in configs.DIRECTORY.rglob("*.py")
           if p.name != "__init__.py"}
  assert files == names, files ^ names
