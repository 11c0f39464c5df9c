"""Ensembles of any training config: bagging, seed ensembles and snapshot ensembles.

* **bagging** (Breiman 1996): member ``i`` trains on a bootstrap resample of the training set —
  ``n`` draws *with replacement*, so about 63% of the images appear, some several times — and
  starts from its own initialization (seed ``seed + i``);
* **seeds**: every member sees the whole training set; only the seed (initialization, batch
  order, dropout masks) differs;
* **snapshot** (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free"): one run whose
  learning rate follows ``size`` cosine cycles, ``lr/2 * (cos(pi * t / T) + 1)`` within each
  cycle of ``T`` steps, restarted at the top; the weights at the end of each cycle are a member.

Members are combined by the **mean** of their class probabilities or by **majority vote** of
their predicted classes (ties go to the class with the larger mean probability). The validation
and test sets are the same for every member (the base seed's split), so the ensemble is compared
with its members on the same images.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time

import numpy as np

from nnparts import functional as F
from nnparts.tensor import Tensor, no_grad
from nnparts.train.callbacks import Callback

METHODS = ("bagging", "seeds", "snapshot")
COMBINE = ("mean", "vote")


def bootstrap_indices(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn uniformly *with replacement* from ``range(n)`` (a bootstrap sample)."""
    if n < 1:
        raise ValueError(f"a bootstrap sample needs n >= 1, got {n}")
    return rng.integers(0, n, size=n)


def softmax_probs(logits: np.ndarray) -> np.ndarray:
    with no_grad():
        return F.softmax(Tensor(np.asarray(logits)), axis=-1).data


def combine(probs: np.ndarray, method: str = "mean") -> np.ndarray:
    """Class predictions of an ensemble from its members' probabilities ``(K, N, C)``.

    ``"mean"``: argmax of the mean probability. ``"vote"``: the class most members predict; a
    tie goes to the tied class with the larger mean probability.
    """
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"probs must be (members, samples, classes), got shape {probs.shape}")
    mean = probs.mean(axis=0)
    if method == "mean":
        return mean.argmax(axis=1)
    if method == "vote":
        k, n, c = probs.shape
        votes = np.zeros((n, c))
        np.add.at(votes, (np.arange(n)[None, :].repeat(k, 0), probs.argmax(axis=2)), 1)
        # break ties by the mean probability (strictly smaller than one vote)
        return (votes + mean * 0.5).argmax(axis=1)
    raise ValueError(f"unknown combination {method!r}; allowed: {', '.join(COMBINE)}")


class CyclicCosine(Callback):
    """Snapshot ensembles' schedule: ``cycles`` cosine cycles over ``total_steps`` optimizer
    steps, the lr restarting at ``lr_max`` at the start of each; ``on_cycle_end(trainer, i)`` is
    called with the cycle's index when one ends."""

    def __init__(self, lr_max: float, total_steps: int, cycles: int, on_cycle_end=None):
        if cycles < 1 or total_steps < cycles:
            raise ValueError(
                f"need 1 <= cycles <= total steps, got cycles={cycles}, steps={total_steps}"
            )
        self.lr_max, self.total, self.cycles = float(lr_max), int(total_steps), int(cycles)
        self.on_cycle_end = on_cycle_end
        self.bounds = np.linspace(0, self.total, self.cycles + 1).round().astype(int)

    def lr_at(self, step: int) -> float:
        """The lr for optimizer step ``step`` (0-based)."""
        c = int(np.searchsorted(self.bounds, step, side="right") - 1)
        c = min(c, self.cycles - 1)
        start, end = self.bounds[c], self.bounds[c + 1]
        t = (step - start) / max(end - start, 1)
        return self.lr_max / 2 * (math.cos(math.pi * t) + 1)

    def _set(self, trainer, step):
        for group in trainer.optimizer.param_groups:
            group["lr"] = self.lr_at(step)

    def on_train_begin(self, trainer):
        self._set(trainer, trainer.global_step)

    def on_batch_end(self, trainer, logs):
        step = logs["step"]  # steps done
        if step in self.bounds[1:] and self.on_cycle_end is not None:
            self.on_cycle_end(trainer, int(np.searchsorted(self.bounds, step)) - 1)
        self._set(trainer, step)


def _member_cfg(cfg: dict, i: int, method: str) -> dict:
    member = copy.deepcopy(cfg)
    if method != "snapshot":
        member["seed"] = int(cfg["seed"]) + i
    return member


def train_ensemble(
    cfg: dict,
    size: int,
    method: str = "bagging",
    out: str | None = None,
    quiet: bool = False,
    progress: bool = True,
) -> dict:
    """Train an ensemble of ``size`` members of ``cfg``; return (and write) its metrics.

    ``DIR/member-<i>/final.npz`` holds each member (a normal checkpoint: ``nnparts evaluate``
    reads it); ``DIR/ensemble.json`` lists them with the combination rule, and
    ``DIR/metrics.json`` has the test accuracy of the ensemble (mean-probability and vote) beside
    each member's and their mean and standard deviation.
    """
    from nnparts.train import run

    if method not in METHODS:
        raise ValueError(f"unknown ensemble method {method!r}; allowed: {', '.join(METHODS)}")
    if int(size) < 1:
        raise ValueError(f"ensemble size must be >= 1, got {size}")
    size = int(size)
    start = time.perf_counter()
    log = (lambda m: None) if quiet else print
    prepared = run.prepare_data(cfg, cfg["seed"])
    x_test, y_test = prepared["x_test"], prepared["y_test"]
    members: list[dict] = []
    member_probs: list[np.ndarray] = []
    if out:
        os.makedirs(out, exist_ok=True)

    def finish_member(trainer, i):
        logits = trainer.predict(x_test)
        probs = softmax_probs(logits)
        member_probs.append(probs)
        acc = float((probs.argmax(1) == y_test).mean())
        entry = {"member": i, "test_accuracy": acc}
        if out:
            folder = os.path.join(out, f"member-{i}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, "final.npz")
            trainer.save_checkpoint(path, {"normalization": prepared["stats"], "status": "member"})
            entry["checkpoint"] = os.path.relpath(path, out)
        members.append(entry)
        log(f"member {i + 1}/{size}: test accuracy {acc:.4f}")

    if method == "snapshot":
        trainer = run.make_trainer(cfg, prepared, None, quiet, progress)
        trainer.scheduler = None
        total = cfg["train"]["epochs"] * len(trainer.loader)
        trainer.callbacks.append(
            CyclicCosine(cfg["optimizer"]["lr"], total, size, on_cycle_end=finish_member)
        )
        trainer.fit(cfg["train"]["epochs"])
    else:
        for i in range(size):
            member_cfg = _member_cfg(cfg, i, method)
            member_data = dict(prepared)
            if method == "bagging":
                rng = np.random.default_rng([int(cfg["seed"]), 1000 + i])
                idx = bootstrap_indices(len(prepared["y_train"]), rng)
                member_data["x_train"] = prepared["x_train"][idx]
                member_data["y_train"] = prepared["y_train"][idx]
            trainer = run.make_trainer(member_cfg, member_data, None, quiet, progress)
            trainer.config = member_cfg
            trainer.fit(member_cfg["train"]["epochs"])
            finish_member(trainer, i)
    probs = np.stack(member_probs)
    accs = np.array([m["test_accuracy"] for m in members])
    metrics = {
        "ensemble": {
            "method": method,
            "size": size,
            "test_accuracy_mean_prob": float((combine(probs, "mean") == y_test).mean()),
            "test_accuracy_vote": float((combine(probs, "vote") == y_test).mean()),
        },
        "members": members,
        "member_test_accuracy_mean": float(accs.mean()),
        "member_test_accuracy_std": float(accs.std(ddof=1)) if size > 1 else 0.0,
        "config": cfg,
        "seed": cfg["seed"],
        "timing": {"wall_time_seconds": time.perf_counter() - start},
    }
    if out:
        manifest = {
            "kind": "nnparts-ensemble",
            "method": method,
            "combine": "mean",
            "members": [m["checkpoint"] for m in members],
        }
        run.write_json(os.path.join(out, "ensemble.json"), manifest)
        run.write_json(os.path.join(out, "metrics.json"), metrics)
    return metrics


def load_manifest(path: str) -> tuple[dict, list[str]]:
    """Read ``ensemble.json`` (or the folder holding it); return it and its members' paths."""
    if os.path.isdir(path):
        path = os.path.join(path, "ensemble.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable ensemble manifest ({e})") from None
    if manifest.get("kind") != "nnparts-ensemble" or not manifest.get("members"):
        raise ValueError(f"{path}: not an ensemble manifest written by nnparts train --ensemble")
    base = os.path.dirname(os.path.abspath(path))
    return manifest, [os.path.join(base, m) for m in manifest["members"]]


def is_ensemble(path: str) -> bool:
    """Whether ``path`` is an ensemble manifest or a folder holding one."""
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, "ensemble.json"))
    return os.path.basename(path) == "ensemble.json"


def evaluate_ensemble(
    path: str,
    dataset: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    out: str | None = None,
    tta: str | None = None,
    combine_by: str | None = None,
) -> dict:
    """Evaluate the members of an ensemble (``ensemble.json`` or its folder) on a split and
    combine them (the manifest's rule unless ``combine_by`` is given)."""
    from nnparts import data as datasets
    from nnparts.train import checkpoint as ckpt
    from nnparts.train import config as configs
    from nnparts.train import run
    from nnparts.train.models import build_model
    from nnparts.train.trainer import load_model_state, predict

    manifest, paths = load_manifest(path)
    method = combine_by or manifest.get("combine", "mean")
    probs, y, name = [], None, dataset
    for member in paths:
        model_state, _, meta = ckpt.load(member)
        cfg = configs.resolve(meta["config"])
        name = dataset or cfg["data"]["dataset"]
        x, y = datasets.load_split(
            name, split=split, data_dir=data_dir or cfg["data"]["data_dir"], download=True
        )
        stats = meta.get("normalization") or {"mean": None, "std": None}
        model = build_model(cfg["model"], tuple(x.shape[1:]), 10)
        load_model_state(model, model_state, member)
        member_tta = cfg["train"]["tta"] if tta is None else tta
        logits = predict(
            model, run._to_float(x, stats), cfg["train"]["eval_batch_size"], member_tta
        )
        probs.append(softmax_probs(logits))
    stack = np.stack(probs)
    accs = [float((p.argmax(1) == y).mean()) for p in stack]
    metrics = {
        "ensemble": os.path.abspath(path),
        "dataset": name,
        "split": split,
        "members": len(paths),
        "combine": method,
        "accuracy": float((combine(stack, method) == y).mean()),
        "member_accuracy": accs,
        "member_accuracy_mean": float(np.mean(accs)),
        "member_accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
    }
    if out:
        os.makedirs(out, exist_ok=True)
        run.write_json(os.path.join(out, "metrics.json"), metrics)
    return metrics
