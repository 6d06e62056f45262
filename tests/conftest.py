"""Test set-up: 8 simulated CPU devices (so sharding is exercised), shared paths."""
import os
import pathlib

# Must happen before JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CT_SAMPLE = SHARED_DATA / "chaos_ct_sample"


@pytest.fixture
def ct_sample_root():
  """The real CHAOS CT patient in ../shared/data, or a skip where it is absent."""
  if not (CT_SAMPLE / "Train_Sets" / "CT").is_dir():
    pytest.skip(f"real CHAOS sample not found at {CT_SAMPLE}")
  return CT_SAMPLE
