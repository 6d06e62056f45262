"""Test set-up: 8 simulated CPU devices (so sharding is exercised), shared paths."""
import os
import pathlib

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tempfile  # noqa: E402

import pytest  # noqa: E402

from liverjax import runtime  # noqa: E402

# Many tests compile the same tiny programs (U-Net steps, augmentation): a
# persistent compilation cache for the whole run turns repeats into cache hits. Under
# pytest-xdist (`-n 2`) the workers of one run share it (one program compiled once), and so
# do the entry points the tests start as subprocesses (they inherit
# LIVERJAX_COMPILATION_CACHE); the user's own cache is never touched.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
_CACHE = (os.path.join(tempfile.gettempdir(), f"liverjax-jax-cache-{_RUN}") if _RUN
          else tempfile.mkdtemp(prefix="liverjax-jax-cache-"))
os.environ[runtime.COMPILATION_CACHE_ENV] = _CACHE
runtime.setup_compilation_cache()

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CT_SAMPLE = SHARED_DATA / "chaos_ct_sample"


@pytest.fixture
def ct_sample_root():
  """The real CHAOS CT patient in ../shared/data, or a skip where it is absent."""
  if not (CT_SAMPLE / "Train_Sets" / "CT").is_dir():
    pytest.skip(f"real CHAOS sample not found at {CT_SAMPLE}")
  return CT_SAMPLE


def make_tiny_config(tmp_path, **overrides):
  """The default config shrunk for tests: synthetic 3 CT + 3 MR patients at 32 px,
  a depth-2 U-Net with 4 base channels, batch 8, a handful of steps."""
  from liverjax.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.data.cache_dir = str(tmp_path / "cache")
  config.data.synthetic.ct = 3
  config.data.synthetic.mr = 3
  config.data.synthetic.size = 32
  config.data.synthetic.slices = 8
  config.data.image_size = 32
  config.data.split = (0.34, 0.33, 0.33)
  config.model.depth = 2
  config.model.base_features = 4
  config.train.batch_size = 8
  config.train.steps = 6
  config.train.log_every = 2
  config.train.eval_every = 3
  config.eval.batch_size = 8
  config.eval.figure_slices = 2
  for key, value in overrides.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


@pytest.fixture
def tiny_config(tmp_path):
  return make_tiny_config(tmp_path)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: a test of half a minute or more (end-to-end runs); run first")
  # `-n 2` (pytest-xdist) without a --dist choice: hand out whole files (a module's fixtures
  # and compiled programs stay in one worker), in collection order, so the files holding
  # the slow tests (sorted first below) start at once on both workers instead of one
  # worker finishing a long test alone at the end.
  if getattr(config.option, "dist", "no") == "load":
    config.option.dist = "loadfile"
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  """The slow tests first (stable otherwise)."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)
