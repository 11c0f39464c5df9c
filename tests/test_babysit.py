"""`nnparts babysit`: the checklist finds a broken config, passes a good one; the LR range test's
reading of a curve we construct; activation and gradient statistics on hand-made cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nnparts import nn
from nnparts.tensor import Tensor
from nnparts.train import babysit
from nnparts.train import config as configs
from tests.cli_helpers import nnparts

SMALL = [
    "--data.train_subset", "500", "--data.val_size", "100", "--data.test_subset", "100",
    "--data.download", "false",
]  # fmt: skip
BROKEN = [
    "--optimizer.lr", "100", "--model.init", "normal", "--model.norm", "none",
    "--model.hidden", "[64,64,64,64]", "--model.dropout", "0",
]  # fmt: skip


def small_config(fashion_dir, **model):
    return configs.resolve(
        {
            "data": {
                "data_dir": fashion_dir,
                "download": False,
                "train_subset": 500,
                "val_size": 100,
                "test_subset": 100,
            },
            "model": {"hidden": [64], "dropout": 0.0, **model},
        }
    )


def statuses(stdout: str) -> dict:
    """check name -> status, read from the printed table."""
    out = {}
    for line in stdout.split("\n\n")[0].splitlines():  # the checks table, before the layers
        parts = line.split()
        if len(parts) >= 2 and parts[0] in babysit.CHECKS:
            out[parts[0]] = parts[1]
    return out


def test_broken_config_reports_the_failing_checks(fashion_dir, tmp_path):
    result = nnparts(
        "babysit", *SMALL, "--data.data_dir", fashion_dir, *BROKEN,
        "--lr-steps", "80", "--overfit-steps", "40", "--out", tmp_path / "out",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # every check ran, whatever the results
    assert "Traceback" not in result.stderr, result.stderr
    table = statuses(result.stdout)
    assert set(table) == set(babysit.CHECKS), result.stdout
    # lr 100 cannot fit 20 samples and is far outside the range test's suggestion; std 0.01
    # over four layers makes activations and gradients vanish
    for name in ("overfit-20", "lr-range", "activations", "gradients"):
        assert table[name] == "FAIL", (name, result.stdout)
    assert "vanish" in result.stdout
    assert "the config's lr 100 is above" in result.stdout
    report = json.loads((tmp_path / "out" / "babysit.json").read_text())
    assert {c["name"]: c["status"] for c in report["checks"]}["gradients"] == "fail"
    assert report["counts"]["fail"] >= 4
    assert (tmp_path / "out" / "babysit.png").stat().st_size > 10_000


def test_strict_exits_1_on_a_failing_check_and_bad_flags_exit_2(fashion_dir, tmp_path):
    from nnparts.cli import main

    args = ["babysit", *SMALL, "--data.data_dir", fashion_dir, *BROKEN]
    assert main([*args, "--strict", "--lr-steps", "20", "--overfit-steps", "10"]) == 1
    assert main([*args, "--lr-min", "1", "--lr-max", "0.1"]) == 2
    assert main([*args, "--model.init", "nope"]) == 2


def test_good_config_passes_every_check(fashion_dir):
    cfg = small_config(fashion_dir)
    cfg["optimizer"]["lr"] = 0.003
    report = babysit.run_checks(cfg, overfit_steps=100, lr_steps=120)
    got = {c.name: c.status for c in report.checks}
    assert got == dict.fromkeys(babysit.CHECKS, "pass"), babysit.format_table(report)
    by = report.by_name
    assert by["initial-loss"].numbers["ln_classes"] == pytest.approx(math.log(10))
    assert by["regularization"].numbers["probe"] is True  # the config has no L2: a probe
    assert by["regularization"].numbers["loss_with_l2"] > by["regularization"].numbers["loss"]
    low, high = by["lr-range"].numbers["suggested"]
    assert low <= cfg["optimizer"]["lr"] <= high
    assert by["overfit-20"].numbers["steps"] <= 100


def test_config_l2_is_used_instead_of_the_probe(fashion_dir):
    cfg = small_config(fashion_dir)
    cfg["regularization"]["l2"] = 0.05
    prepared = babysit.prepare(cfg)
    result = babysit.regularization_raises_loss(cfg, prepared, n=100)
    assert result.numbers["probe"] is False and result.numbers["l2"] == 0.05
    # lambda/2 * sum of squared weights of every parameter named *weight
    trainer = babysit._trainer(cfg, prepared)
    expected = (
        0.05
        / 2
        * sum(
            float((p.data.astype(np.float64) ** 2).sum())
            for name, p in trainer.model.named_parameters()
            if name.endswith("weight")
        )
    )
    assert result.numbers["penalty"] == pytest.approx(expected, rel=1e-4)


# -- the LR range test's reading of a constructed curve ------------------------------------------
def constructed_curve(steepest=1e-3, blow=0.1, steps=200):
    """A loss that falls as a logistic in log10(lr) centred on ``steepest`` (its steepest point)
    from 2.3 to 0.3, then rises exponentially from ``blow`` on."""
    lrs = np.logspace(-6, 1, steps)
    t = np.log10(lrs)
    loss = 0.3 + 2.0 / (1 + np.exp((t - np.log10(steepest)) / 0.25))
    loss = loss + np.where(lrs > blow, np.expm1(6 * (t - np.log10(blow))), 0.0)
    return lrs, loss


def test_lr_range_suggestion_on_a_constructed_curve():
    lrs, loss = constructed_curve()
    reading = babysit.suggest_lr_range(lrs, loss)
    spacing = 10 ** (7 / 199)  # one step of the grid, as a factor
    assert 1e-3 / spacing**2 <= reading["lr_steepest"] <= 1e-3 * spacing**2
    # the blow-up: the smoothed loss passes 4x its minimum (0.3) a few steps after the raw loss
    after_min = np.arange(len(loss)) > np.argmin(loss)
    raw_cross = lrs[np.argmax(after_min & (loss > 4 * 0.3))]
    assert raw_cross <= reading["lr_blowup"] <= raw_cross * spacing**15
    low, high = reading["suggested"]
    assert low == reading["lr_steepest"] and high == pytest.approx(0.1 * reading["lr_blowup"])
    assert reading["decreased"]


def test_lr_range_without_blow_up_or_descent_and_with_nan():
    lrs = np.logspace(-6, 1, 100)
    falling = 0.3 + 2.0 / (1 + np.exp((np.log10(lrs) + 3) / 0.25))
    reading = babysit.suggest_lr_range(lrs, falling)
    assert reading["lr_blowup"] is None
    assert reading["suggested"][1] == reading["lr_min_loss"]
    flat = np.full(100, 2.3) + 0.01 * np.random.default_rng(0).standard_normal(100)
    assert babysit.suggest_lr_range(lrs, flat)["suggested"] is None
    with_nan = falling.copy()
    with_nan[60:] = np.nan
    assert babysit.suggest_lr_range(lrs, with_nan)["blowup_step"] == 60
    # steepest descent above the blow-up's tenth: the lower end drops to a tenth of the upper
    late = 0.3 + 2.0 / (1 + np.exp((np.log10(lrs) - 0.5) / 0.1))
    late = late + np.where(lrs > 5, 100.0, 0.0)
    low, high = babysit.suggest_lr_range(lrs, late)["suggested"]
    assert low == pytest.approx(0.1 * high)


def test_blowup_index_uses_the_smoothed_loss():
    losses = np.r_[np.full(20, 1.0), 5.0, np.full(20, 1.0)]  # one spike: the EMA stays below 4x
    assert babysit.blowup_index(losses) is None
    assert babysit.blowup_index(np.r_[np.full(20, 1.0), np.inf]) == 20
    rising = np.r_[np.full(20, 1.0), np.full(30, 10.0)]
    k = babysit.blowup_index(rising)
    assert k is not None and 20 < k < 30
    assert babysit.ema([2.0, 2.0, 2.0]).tolist() == pytest.approx([2.0, 2.0, 2.0])


# -- activation and gradient statistics on hand-made cases ---------------------------------------
def test_unit_stats_counts_saturated_and_dead():
    # 4 samples x 3 units of ReLU output; unit 0 is never active (dead)
    out = np.array([[0, 1, 0], [0, 2, 3], [0, 0, 1], [0, 4, 0]], dtype=float)
    slope = (out > 0).astype(float)
    stats = babysit.unit_stats(out, slope)
    assert stats["saturated"] == pytest.approx(7 / 12)
    assert stats["dead"] == pytest.approx(1 / 3)
    assert stats["std"] == pytest.approx(out.std())
    # channels of a (N, C, H, W) output are the units
    conv = np.zeros((2, 2, 3, 3))
    conv[1, 1, 0, 0] = 1.0
    stats = babysit.unit_stats(conv, (conv > 0).astype(float))
    assert stats["dead"] == 0.5 and stats["units"] == 2


def test_local_slope_of_tanh_sigmoid_and_relu():
    x = np.linspace(-3, 3, 13)
    assert babysit.local_slope(nn.Tanh(), x) == pytest.approx(1 - np.tanh(x) ** 2, abs=1e-6)
    s = 1 / (1 + np.exp(-x))
    assert babysit.local_slope(nn.Sigmoid(), x) == pytest.approx(s * (1 - s), abs=1e-6)
    tiny = np.array([-2e-5, -1e-5, 1e-5, 2e-5])  # far below the default step of 1e-3
    assert babysit.local_slope(nn.ReLU(), tiny) == pytest.approx([0, 0, 1, 1])


def test_layer_statistics_on_a_hand_made_net():
    first = nn.Linear(2, 3)
    first.weight.data = np.array([[1.0, 1.0, -1.0], [1.0, -1.0, 1.0]], np.float32)
    first.bias.data = np.array([-100.0, 0.0, 0.0], np.float32)  # unit 0 never fires
    last = nn.Linear(3, 2)
    last.weight.data = np.array([[1.0, 0.0], [0.5, -1.0], [2.0, 1.0]], np.float32)
    last.bias.data = np.zeros(2, np.float32)
    model = nn.Sequential(first, nn.ReLU(), last)
    x = np.array([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5], [0.5, 0.25]], np.float32)
    y = np.array([0, 1, 1, 0])
    stats = babysit.layer_statistics(model, x, y)

    h = x @ first.weight.data + first.bias.data
    a = np.maximum(h, 0)
    (act,) = stats["activations"]
    assert act["dead"] == pytest.approx(1 / 3)
    assert act["saturated"] == pytest.approx((h <= 0).mean())
    assert act["std_ratio"] == pytest.approx(a.std() / x.std(), rel=1e-5)
    # d loss / d logits = (softmax - onehot) / N; back through the last layer and ReLU
    logits = a @ last.weight.data
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_logits = (p - np.eye(2)[y]) / len(y)
    d_h = (d_logits @ last.weight.data.T) * (h > 0)
    g_first, g_last = stats["gradients"]
    assert stats["logit_grad_norm"] == pytest.approx(np.linalg.norm(d_logits), rel=1e-5)
    assert g_last["grad_ratio"] == pytest.approx(1.0)
    assert g_first["grad_ratio"] == pytest.approx(
        np.linalg.norm(d_h) / np.linalg.norm(d_logits), rel=1e-5
    )
    assert g_first["weight_grad_norm"] == pytest.approx(np.linalg.norm(x.T @ d_h), rel=1e-5)
    # the hooks are gone and the gradients cleared
    for m in model.modules():
        assert not m.__dict__.get("_forward_hooks")
    assert all(p.grad is None for p in model.parameters())
    model(Tensor(x))  # runs without the probes


def test_small_subset_takes_every_class():
    y = np.repeat(np.arange(10), 50)
    prepared = {"x_train": np.arange(500)[:, None].astype(np.float32), "y_train": y}
    x20, y20 = babysit.small_subset(prepared, 20, seed=3)
    assert np.bincount(y20, minlength=10).tolist() == [2] * 10
    assert len(set(x20[:, 0].tolist())) == 20
    again = babysit.small_subset(prepared, 20, seed=3)[0]
    assert np.array_equal(x20, again)
