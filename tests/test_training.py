"""Tests for liverjax/training.py's resume: metrics.jsonl never holds a step twice; a config
that trains differently from the checkpoint's is refused before anything is restored."""
import json

import jax
import numpy as np
import pytest

from liverjax import checkpointing
from liverjax import configs
from liverjax import metric_writer
from liverjax import training


def _write(workdir, records):
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_resume_without_a_checkpoint_starts_the_metrics_afresh(tmp_path):
  # What a run killed before its first checkpoint leaves behind.
  _write(tmp_path, [{"step": 1, "split": "train", "total": 1.0},
                    {"step": 2, "split": "train", "total": 0.9}])
  manager = checkpointing.create_manager(tmp_path)
  state, step = training.resume(manager, tmp_path, abstract=None)
  assert (state, step) == (None, 0)
  assert metric_writer.read_scalars(tmp_path) == []


# ----------------------------------------------------------------------------- resume with
# another config (#26): compared with the checkpoint's saved config before restoring


def _config():
  from liverjax.configs import default  # pylint: disable=g-import-not-at-top
  return default.get_config()


def _saved_with(tmp_path, config):
  """A workdir whose checkpoint at step 10 (a tiny state) was saved with `config`."""
  manager = checkpointing.create_manager(tmp_path, best_metric=None)
  checkpointing.save(manager, 10, {"w": np.arange(3, dtype=np.float32)}, config.to_dict())
  return manager


def _abstract():
  return {"w": jax.ShapeDtypeStruct((3,), np.float32)}


@pytest.mark.parametrize("field,value", [("data.image_size", 32),
                                         ("model.base_features", 8),
                                         ("train.learning_rate", 0.1),
                                         ("data.ct.root", "/elsewhere")])
def test_a_field_that_changes_the_model_or_data_refuses_to_resume(tmp_path, field, value):
  manager = _saved_with(tmp_path, _config())
  config = _config()
  section, name = field.rsplit(".", 1)
  target = config
  for part in section.split("."):
    target = target[part]
  old = target[name]
  target[name] = value
  with pytest.raises(configs.ConfigError, match=rf"^config.{field}=") as err:
    training.resume(manager, tmp_path, _abstract(), config)
  message = str(err.value)
  assert "\n" not in message and repr(old) in message
  assert str(tmp_path / "checkpoints" / "10") in message


def test_every_differing_field_is_named_in_the_one_line(tmp_path):
  manager = _saved_with(tmp_path, _config())
  config = _config()
  config.data.image_size, config.model.base_features = 32, 8
  with pytest.raises(configs.ConfigError) as err:
    training.resume(manager, tmp_path, _abstract(), config)
  assert "data.image_size" in str(err.value) and "model.base_features (16 -> 8)" in str(
      err.value)


def test_steps_logging_and_evaluation_fields_may_change_on_resume(tmp_path):
  manager = _saved_with(tmp_path, _config())
  config = _config()
  config.train.steps, config.train.log_every, config.data.cache_dir = 900, 7, "/tmp/other"
  config.eval.adapt_bn, config.eval.batch_size = "volume", 4  # evaluation, after training
  config.cyclegan.generator_features = 8  # another experiment's section
  state, step = training.resume(manager, tmp_path, _abstract(), config)
  assert step == 10
  np.testing.assert_array_equal(np.asarray(state["w"]), np.arange(3))


def test_self_training_fields_count_only_where_the_checkpoint_self_trained(tmp_path):
  """The teacher (self_training.rounds 0, `<workdir>/teacher`) resumes whatever the students'
  settings; a student's own workdir refuses another confidence (other pseudo-labels)."""
  teacher = _config()
  manager = _saved_with(tmp_path / "teacher", teacher)
  teacher.self_training.confidence = 0.7
  training.resume(manager, tmp_path / "teacher", _abstract(), teacher)
  student = _config()
  student.self_training.rounds = 2
  manager = _saved_with(tmp_path / "student", student)
  student.self_training.confidence = 0.7
  with pytest.raises(configs.ConfigError, match="self_training.confidence"):
    training.resume(manager, tmp_path / "student", _abstract(), student)


def test_a_plain_run_is_not_resumed_as_a_self_training_student(tmp_path):
  """The last student trains in the workdir itself: a plain run's checkpoint there would be
  taken for the finished student (its step is train.steps) and nothing would self-train."""
  manager = _saved_with(tmp_path, _config())
  student = _config()
  student.self_training.rounds = 2
  with pytest.raises(configs.ConfigError, match=r"^config.self_training.rounds=2: .*\b0\b"):
    training.resume(manager, tmp_path, _abstract(), student)
  fresh = checkpointing.create_manager(tmp_path / "round1")  # a fresh student: no checkpoint
  assert training.resume(fresh, tmp_path / "round1", _abstract(), student) == (None, 0)


def test_a_cyclegan_run_compares_its_own_section(tmp_path):
  config = _config()
  config.experiment = "cyclegan"
  manager = _saved_with(tmp_path, config)
  config.model.base_features = 8  # the U-Net's: not this run's
  config.cyclegan.steps = 9000
  training.resume(manager, tmp_path, _abstract(), config)
  config.cyclegan.generator_features = 8
  with pytest.raises(configs.ConfigError, match="cyclegan.generator_features"):
    training.resume(manager, tmp_path, _abstract(), config)


def test_fields_added_since_the_checkpoint_compare_with_their_defaults(tmp_path):
  config = _config()
  saved = config.to_dict()
  del saved["data"]["field_of_view"], saved["train"]["ema_decay"]
  training.check_resume_config(config, saved, "old")
  config.data.field_of_view = 320.0
  with pytest.raises(configs.ConfigError, match="data.field_of_view"):
    training.check_resume_config(config, saved, "old")
