"""CycleGAN quality figures: histogram distances, translation quality, the task score (and its
progress lines), sample grids."""
import logging

import numpy as np

from liverjax import progress
from liverjax.cyclegan import quality
from liverjax.data import preprocess


def test_wasserstein_and_intersection_known_values():
  p = np.zeros(10); p[2] = 1.0
  q = np.zeros(10); q[5] = 1.0
  assert quality.wasserstein_1d(p, p) == 0.0
  # Moving all mass 3 bins of width 1/10: 0.3 intensity units.
  np.testing.assert_allclose(quality.wasserstein_1d(p, q), 0.3)
  assert quality.histogram_intersection(p, p) == 1.0
  assert quality.histogram_intersection(p, q) == 0.0


def test_translation_quality_of_identity_and_of_a_perfect_restyle():
  rng = np.random.default_rng(0)
  a = rng.uniform(0.1, 0.5, (4, 8, 8, 1)).astype(np.float32)
  b = np.clip(a + 0.4, 0, 1).astype(np.float32)
  ident = lambda x: x
  q = quality.translation_quality(ident, ident, a, b, bins=64)
  assert q["cycle_l1"] == 0.0
  assert q["wasserstein"] == q["wasserstein_untranslated"] > 0.3
  restyle = lambda x: np.clip(x + 0.4, 0, 1)
  back = lambda x: np.clip(x - 0.4, 0, 1)
  q = quality.translation_quality(restyle, back, a, b, bins=64)
  assert q["wasserstein"] < 1e-9 and q["intersection"] > 0.999
  assert q["cycle_l1"] < 1e-6
  assert (q["slices"], q["target_slices"]) == (4, 4)


def test_sample_grid_rows_and_picked_slices_hold_liver():
  mask = np.zeros((5, 8, 8), np.uint8)
  mask[3, 2:6, 2:6] = 1
  image = np.arange(5 * 64, dtype=np.float32).reshape(5, 8, 8) / 320
  vol = preprocess.PreparedVolume(patient_id="1", modality="CT", sequence="ct", image=image,
                                  mask=mask, spacing=(1.0, 1.0, 1.0))
  picked, outline = quality.pick_sample_slices([vol], 1)
  np.testing.assert_array_equal(picked[0, ..., 0], image[3])  # the slice with liver
  np.testing.assert_array_equal(outline[0], mask[3])  # and its liver, for the outline
  grid = quality.sample_grid(lambda x: 1 - x, lambda x: 1 - x, picked, picked)
  assert grid.shape == (6, 1, 8, 8)
  np.testing.assert_allclose(grid[2], grid[0])  # F(G(ct)) == ct for these inverses
  assert quality.grid_image(grid).shape == (1, 48, 8, 1)


def test_task_score_compares_translated_and_untranslated_and_logs_progress(monkeypatch, caplog):
  """A segmenter that finds the liver only in bright images: the translation that brightens
  the liver scores 1, the untranslated (dark) source 0; a progress line per volume."""
  vols = []
  for i, pid in enumerate(("1", "2")):
    mask = np.zeros((3, 8, 8), np.uint8)
    mask[:, 2:5 + i, 2:6] = 1
    vols.append(preprocess.PreparedVolume(patient_id=pid, modality="CT", sequence="ct",
                                          image=0.3 * mask.astype(np.float32), mask=mask,
                                          spacing=(1.0, 1.0, 1.0)))
  brighten = lambda x: np.clip(2.0 * x, 0, 1)
  segment = lambda image: (image > 0.5).astype(np.uint8)
  monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.0)
  with caplog.at_level(logging.INFO):
    score = quality.task_score(brighten, segment, vols)
  assert (score["translated"], score["untranslated"], score["volumes"]) == (1.0, 0.0, 2)
  assert score["per_volume"] == {"1": [1.0, 0.0], "2": [1.0, 0.0]}
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scored ")]
  assert [line.split(",")[0] for line in lines] == [
      "scored 1/2 translated volumes (CT 1)", "scored 2/2 translated volumes (CT 2)"]
