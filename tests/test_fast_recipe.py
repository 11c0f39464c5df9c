"""The time-to-accuracy recipe (recipes/fast.yaml): its model, its training parts, end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nnparts
from nnparts import functional as F
from nnparts import nn
from nnparts.train import config as configs
from nnparts.train import run
from nnparts.train.models import build_model, fit_whitening
from nnparts.train.trainer import predict

RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes", "fast.yaml")


def recipe(fashion_dir=None, **overrides):
    cfg = configs.load_file(RECIPE)
    if fashion_dir is not None:
        cfg["data"].update(
            data_dir=fashion_dir, download=False, train_subset=1500, val_size=300, test_subset=500
        )
        cfg["model"]["channels"] = [8, 16, 16]
        # 45 steps in all: a short average and a milder bias lr than the full recipe's
        cfg["train"].update(epochs=3, batch_size=100, ema_decay=0.8)
        cfg["optimizer"].update(lr=0.1, norm_bias_lr_scale=2.0)
        cfg["scheduler"]["warmup_epochs"] = 0.5
    for key, value in overrides.items():
        section, name = key.split("__")
        cfg.setdefault(section, {})[name] = value
    return configs.resolve(cfg)


def test_fast_model_whitens_first_and_starts_its_convs_near_identity():
    cfg = recipe()
    model = build_model(cfg["model"], (1, 28, 28), 10, rng=0)
    layers = list(model.children())
    assert isinstance(layers[0], nn.PatchWhitening)
    assert layers[0].out_channels == 2 * 4  # 2x2 patches of one channel, and their negatives
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    first = convs[0].weight.data  # 8 -> 32 channels: the first 8 filters are identities
    identity = nnparts.init.dirac((8, 8, 3, 3))
    np.testing.assert_array_equal(first[:8], identity)
    assert np.abs(first[8:]).sum() > 0  # the others keep their random start
    assert model.num_parameters() == configs.estimate_parameters(cfg["model"])
    with pytest.raises(RuntimeError, match="fit"):
        model(nnparts.Tensor(np.zeros((2, 1, 28, 28), np.float32)))
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    assert fit_whitening(model, x) == 1
    assert fit_whitening(model, x) == 0  # fitted once; a resumed model keeps its filters
    assert model(nnparts.Tensor(x[:4])).shape == (4, 10)


def test_without_whitening_the_stem_is_a_learned_conv_of_the_same_width():
    cfg = recipe(model__whiten_kernel=0)
    model = build_model(cfg["model"], (1, 28, 28), 10, rng=0)
    stem = next(iter(model.children()))
    assert isinstance(stem, nn.Conv2d) and stem.weight.shape == (18, 1, 3, 3)
    assert model.num_parameters() == configs.estimate_parameters(cfg["model"])
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert fit_whitening(model, x) == 0 and model(nnparts.Tensor(x)).shape == (2, 10)


def test_too_many_conv_groups_for_the_image_size_is_a_clear_error():
    cfg = recipe(model__channels=[8, 8, 8, 8, 8, 8])
    with pytest.raises(ValueError, match="more conv groups than the 28x28 images allow"):
        build_model(cfg["model"], (1, 28, 28), 10)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"scheduler__warmup_epochs": 14}, "warmup must end before the last of train.epochs=14"),
        ({"train__ema_decay": 1.0}, "ema_decay in"),
        ({"train__tta": "shift"}, "allowed: none, hflip, hflip_shift"),
        ({"optimizer__norm_bias_lr_scale": 0}, "expected a factor > 0"),
        ({"model__dirac": "yes"}, "expected true or false"),
    ],
)
def test_recipe_options_are_checked(overrides, message):
    with pytest.raises(configs.ConfigError, match=message):
        recipe(**overrides)


def test_a_fractional_warmup_is_only_checked_by_the_schedules_that_use_it():
    # the ablation swaps the schedule on the command line and keeps the recipe's 1.5 epochs
    cfg = recipe(scheduler__name="cosine")
    assert cfg["scheduler"]["warmup_epochs"] == 1.5
    with pytest.raises(configs.ConfigError, match="warmup_epochs.*positive integer"):
        recipe(scheduler__name="warmup")


def test_hflip_shift_tta_averages_six_views_with_airbench_weights():
    rng = np.random.default_rng(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 5, rng=0))
    x = rng.standard_normal((7, 1, 6, 6)).astype(np.float32)
    got = predict(net, x, 4, "hflip_shift")

    def probs(v):
        return F.softmax(net(nnparts.Tensor(np.ascontiguousarray(v))), axis=-1).data

    def shift(v, dx):  # edge-repeating shift, written out
        padded = np.pad(v, ((0, 0), (0, 0), (0, 0), (1, 1)), mode="edge")
        return padded[..., 1 - dx : 1 - dx + v.shape[-1]]

    mirror = x[..., ::-1]
    expected = 0.25 * (probs(x) + probs(mirror))
    for img in (x, mirror):
        expected += 0.125 * (probs(shift(img, 1)) + probs(shift(img, -1)))
    np.testing.assert_allclose(np.exp(got), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.exp(got).sum(axis=1), 1.0, rtol=1e-5)


def test_recipe_trains_end_to_end_and_final_checkpoint_holds_the_averaged_weights(
    fashion_dir, tmp_path
):
    cfg = recipe(fashion_dir)
    out = str(tmp_path / "fast")
    metrics = run.train(cfg, out=out, quiet=True, progress=False)
    assert metrics["status"] == "completed"
    assert metrics["test_accuracy"] > 0.45, metrics["test_accuracy"]  # chance: 0.10
    assert metrics["tta"]["method"] == "hflip_shift"
    assert 0.4 < metrics["tta"]["test_accuracy"] <= 1.0
    # the lr was stepped per batch: warmup to the peak, then down to end_factor * peak
    lrs = [h["lr"] for h in metrics["history"]]
    assert lrs[0] == 0.0  # start_factor 0: the epoch-1 log shows the first step's lr
    # final.npz is the EMA model: its weights reproduce the run's test accuracy
    from nnparts.train import checkpoint as ckpt
    from nnparts.train.trainer import evaluate_logits, load_model_state

    model = build_model(cfg["model"], (1, 28, 28), 10)
    load_model_state(model, ckpt.load(os.path.join(out, "final.npz"))[0], "final.npz")
    data = run.prepare_data(cfg, cfg["seed"])
    test = evaluate_logits(predict(model, data["x_test"]), data["y_test"])
    assert test["accuracy"] == metrics["test_accuracy"]
    assert bool(next(iter(model.children())).fitted)
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["config"]["train"]["ema_decay"] == 0.8


def test_recipe_resume_is_bit_identical_with_ema_and_per_step_schedule(
    fashion_dir, tmp_path, monkeypatch
):
    cfg = recipe(fashion_dir)
    straight = run.train(cfg, out=str(tmp_path / "a"), quiet=True, progress=False)
    # the same run stopped after epoch 2 (same config, so the same per-step schedule) ...
    make_trainer = run.make_trainer

    def stopping_after_two(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.callbacks.append(
            nnparts.train.callbacks.LambdaCallback(
                on_epoch_end=lambda t, logs: setattr(t, "stop_training", t.epoch >= 2)
            )
        )
        return trainer

    monkeypatch.setattr(run, "make_trainer", stopping_after_two)
    run.train(cfg, out=str(tmp_path / "b"), quiet=True, progress=False)
    monkeypatch.setattr(run, "make_trainer", make_trainer)
    # ... and resumed from its last checkpoint: the EMA and the schedule carry on exactly
    resumed = run.train(
        cfg,
        out=str(tmp_path / "b"),
        quiet=True,
        progress=False,
        resume=str(tmp_path / "b" / "last.npz"),
    )
    assert resumed["timing"]["resumed_after_epoch"] == 2
    assert resumed["history"] == straight["history"]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert resumed["tta"] == straight["tta"]


def test_trainer_evaluates_the_averaged_weights():
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(4, 3, rng=0))
    ema = nnparts.optim.WeightEMA(net, decay=0.5)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    loader = nnparts.data.DataLoader(x, y, batch_size=8, shuffle=False)
    opt = nnparts.optim.SGD(net.parameters(), lr=0.5)
    trainer = nnparts.train.Trainer(net, opt, loader, ema=ema, progress=False, log=None)
    trainer.fit(2)
    raw = predict(net, x)
    with ema.applied(net):
        averaged = predict(net, x)
    np.testing.assert_allclose(trainer.predict(x), averaged)
    assert not np.allclose(raw, averaged)  # the averaged weights differ from the last ones
    np.testing.assert_allclose(predict(net, x), raw)  # and the model got its own back


def test_trainer_gives_indexed_augmentations_each_batch_indices_and_epoch():
    seen = []

    class Record(nnparts.data.Transform):
        needs_index = True

        def apply_indexed(self, x, y, rng, index, epoch):
            seen.append((epoch, np.array(index)))
            return x, y

    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 1, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=0))
    loader = nnparts.data.DataLoader(x, y, batch_size=8, seed=5)
    opt = nnparts.optim.SGD(net.parameters(), lr=0.1)
    augment = nnparts.data.Compose([Record(), nnparts.data.AlternatingFlip()])
    trainer = nnparts.train.Trainer(net, opt, loader, augment=augment, progress=False, log=None)
    trainer.fit(2)
    expected = [(e, loader.order(e)[b * 8 : (b + 1) * 8]) for e in range(2) for b in range(3)]
    assert [e for e, _ in seen] == [e for e, _ in expected]
    for (_, got), (_, want) in zip(seen, expected):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="needs the dataset indices of each batch, which list"):
        nnparts.train.Trainer(net, opt, [(x, y)], augment=augment, progress=False, log=None)
