"""Training end to end on a slice of the real Fashion-MNIST: learning, resume, guards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnparts import cli, nn
from nnparts.train import EarlyStopping, run
from nnparts.train import config as configs
from nnparts.train.callbacks import DivergenceError


def small_config(fashion_dir, **overrides):
    cfg = {
        "seed": 3,
        "data": {
            "data_dir": fashion_dir,
            "train_subset": 2500,
            "val_size": 500,
            "test_subset": 1000,
            "download": False,
        },
        "model": {"hidden": [64], "dropout": 0.1},
        "train": {"epochs": 3, "batch_size": 64},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        cfg.setdefault(section, {})[name] = value
    return configs.resolve(cfg)


def test_end_to_end_learns_and_writes_complete_metrics(fashion_dir, tmp_path):
    metrics = run.train(small_config(fashion_dir), out=str(tmp_path), quiet=True, progress=False)
    history = metrics["history"]
    assert len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["test_accuracy"] > 0.65  # chance is 0.10
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "test_loss",
        "history",
        "config",
        "seed",
        "versions",
        "timing",
        "confusion_matrix",
        "num_parameters",
    ):
        assert key in saved, key
    assert saved["config"]["model"]["hidden"] == [64]
    assert np.array(saved["confusion_matrix"]).sum() == 1000
    for name in ("curves.png", "final.npz", "last.npz", "best.npz"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_train_curve_label_says_when_train_numbers_are_not_comparable(fashion_dir):
    assert run.train_curve_label(small_config(fashion_dir)) == "train"
    cfg = small_config(fashion_dir, data__augment=[{"name": "hflip"}], train__label_smoothing=0.1)
    assert run.train_curve_label(cfg) == "train (augmented, label smoothing 0.1)"


def test_same_seed_same_metrics(fashion_dir, tmp_path):
    cfg = small_config(fashion_dir, train__epochs=2)
    a = run.train(cfg, out=str(tmp_path / "a"), quiet=True, progress=False)
    b = run.train(cfg, out=str(tmp_path / "b"), quiet=True, progress=False)
    a.pop("timing"), b.pop("timing")
    assert a == b


def test_resumed_run_is_bit_identical(fashion_dir, tmp_path):
    cfg = small_config(
        fashion_dir, scheduler__name="step", scheduler__step_size=1, optimizer__name="adam"
    )
    full = run.train(cfg, out=str(tmp_path / "full"), quiet=True, progress=False)

    # the same run "interrupted" after epoch 2 ...
    interrupted = dict(cfg, train=dict(cfg["train"], epochs=2))
    run.train(interrupted, out=str(tmp_path / "part"), quiet=True, progress=False)
    # ... and resumed from its last checkpoint for the remaining epoch
    resumed = run.train(
        cfg,
        out=str(tmp_path / "part"),
        quiet=True,
        progress=False,
        resume=str(tmp_path / "part" / "last.npz"),
    )
    assert resumed["history"] == full["history"]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    # the time spent before the interruption is still counted
    timing = resumed["timing"]
    assert timing["resumed_after_epoch"] == 2 and full["timing"]["resumed_after_epoch"] is None
    assert len(timing["epoch_seconds"]) == 3
    assert timing["training_seconds"] == pytest.approx(sum(timing["epoch_seconds"]))
    assert timing["training_seconds"] > timing["epoch_seconds"][-1]
    from nnparts.train import checkpoint as ckpt

    w_full, _, _ = ckpt.load(tmp_path / "full" / "final.npz")
    w_resumed, _, _ = ckpt.load(tmp_path / "part" / "final.npz")
    for key in w_full:
        np.testing.assert_array_equal(w_full[key], w_resumed[key], err_msg=key)


def test_divergence_guard_stops_and_keeps_last_good_checkpoint(fashion_dir, tmp_path):
    cfg = small_config(
        fashion_dir, optimizer__name="sgd", optimizer__lr=0.05, model__norm="none", train__epochs=1
    )
    prepared = run.prepare_data(cfg, cfg["seed"])
    trainer = run.make_trainer(cfg, prepared, str(tmp_path), quiet=True, progress=False)
    trainer.fit(1)
    last = tmp_path / "last.npz"
    before = last.read_bytes()
    trainer.optimizer.param_groups[0]["lr"] = 1e3
    with pytest.raises(DivergenceError, match=r"epoch 2, step \d+.*smaller learning rate"):
        trainer.fit(3)
    assert last.read_bytes() == before


def test_cli_divergence_exits_with_message(fashion_dir, tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--quiet",
            "--data.data_dir",
            fashion_dir,
            "--data.download",
            "false",
            "--data.train_subset",
            "1000",
            "--data.val_size",
            "200",
            "--data.test_subset",
            "200",
            "--optimizer.name",
            "sgd",
            "--optimizer.lr",
            "1e3",
            "--model.norm",
            "none",
            "--train.epochs",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "smaller learning rate" in capsys.readouterr().err
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def test_early_stopping_restores_the_best_epoch():
    class Stub:
        stop_training = False

        def __init__(self):
            self.model = nn.Linear(3, 2)

        def log(self, message):
            self.message = message

    trainer = Stub()
    es = EarlyStopping("val_loss", patience=2)
    snapshots = []
    for epoch, val_loss in enumerate([1.0, 0.5, 0.7, 0.9], start=1):
        trainer.model.weight.data[...] = epoch  # the weights of this epoch
        snapshots.append(trainer.model.state_dict())
        es.on_epoch_end(trainer, {"epoch": epoch, "val_loss": val_loss})
        if trainer.stop_training:
            break
    assert epoch == 4 and trainer.stop_training
    es.on_train_end(trainer)
    np.testing.assert_array_equal(trainer.model.weight.data, snapshots[1]["weight"])
    assert es.best_epoch == 2


def test_evaluate_command_writes_metrics_and_confusion(fashion_dir, tmp_path, capsys):
    cfg = small_config(fashion_dir, train__epochs=1)
    metrics = run.train(cfg, out=str(tmp_path), quiet=True, progress=False)
    code = cli.main(
        [
            "evaluate",
            "--checkpoint",
            str(tmp_path / "final.npz"),
            "--data-dir",
            fashion_dir,
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 0
    assert np.array(saved["confusion_matrix"]).sum() == 10000
    assert abs(saved["accuracy"] - metrics["test_accuracy"]) < 0.05  # 10k vs a 1k slice


def test_hflip_test_time_augmentation_averages_an_image_and_its_mirror(rng):
    """predict(tta="hflip") returns log of the mean softmax of x and flip(x): its softmax is that
    mean, its argmax the averaged vote; on mirror-symmetric images it equals the plain softmax."""
    from nnparts import functional as F
    from nnparts.tensor import Tensor
    from nnparts.train.trainer import predict

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3, rng=0))
    x = rng.standard_normal((5, 1, 3, 4)).astype(np.float32)
    plain = predict(model, x, batch_size=2)
    mirror = predict(model, np.ascontiguousarray(x[..., ::-1]), batch_size=2)
    tta = predict(model, x, batch_size=2, tta="hflip")
    mean = (F.softmax(Tensor(plain)).data + F.softmax(Tensor(mirror)).data) / 2
    np.testing.assert_allclose(np.exp(tta), mean, rtol=1e-5)
    np.testing.assert_allclose(F.softmax(Tensor(tta)).data, mean, rtol=1e-5)
    symmetric = x + x[..., ::-1]
    np.testing.assert_allclose(
        predict(model, symmetric, tta="hflip"),
        F.log_softmax(Tensor(predict(model, symmetric))).data,
        atol=1e-5,
    )
    assert model.training  # the mode is restored
    with pytest.raises(ValueError, match="allowed: none, hflip"):
        predict(model, x, tta="vflip")


def test_train_reports_tta_beside_the_plain_accuracy(fashion_dir, tmp_path, capsys):
    cfg = small_config(fashion_dir, train__epochs=1, train__tta="hflip")
    metrics = run.train(cfg, out=str(tmp_path), quiet=True, progress=False)
    assert metrics["tta"]["method"] == "hflip"
    assert 0.5 < metrics["tta"]["test_accuracy"] <= 1.0
    assert metrics["tta"]["test_accuracy"] != metrics["test_accuracy"] or (
        metrics["tta"]["test_loss"] != metrics["test_loss"]
    )
    assert run.train(small_config(fashion_dir, train__epochs=1), quiet=True)["tta"] is None
    code = cli.main(
        ["evaluate", "--checkpoint", str(tmp_path / "final.npz"), "--data-dir", fashion_dir,
         "--tta", "none", "--out", str(tmp_path / "eval")]
    )  # fmt: skip
    assert code == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["tta"] == "none"
    with pytest.raises(configs.ConfigError, match="train.tta: invalid value 'vflip'"):
        small_config(fashion_dir, train__tta="vflip")


def test_a_run_reports_its_thread_use_and_a_busy_machine_does_not_change_its_numbers(
    fashion_dir, monkeypatch, capsys
):
    """Every parallel op split over 2 threads: once on the pool, once as if other processes took
    the cores (every op inline, on the calling thread). The run says so, and its numbers are the
    same bit for bit."""
    from nnparts import threads

    cfg = small_config(fashion_dir, train__epochs=1)
    threads.set_num_threads(2)
    threads.set_min_work(0)
    previous = threads.get_policy()
    threads.set_policy("pool")
    try:
        pooled = run.train(cfg, quiet=True, progress=False)
        monkeypatch.setattr(threads._watch, "inline", lambda: True)
        busy = run.train(cfg, quiet=False, progress=False)
    finally:
        threads.set_min_work(1 << 18)
        threads.set_policy(previous)
        threads.set_num_threads(threads._default_threads())
    used = pooled["timing"]["threads"]
    assert used["policy"] == "pool" and used["num_threads"] == 2
    assert used["pool_op_calls"] > 0 and used["inline_pct"] == 0.0
    assert busy["timing"]["threads"]["inline_pct"] == 100.0
    printed = capsys.readouterr().out
    assert "kept this machine's cores busy: 100% of the parallel op calls" in printed
    pooled.pop("timing"), busy.pop("timing")
    assert pooled == busy
