"""The divergence guard: divergence that stays finite under BatchNorm, non-finite gradients
and weights, accuracy stuck at chance; the run stops with the step, the cause and a smaller
learning rate, keeps its last good checkpoint and exits non-zero."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_helpers import TINY, assert_error, nnparts, snapshot

from nnparts import nn
from nnparts.train import config as configs
from nnparts.train import run
from nnparts.train.callbacks import DivergenceError, DivergenceGuard, check_finite, suggest_lr


def test_cli_batchnorm_divergence_with_a_finite_loss_exits_non_zero(fashion_dir, tmp_path):
    """sgd at lr 1e4 with BatchNorm: the loss stays finite (BatchNorm renormalizes the exploding
    activations) but sits far above its initial value; the run used to complete at chance."""
    result = nnparts(
        "train", *TINY, "--data.data_dir", fashion_dir, "--data.train_subset", "1000",
        "--data.val_size", "100", "--model.hidden", "[512, 256]",
        "--optimizer.name", "sgd", "--optimizer.lr", "1e4", "--out", "r", cwd=tmp_path,
    )  # fmt: skip
    line = assert_error(
        result, 1, "training diverged at epoch 1, step", "above 10x its initial value",
        "the learning rate (10000 with sgd) is too large", "--optimizer.lr 0.1 or below",
    )  # fmt: skip
    step = int(line.split("step ")[1].split(":")[0])
    assert 1 < step <= 8  # caught within the first epoch (8 steps)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["epochs_completed"] == 0
    assert not (tmp_path / "r" / "final.npz").exists()  # no checkpoint of diverged weights
    assert not (tmp_path / "r" / "last.npz").exists()  # and no epoch was good


def test_the_last_good_checkpoint_is_kept(fashion_dir, tmp_path):
    cfg = configs.resolve(
        {
            "data": {"data_dir": fashion_dir, "train_subset": 1000, "val_size": 100,
                     "test_subset": 100, "download": False},
            "model": {"hidden": [32], "norm": "batchnorm"},
            "optimizer": {"name": "sgd", "lr": 0.05},
            "train": {"batch_size": 32},
        }
    )  # fmt: skip
    prepared = run.prepare_data(cfg, cfg["seed"])
    trainer = run.make_trainer(cfg, prepared, str(tmp_path), quiet=True, progress=False)
    trainer.fit(1)
    before = snapshot(tmp_path)
    assert set(before) == {str(tmp_path / "last.npz"), str(tmp_path / "best.npz")}
    trainer.optimizer.param_groups[0]["lr"] = 1e4
    with pytest.raises(DivergenceError, match=r"epoch 2, step \d+: the loss has been above"):
        trainer.fit(3)
    assert snapshot(tmp_path) == before
    assert trainer.epoch == 1


class FakeTrainer:
    def __init__(self, lr=1.0, name="sgd"):
        self.model = nn.Linear(3, 2)
        self.optimizer = type("Opt", (), {"param_groups": [{"lr": lr}]})()
        self.config = {"optimizer": {"name": name}}
        self.global_step = 0

    @property
    def lr(self):
        return self.optimizer.param_groups[0]["lr"]


def _steps(guard, trainer, losses, grad_norm=1.0, start=1):
    for i, loss in enumerate(losses, start=start):
        trainer.global_step = i
        guard.on_batch_end(
            trainer,
            {"epoch": 1, "batch": i, "step": i, "loss": loss, "lr": trainer.lr,
             "grad_norm": grad_norm, "batch_size": 8},
        )  # fmt: skip


def test_loss_far_above_its_start_for_several_steps():
    trainer = FakeTrainer(lr=0.5)
    guard = DivergenceGuard(factor=10, patience=5)
    _steps(guard, trainer, [2.3] + [30.0] * 4 + [2.0] + [30.0] * 4)  # a spike resets the count
    with pytest.raises(DivergenceError, match=r"step 11: .*above 10x its initial value 2.3 for 5"):
        _steps(guard, trainer, [30.0], start=11)
    assert "--optimizer.lr 0.05 or below" in str(guard_error(guard, trainer))


def guard_error(guard, trainer):
    try:
        _steps(guard, trainer, [40.0], start=12)
    except DivergenceError as e:
        return e
    return None


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_gradient_norm_stops_at_once(bad):
    trainer = FakeTrainer(lr=1e3, name="adam")
    guard = DivergenceGuard()
    with pytest.raises(DivergenceError, match=r"step 1: the gradient norm became .*0\.001"):
        _steps(guard, trainer, [2.3], grad_norm=bad)


def test_non_finite_weights_stop_at_the_epoch_end():
    trainer = FakeTrainer()
    guard = DivergenceGuard()
    guard.on_epoch_end(trainer, {"epoch": 1, "train_accuracy": 0.9})
    trainer.model.weight.data[0, 1] = np.inf
    with pytest.raises(DivergenceError, match="parameter weight holds non-finite values"):
        guard.on_epoch_end(trainer, {"epoch": 2, "train_accuracy": 0.9})


def test_accuracy_at_chance_after_the_warm_up():
    trainer = FakeTrainer()
    guard = DivergenceGuard(num_classes=10, warmup_steps=100)
    trainer.global_step = 99  # still warming up: no verdict
    guard.on_epoch_end(trainer, {"epoch": 1, "train_accuracy": 0.1, "val_accuracy": 0.1})
    trainer.global_step = 100
    guard.on_epoch_end(trainer, {"epoch": 2, "train_accuracy": 0.1, "val_accuracy": 0.5})
    with pytest.raises(DivergenceError, match=r"validation accuracy is 0.102 after 100 steps"):
        guard.on_epoch_end(trainer, {"epoch": 3, "train_accuracy": 0.5, "val_accuracy": 0.102})


def test_guard_state_survives_a_resume():
    trainer = FakeTrainer()
    guard = DivergenceGuard(patience=3)
    _steps(guard, trainer, [2.0, 2.0, 2.0, 50.0, 50.0])  # the reference is the first loss
    again = DivergenceGuard(patience=3)
    again.load_state_dict(guard.state_dict())
    with pytest.raises(DivergenceError, match="for 3 steps"):
        _steps(again, trainer, [50.0], start=6)


def test_check_finite_and_suggest_lr_keep_working():
    check_finite(2.3, 1, 1, 0.1)
    with pytest.raises(DivergenceError, match=r"became nan at epoch 1, step 2.*smaller"):
        check_finite(float("nan"), 1, 2, 0.1)
    assert suggest_lr(1e4, "sgd") == 0.1 and suggest_lr(0.5, "sgd") == pytest.approx(0.05)
    assert suggest_lr(0.01, "adam") == 1e-3 and suggest_lr(None) is None
