"""Recipes compared over seeds: known answers from small metrics.json files."""
import json
import math

import pytest

from liverjax.reporting import compare


def _run_dir(root, name, dice: dict, modality="MR", seed=None, source_val=0.9, assd=None):
  """A finished run's workdir: metrics.json with one volume per patient id in `dice`."""
  workdir = root / name
  workdir.mkdir(parents=True)
  checkpoint = workdir / "checkpoints" / "10"
  if seed is not None:
    (checkpoint / "config").mkdir(parents=True)
    (checkpoint / "config" / "metadata").write_text(json.dumps({"seed": seed}))
  volumes = [{"patient_id": p, "modality": modality, "sequence": "t2" if modality == "MR" else "ct",
              "dice": d, "ravd": -10.0 * d, "assd": (assd or {}).get(p, 1.0)}
             for p, d in dice.items()]
  (workdir / "metrics.json").write_text(json.dumps(
      {"checkpoint": str(checkpoint), "source_val_dice": source_val, "volumes": volumes}))
  return workdir


def _arm(root, prefix, per_seed: list[dict], **kw):
  return [compare.load_run(f"{prefix}{s}", [_run_dir(root, f"{prefix}{s}", d, seed=s, **kw)])
          for s, d in enumerate(per_seed)]


def test_means_paired_differences_and_per_volume_means(tmp_path):
  a = _arm(tmp_path, "a", [{"p1": 0.8, "p2": 0.6}, {"p1": 0.7, "p2": 0.5},
                           {"p1": 0.9, "p2": 0.7}])
  b = _arm(tmp_path, "b", [{"p1": 0.9, "p2": 0.6}, {"p1": 0.6, "p2": 0.5},
                           {"p1": 0.9, "p2": 0.9}], source_val=0.8)
  r = compare.compare([("a", a), ("b", b)], "MR", exclude=("p2",))
  arm_a, arm_b = r["arms"]
  assert [x["mean"] for x in arm_a["runs"]] == pytest.approx([0.7, 0.6, 0.8])
  assert arm_a["mean"] == pytest.approx(0.7)
  assert arm_a["std"] == pytest.approx(math.sqrt(((0.0) ** 2 + 0.1 ** 2 + 0.1 ** 2) / 3))
  assert arm_a["without"] == pytest.approx(0.8)  # p1 alone
  assert arm_b["paired"] == pytest.approx([0.05, -0.05, 0.1])
  assert (arm_b["ahead"], arm_b["n_paired"]) == (2, 3)
  tie = _arm(tmp_path, "tie", [{"p1": 0.8002, "p2": 0.6}])  # +0.0001 on a's first run
  assert compare.compare([("a", a[:1]), ("tie", tie)], "MR")["arms"][1]["ahead"] == 0
  assert arm_b["per_volume"] == pytest.approx([0.8, 2.0 / 3])
  assert arm_b["source_val"] == pytest.approx(0.8)
  assert r["volumes"] == ["MR p1 t2", "MR p2 t2"]
  md = compare.render_markdown(r)
  assert "| b | 3 (0, 1, 2) | 0.750 / 0.550 / 0.900 | 0.733 ± 0.143 | 0.800 | 0.800 | " \
         "+0.033 (+0.050 / -0.050 / +0.100) | 2 of 3 |" in md
  assert "| MR p2 t2 | 0.600 | 0.667 |" in md
  typo = compare.render_markdown(compare.compare([("a", a)], "MR", exclude=("p9",)))
  assert "- --exclude p9: no test volume of that patient" in typo


def test_a_lower_is_better_metric_counts_the_lower_arm_as_better(tmp_path):
  a = _arm(tmp_path, "a", [{"p1": 0.8}], assd={"p1": 4.0})
  b = _arm(tmp_path, "b", [{"p1": 0.7}], assd={"p1": 2.0})
  r = compare.compare([("a", a), ("b", b)], "MR", metric="assd")
  assert r["arms"][1]["paired"] == pytest.approx([-2.0]) and r["arms"][1]["ahead"] == 1
  ravd = compare.compare([("a", a), ("b", b)], "MR", metric="ravd")
  assert ravd["arms"][0]["mean"] == pytest.approx(8.0)  # |-8|: the size of the volume error
  # An empty prediction's infinite distance is shown, not averaged away.
  c = _arm(tmp_path, "c", [{"p1": 0.0, "p2": 0.8}], assd={"p1": float("inf"), "p2": 1.0})
  assert compare.compare([("c", c)], "MR", metric="assd")["arms"][0]["mean"] == float("inf")


def test_folds_pool_into_one_run_and_a_volume_scored_twice_is_named(tmp_path):
  f0 = _run_dir(tmp_path, "f0", {"p1": 0.8}, seed=1, source_val=0.9)
  f1 = _run_dir(tmp_path, "f1", {"p2": 0.6}, seed=1, source_val=0.7)
  run = compare.load_run("folds", [f0, f1])
  assert sorted(k[1] for k in run.volumes) == ["p1", "p2"]
  assert run.seed == 1 and run.source_val == pytest.approx(0.8)
  twice = _run_dir(tmp_path, "f2", {"p2": 0.5})
  with pytest.raises(compare.CompareError, match=r"f2: MR p2 t2 is also scored"):
    compare.load_run("folds", [f0, f1, twice])
  with pytest.raises(compare.CompareError, match=r"nothing: no metrics.json"):
    compare.load_run("x", [tmp_path / "nothing"])
  for name, text in [("cut", '{"volumes": [{"modality": "MR"'), ("old", '{"volumes": [{}]}'),
                     ("list", "[]")]:
    (tmp_path / name).mkdir()
    (tmp_path / name / "metrics.json").write_text(text)
    with pytest.raises(compare.CompareError, match=rf"{name}/metrics.json: not a liverjax metrics"):
      compare.load_run(name, [tmp_path / name])


def test_volumes_some_run_lacks_are_left_out_and_listed(tmp_path):
  a = _arm(tmp_path, "a", [{"p1": 0.8, "p2": 0.2}, {"p1": 0.6, "p2": 0.4}])
  b = _arm(tmp_path, "b", [{"p1": 0.9}, {"p1": 0.7, "p2": 0.5}])
  r = compare.compare([("a", a), ("b", b)], "MR")
  assert r["volumes"] == ["MR p1 t2"]
  assert r["left_out"] == {"MR p2 t2": [["b", 1]]}
  assert r["arms"][0]["mean"] == pytest.approx(0.7)
  assert "left out, not scored by every run: MR p2 t2 (not in b run 1)" in \
      compare.render_markdown(r)
  # Volumes lacked by the same runs are listed together.
  c = _arm(tmp_path, "c", [{"p1": 0.5, "p2": 0.5, "p3": 0.5}, {"p1": 0.5}])
  md = compare.render_markdown(compare.compare([("a", a), ("c", c)], "MR"))
  assert "left out, not scored by every run: MR p2 t2 (not in c run 2)" in md
  assert "left out, not scored by every run: MR p3 t2 (not in a run 1, 2; c run 2)" in md


def test_an_unreadable_run_keeps_its_position_and_shortens_its_arm(tmp_path):
  a = _arm(tmp_path, "a", [{"p1": 0.5}, {"p1": 0.6}, {"p1": 0.7}])
  b = _arm(tmp_path, "b", [{"p1": 0.6}, {"p1": 0.1}, {"p1": 0.9}])
  b[1] = compare.CompareError("b1: no metrics.json")
  r = compare.compare([("a", a), ("b", b)], "MR")
  assert r["arms"][1]["paired"] == pytest.approx([0.1, 0.2])  # runs 1 and 3
  assert r["arms"][1]["mean"] == pytest.approx(0.75)
  md = compare.render_markdown(r)
  assert "| b | 2 of 3 (0, 2) | 0.600 / — / 0.900 |" in md
  assert "- b, run 2: not read (b1: no metrics.json)" in md


def test_mismatched_seeds_are_noted_and_nothing_comparable_is_an_error(tmp_path):
  a = [compare.load_run("a", [_run_dir(tmp_path, "a", {"p1": 0.5}, seed=0)])]
  b = [compare.load_run("b", [_run_dir(tmp_path, "b", {"p1": 0.6}, seed=3)])]
  assert "run positions 1 pair different seeds" in compare.render_markdown(
      compare.compare([("a", a), ("b", b)], "MR"))
  with pytest.raises(compare.CompareError, match="no CT test volume"):
    compare.compare([("a", a)], "CT")
  with pytest.raises(compare.CompareError, match="no run could be read"):
    compare.compare([("a", [compare.CompareError("gone")])], "MR")


def test_plot_per_volume_writes_a_png(tmp_path):
  a = _arm(tmp_path, "a", [{"p1": 0.5, "p2": 0.4}, {"p1": 0.6, "p2": 0.3}])
  path = tmp_path / "compare.png"
  compare.plot_per_volume(compare.compare([("a", a)], "MR"), path)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
