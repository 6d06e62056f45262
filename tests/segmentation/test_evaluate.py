"""Per-volume evaluation: perfect and empty predictors, summaries, figure examples."""
import jax.numpy as jnp
import numpy as np

from liverjax import runtime
from liverjax.data import preprocess
from liverjax.segmentation import evaluate
from liverjax.segmentation import losses


def _volume(pid="1", sequence="ct", z=6, size=16, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.zeros((z, size, size), np.uint8)
  mask[1:5, 4:11, 3:12] = 1  # liver on slices 1..4 only
  image = np.clip(rng.normal(0.3, 0.05, mask.shape) + 0.4 * mask, 0, 1).astype(np.float32)
  return preprocess.PreparedVolume(patient_id=pid, modality="CT" if sequence == "ct" else "MR",
                                   sequence=sequence, image=image, mask=mask,
                                   spacing=(2.0, 0.8, 0.8))


def _oracle(offset):
  """A predictor that returns the true mask (offset=+20) or nothing (offset=-20)."""
  def predict(state, images, masks):
    del state, images
    logits = jnp.where(masks > 0, 20.0, -20.0) if offset > 0 else jnp.full_like(masks, -20.0)
    return (logits > 0).astype(jnp.uint8), losses.loss_sums(logits, masks)
  return predict


def test_perfect_prediction_scores_perfectly():
  mesh = runtime.create_mesh()
  vols = [_volume("1"), _volume("2", seed=1)]
  results = evaluate.evaluate_volumes(_oracle(+1), None, vols, mesh=mesh, batch_size=4,
                                      keep_predictions=True)
  assert len(results) == 2
  for r, v in zip(results, vols):
    assert r["slices"] == 6
    assert r["dice"] == 1.0
    assert r["dice_loss"] < 1e-3 and r["jaccard_loss"] < 1e-3 and r["bce"] < 1e-6
    assert r["ravd"] == 0.0 and r["assd"] == 0.0 and r["mssd"] == 0.0
    np.testing.assert_array_equal(r["prediction"], v.mask)  # slice order kept


def test_empty_prediction_scores_zero():
  mesh = runtime.create_mesh()
  (r,) = evaluate.evaluate_volumes(_oracle(-1), None, [_volume()], mesh=mesh, batch_size=8)
  assert r["dice"] == 0.0
  assert r["ravd"] == 100.0
  assert r["dice_loss"] > 0.99


def test_summarize_counts_and_means():
  rs = [dict(patient_id="1", slices=5, dice=0.5, bce=0.1, dice_loss=0.5, jaccard_loss=0.6,
             total=1.2),
        dict(patient_id="1", slices=5, dice=0.7, bce=0.3, dice_loss=0.3, jaccard_loss=0.4,
             total=1.0),
        dict(patient_id="2", slices=7, dice=0.9, bce=0.2, dice_loss=0.1, jaccard_loss=0.2,
             total=0.5)]
  s = evaluate.summarize(rs)
  assert (s["volumes"], s["patients"], s["slices"]) == (3, 2, 17)
  np.testing.assert_allclose(s["dice"]["mean"], 0.7)
  np.testing.assert_allclose(s["dice"]["std"], np.std([0.5, 0.7, 0.9]))
  assert "assd" not in s


def test_examples_show_the_slices_with_most_liver():
  v = _volume()
  r = {"prediction": v.mask}
  rows = evaluate._pick_examples([(v, r)], 2, "ct")  # pylint: disable=protected-access
  assert len(rows) == 2
  for row in rows:
    assert row["mask"].sum() == 63  # a full liver slice, never an empty one
