"""Tests for liverjax/predict/__init__.py: the Python API, and no flags defined at import."""
import subprocess
import sys

from liverjax import predict
from liverjax.predict import checks
from liverjax.predict import errors
from liverjax.predict import model
from liverjax.predict import outputs
from liverjax.predict import run
from liverjax.predict import scans
from tests.conftest import REPO


def test_the_api_is_importable_from_the_package():
  """`from liverjax import predict` then `predict.load_model`, ...: the names callers use, the
  same objects as in the modules that define them."""
  homes = {errors: ["PredictError"],
           model: ["BACKGROUND_LOGIT", "Model", "adapts_batch_norm", "config_from_saved",
                   "load_model", "matches_histogram", "predict_logits", "predict_volume",
                   "prepare", "prepare_input"],
           scans: ["Scan", "ScanRef", "find_scans", "read_scan"],
           outputs: ["field_of_view_edge_problem", "liver_ml", "native_mask", "write_outputs"],
           checks: ["plausibility_problems"],
           run: ["failures", "predict_paths"]}
  for module, names in homes.items():
    for name in names:
      assert getattr(predict, name) is getattr(module, name), (module.__name__, name)
  assert sorted(predict.__all__) == sorted(n for names in homes.values() for n in names)


def test_importing_the_command_line_defines_no_flags():
  """The flags are defined only when run as a program: `liverjax.predict.__main__` imports
  next to `liverjax.main` (whose --workdir a second definition would clash with)."""
  code = ("from absl import flags\nimport liverjax.predict.__main__\nimport liverjax.main\n"
          "assert 'input' not in flags.FLAGS and 'checkpoint' not in flags.FLAGS\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
