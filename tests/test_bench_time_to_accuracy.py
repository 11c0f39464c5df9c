"""benchmarks/bench_time_to_accuracy.py: the two sides race epoch by epoch on the same recipe."""

from __future__ import annotations

import json
import os
import statistics
import sys

import pytest
from test_fast_recipe import recipe

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

import bench_time_to_accuracy as bench  # noqa: E402


def _race(cfg, target, **kwargs):
    turns = []
    results = bench.race(cfg, target, log=lambda msg: turns.append(msg.split()[0]), **kwargs)
    return results, turns


def test_sides_take_turns_abba_and_count_only_their_own_epochs(fashion_dir, torch32):
    cfg = recipe(fashion_dir)
    results, turns = _race(cfg, 1.01)  # out of reach: every epoch of the config runs
    epochs = cfg["train"]["epochs"]
    assert turns == ["nnparts", "torch", "torch", "nnparts", "nnparts", "torch"][: 2 * epochs]
    for res in results.values():
        assert res["epochs"] == epochs and not res["reached"]
        assert len(res["epoch_seconds"]) == epochs
        assert res["seconds"] == pytest.approx(sum(res["epoch_seconds"]))
        later = res["epoch_seconds"][1:]  # the first epoch also loads the data
        assert res["median_epoch_seconds"] == pytest.approx(statistics.median(later))
    # the same recipe from the same weights, batches and augmentation: the two trajectories
    # agree to training noise (a coarse check: a twin scored on other data or labels, or one
    # that does not learn, lands far off; a milder bias lr within these 45 steps does not)
    ours, theirs = results["nnparts"]["val_accuracy"], results["torch"]["val_accuracy"]
    assert ours[-1] > 0.45 and theirs[-1] > 0.45, (ours, theirs)  # chance: 0.10
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 0.1, (ours, theirs)


def test_a_side_that_reaches_the_target_drops_out_and_sequential_runs_one_then_the_other(
    fashion_dir, torch32
):
    cfg = recipe(fashion_dir)
    results, turns = _race(cfg, 0.0)  # the first epoch reaches it
    assert turns == ["nnparts", "torch"]
    assert all(r["epochs"] == 1 and r["reached"] for r in results.values())
    assert all(r["median_epoch_seconds"] == r["seconds"] for r in results.values())

    cfg["train"]["epochs"] = 2
    _, turns = _race(cfg, 1.01, interleave=False, torch_first=True)
    assert turns == ["torch", "torch", "nnparts", "nnparts"]


def test_command_line_runs_one_race_per_seed_and_writes_the_medians(
    fashion_dir, torch32, tmp_path, capsys
):
    from nnparts.train import config as configs

    cfg = recipe(fashion_dir)
    cfg["train"]["epochs"] = 1
    path = tmp_path / "small.yaml"
    path.write_text(configs.dump(cfg))
    out = tmp_path / "tta.json"
    runs = bench.main(["--config", str(path), "--seeds", "0", "3", "--target", "0.0"])
    assert [r["seed"] for r in runs] == [0, 3]
    # another seed: another data split, start and batch order, so other accuracies
    torch_accs = [r["results"]["torch"]["val_accuracy"] for r in runs]
    assert torch_accs[0] != torch_accs[1]
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ")
    assert "over 2 seed(s): ratio nnparts/pytorch median" in printed
    bench.main(["--config", str(path), "--seeds", "1", "--target", "0.0", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["interleaved"] is True and len(data["runs"]) == 1
    ratio = data["runs"][0]["ratio"]
    assert data["median_ratio"] == ratio and data["ratio_range"] == [ratio, ratio]
    res = data["runs"][0]["results"]["nnparts"]
    assert ratio == pytest.approx(res["seconds"] / data["runs"][0]["results"]["torch"]["seconds"])
    with pytest.raises(SystemExit, match="model.name 'fast'"):
        cfg["model"]["name"] = "cnn"
        path.write_text(configs.dump(cfg))
        bench.main(["--config", str(path)])
