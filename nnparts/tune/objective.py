"""The objective: a training config plus one trial's values -> validation accuracy.

The training is ``nnparts train``'s own (``prepare_data``, ``make_trainer``), so ``best.yaml``
retrains exactly the trial it came from. The test split is never loaded: ``prepare_data`` is
called with ``with_test=False``, and k-fold cross-validation splits the training split only.

Per-epoch validation accuracy is reported to the pruner (``trial.report(acc, epoch)``) and
stored as the trial's ``val_accuracy_curve`` user attribute (the learning-curve figure). With
``cv: k`` the value is the mean over k stratified folds and the report step is the fold.
"""

from __future__ import annotations

import copy
import json
import sys

import numpy as np

from nnparts.train import config as configs
from nnparts.train.callbacks import Callback, DivergenceGuard
from nnparts.tune.space import set_dotted

_DATA_CACHE: dict = {}


class Pruned(Exception):
    """Raised inside training when the pruner stops a trial; ``curve`` holds the epochs so far."""

    def __init__(self, message, curve=()):
        super().__init__(message)
        self.curve = list(curve)


def trial_config(base_file: dict, overrides: dict, values: dict) -> dict:
    """The resolved training config of one trial: the file, the overrides, the trial's values."""
    cfg = copy.deepcopy(base_file)
    ov = copy.deepcopy(overrides)
    for key, value in values.items():
        set_dotted(cfg, key, value)
        set_dotted(ov, key, value)  # the searched value beats a command-line override
    return configs.resolve(cfg, ov)


def _cached(key, build):
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) > 4:
            _DATA_CACHE.clear()
        _DATA_CACHE[key] = build()
    return _DATA_CACHE[key]


def _data_key(cfg, extra=None):
    return json.dumps([cfg["data"], cfg["seed"], extra], sort_keys=True, default=str)


def holdout_data(cfg: dict) -> dict:
    from nnparts.train import run

    return _cached(_data_key(cfg), lambda: run.prepare_data(cfg, cfg["seed"], with_test=False))


def fold_data(cfg: dict, k: int) -> list[dict]:
    """k prepared datasets (train on k-1 folds, validate on one), normalized with the statistics
    of each fold's training part."""
    from nnparts import data as datasets
    from nnparts.train import run
    from nnparts.tune.cv import stratified_kfold

    def build():
        d = cfg["data"]
        # the same training images as nnparts train: a held-out test set is never among them,
        # and a subset of data sorted by class (mnist-5k) is stratified, never "the first N"
        x, y = datasets.load_split(
            d["dataset"], split="train", data_dir=d["data_dir"], download=d["download"]
        )
        x, y = datasets.subset(
            x, y, d["train_subset"], stratified=d["dataset"] in datasets.SORTED_BY_CLASS
        )
        out = []
        for train_idx, val_idx in stratified_kfold(y, k, seed=cfg["seed"]):
            stats = {"mean": None, "std": None}
            if d["normalize"] == "standardize":
                scaled = x[train_idx].astype(np.float32) / 255
                stats = {"mean": float(scaled.mean()), "std": float(scaled.std())}
            out.append(
                {
                    "x_train": run._to_float(x[train_idx], stats),
                    "y_train": y[train_idx],
                    "x_val": run._to_float(x[val_idx], stats),
                    "y_val": y[val_idx],
                    "stats": stats,
                    "in_shape": tuple(x.shape[1:]),
                    "num_classes": int(max(y.max() + 1, 10)),
                }
            )
        return out

    return _cached(_data_key(cfg, k), build)


class _Report(Callback):
    """Trainer callback: per-epoch validation accuracy to the trial and the pruner."""

    def __init__(self, trial, prune: bool):
        self.trial, self.prune = trial, prune
        self.curve: list[float] = []

    def on_epoch_end(self, trainer, logs):
        acc = float(logs.get("val_accuracy", float("nan")))
        self.curve.append(acc)
        if self.prune:
            self.trial.report(acc, len(self.curve))
            if self.trial.should_prune():
                trainer.stop_training = True
                raise Pruned(f"pruned after epoch {len(self.curve)}", self.curve)


def _train_one(cfg, prepared, trial, prune) -> tuple[float, list[float], list[float]]:
    from nnparts.train import run

    if not len(prepared["y_val"]):
        raise configs.ConfigError(
            "the search needs validation data: set data.val_size > 0 (or tune cv: k)"
        )
    trainer = run.make_trainer(cfg, prepared, out=None, quiet=True, progress=False)
    for cb in trainer.callbacks:
        # a trial that learns slowly (a tiny lr) is a result of the search, not a divergence:
        # keep the guard's non-finite and exploding-loss checks, not its accuracy-at-chance one
        if isinstance(cb, DivergenceGuard):
            cb.warmup_steps = sys.maxsize
    report = _Report(trial, prune)
    trainer.callbacks.append(report)
    trainer.fit(cfg["train"]["epochs"])
    losses = [float(h["train_loss"]) for h in trainer.history]
    return float(trainer.history[-1]["val_accuracy"]), report.curve, losses


def evaluate(trial, cfg: dict, cv: int | None, prune: bool) -> dict:
    """Train ``cfg`` (one split, or k folds); return value, curves and (for cv) fold scores.

    Raises :class:`Pruned` when the pruner stops the trial, ``DivergenceError`` when the loss
    is not finite.
    """
    if not cv:
        value, curve, losses = _train_one(cfg, holdout_data(cfg), trial, prune)
        return {"value": value, "val_accuracy_curve": curve, "train_loss_curve": losses}
    scores, curves, loss_curves = [], [], []
    for fold, prepared in enumerate(fold_data(cfg, cv), start=1):
        value, curve, losses = _train_one(cfg, prepared, trial, prune=False)
        scores.append(value)
        curves.append(curve)
        loss_curves.append(losses)
        if prune:
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                raise Pruned(
                    f"pruned after fold {fold} of {cv}",
                    np.mean([c[: min(map(len, curves))] for c in curves], axis=0).tolist(),
                )
    n = min(len(c) for c in curves)
    return {
        "value": float(np.mean(scores)),
        "cv_scores": scores,
        "cv_sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
        "val_accuracy_curve": np.mean([c[:n] for c in curves], axis=0).tolist(),
        "train_loss_curve": np.mean([c[:n] for c in loss_curves], axis=0).tolist(),
    }
