"""Ensembles: bootstrap sampling, combination rules, the snapshot schedule, training members."""

import json
import math

import numpy as np
import pytest

from nnparts.train import config as configs
from nnparts.train.ensemble import (
    CyclicCosine,
    bootstrap_indices,
    combine,
    load_manifest,
    train_ensemble,
)


def test_bootstrap_draws_with_replacement():
    rng = np.random.default_rng(0)
    idx = bootstrap_indices(10_000, rng)
    assert idx.shape == (10_000,) and idx.min() >= 0 and idx.max() < 10_000
    unique = len(np.unique(idx)) / 10_000
    assert unique == pytest.approx(1 - math.exp(-1), abs=0.01)  # about 63.2% distinct
    assert not np.array_equal(idx, bootstrap_indices(10_000, rng))  # each draw differs
    with pytest.raises(ValueError, match="n >= 1"):
        bootstrap_indices(0, rng)


def test_combine_by_mean_probability_hand_computed():
    # two members, two samples, three classes
    probs = np.array(
        [
            [[0.6, 0.3, 0.1], [0.1, 0.5, 0.4]],
            [[0.1, 0.8, 0.1], [0.1, 0.4, 0.5]],
        ]
    )
    # sample 0: mean (0.35, 0.55, 0.1) -> 1; sample 1: mean (0.1, 0.45, 0.45) -> tie, argmax first
    np.testing.assert_array_equal(combine(probs, "mean"), [1, 1])


def test_combine_by_majority_vote_hand_computed():
    probs = np.array(
        [
            [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]],
            [[0.4, 0.6, 0.0], [0.2, 0.1, 0.7]],
            [[0.45, 0.55, 0.0], [0.2, 0.1, 0.7]],
        ]
    )
    # sample 0: votes 0,1,1 -> 1 (although the mean probability favours 0: 0.583 vs 0.417)
    assert combine(probs, "mean")[0] == 0
    # sample 1: votes 1,2,2 -> 2
    np.testing.assert_array_equal(combine(probs, "vote"), [1, 2])
    # a tie of votes goes to the tied class with the larger mean probability
    tie = np.array([[[0.9, 0.1]], [[0.4, 0.6]]])
    assert combine(tie, "vote")[0] == 0
    with pytest.raises(ValueError, match="allowed: mean, vote"):
        combine(probs, "median")
    with pytest.raises(ValueError, match="members, samples, classes"):
        combine(probs[0], "mean")


def test_cyclic_cosine_restarts_each_cycle():
    sched = CyclicCosine(0.1, total_steps=30, cycles=3)
    lrs = [sched.lr_at(s) for s in range(30)]
    assert lrs[0] == lrs[10] == lrs[20] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.05)
    assert lrs[9] < 0.01 and all(np.diff(lrs[:10]) < 0)
    with pytest.raises(ValueError, match="cycles"):
        CyclicCosine(0.1, total_steps=2, cycles=3)


@pytest.fixture
def tiny_cfg(fashion_dir):
    return configs.resolve(
        {
            "data": {"train_subset": 600, "val_size": 100, "test_subset": 300},
            "model": {"hidden": [32], "dropout": 0.0},
            "train": {"epochs": 2, "batch_size": 50},
            "optimizer": {"lr": 0.003},
        }
    )


@pytest.mark.parametrize("method", ["bagging", "seeds", "snapshot"])
def test_members_differ_and_metrics_are_consistent(tiny_cfg, tmp_path, method):
    metrics = train_ensemble(tiny_cfg, 3, method, out=str(tmp_path), quiet=True, progress=False)
    accs = [m["test_accuracy"] for m in metrics["members"]]
    assert len(accs) == 3
    assert metrics["member_test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert metrics["member_test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert 0.3 < metrics["ensemble"]["test_accuracy_mean_prob"] <= 1.0
    manifest, paths = load_manifest(str(tmp_path))
    assert manifest["method"] == method and len(paths) == 3
    weights = [dict(np.load(p, allow_pickle=False)) for p in paths]
    key = next(k for k in weights[0] if k.endswith("weight"))
    assert not np.array_equal(weights[0][key], weights[1][key])  # members differ
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["ensemble"] == metrics["ensemble"]


def test_same_seed_same_ensemble(tiny_cfg):
    a = train_ensemble(tiny_cfg, 2, "bagging", quiet=True, progress=False)
    b = train_ensemble(tiny_cfg, 2, "bagging", quiet=True, progress=False)
    assert a["members"] == b["members"] and a["ensemble"] == b["ensemble"]


def test_bad_arguments(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="allowed: bagging, seeds, snapshot"):
        train_ensemble(tiny_cfg, 2, "boosting")
    with pytest.raises(ValueError, match="size must be >= 1"):
        train_ensemble(tiny_cfg, 0, "seeds")
    (tmp_path / "ensemble.json").write_text("{}")
    with pytest.raises(ValueError, match="not an ensemble manifest"):
        load_manifest(str(tmp_path))


def _cli(*args, cwd):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "nnparts.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_train_and_evaluate_an_ensemble_on_the_command_line(fashion_dir, tmp_path):
    out = tmp_path / "ens"
    trained = _cli(
        "train",
        "--ensemble.size",
        "2",
        "--ensemble.method",
        "seeds",
        "--data.train_subset",
        "600",
        "--data.val_size",
        "100",
        "--model.hidden",
        "[32]",
        "--train.epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert "ensemble of 2 (seeds)" in trained.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["members"]) == 2 and (out / "member-1" / "final.npz").exists()
    evaluated = _cli("evaluate", "--checkpoint", str(out / "ensemble.json"), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "ensemble of 2 (mean)" in evaluated.stdout
    shown = float(evaluated.stdout.split("accuracy ")[1].split()[0])
    assert shown == pytest.approx(metrics["ensemble"]["test_accuracy_mean_prob"], abs=1e-4)
    # one member evaluates alone like any checkpoint
    member = _cli("evaluate", "--checkpoint", str(out / "member-0" / "final.npz"), cwd=tmp_path)
    assert member.returncode == 0, member.stderr
    bad = _cli("train", "--ensemble.size", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "ensemble.size" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("train", "--ensemble.method", "boosting", cwd=tmp_path)
    assert bad.returncode == 2 and "bagging, seeds, snapshot" in bad.stderr
