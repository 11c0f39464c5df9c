"""Hyperparameters and validation: grid vs random search, the course's random search through
``nnparts tune`` with a coarse-to-fine round, Bayesian vs random search, k-fold cross-validation
(claims 39, 40, 41, 45)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import yaml

from nnparts import optim
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment

UNIT = "hyperparameters"


# ------------------------------------------------------------------------------------------------
def grid_vs_random_regret(k: int, n_problems: int, rng) -> tuple[float, float]:
    """Mean regret (best possible - best found) of a k x k grid and of k^2 random points on
    ``n_problems`` random instances of ``f(x, y) = exp(-((x - a) / 0.05)^2) + 0.01 y`` on the
    unit square: only ``x`` matters (``a ~ U(0.05, 0.95)``), ``y`` barely."""
    a = rng.uniform(0.05, 0.95, n_problems)[:, None]
    best = np.exp(0.0) + 0.01  # at x = a, y = 1

    def f(x, y):
        return np.exp(-(((x - a) / 0.05) ** 2)) + 0.01 * y

    g = (np.arange(k) + 0.5) / k  # the grid's cell centres
    gx, gy = (v.ravel()[None, :] for v in np.meshgrid(g, g))
    grid_best = f(gx, gy).max(axis=1)
    rx, ry = rng.uniform(0, 1, (n_problems, k * k)), rng.uniform(0, 1, (n_problems, k * k))
    random_best = f(rx, ry).max(axis=1)
    return float(np.mean(best - grid_best)), float(np.mean(best - random_best))


@experiment(
    name="grid-vs-random",
    unit=UNIT,
    claims=[39],
    claim="At an equal budget, random search beats grid search when only a few of the "
    "hyperparameters matter: a grid tries only k distinct values of each, random search tries "
    "k^2 (Bergstra & Bengio 2012).",
    source="001 CS231n-style notes, 003 BITAMIN HPO slides, 004 devcourse notes",
    setup="f(x, y) = exp(-((x - a) / 0.05)^2) + 0.01 y on [0, 1]^2 with the optimum a ~ U(0.05, "
    "0.95) drawn anew for each of 2,000 problems: x matters, y hardly; a k x k grid (cell "
    "centres) against k^2 uniform random points, k = 2..6 (budgets 4..36).",
    quick_setup="500 problems.",
    measures="mean regret (best possible value - best value found) per budget, grid and random",
    rule=Rule(
        Check("regret_random_9", "<", "regret_grid_9"),
        Check("regret_random_16", "<", "regret_grid_16"),
        Check("regret_random_25", "<", "regret_grid_25"),
    ),
)
def grid_vs_random(ctx):
    n = ctx.pick(2000, 500)
    ks = [2, 3, 4, 5, 6]
    fig, ax = ctx.figure("regret", figsize=(6, 4))
    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        rows = [grid_vs_random_regret(k, n, rng) for k in ks]
        ctx.record(
            seed,
            **{f"regret_grid_{k * k}": g for k, (g, _) in zip(ks, rows)},
            **{f"regret_random_{k * k}": r for k, (_, r) in zip(ks, rows)},
        )
        first = seed == ctx.seeds[0]
        ax.plot(
            [k * k for k in ks],
            [g for g, _ in rows],
            "C0o-",
            alpha=0.6,
            label="grid" if first else None,
        )
        ax.plot(
            [k * k for k in ks],
            [r for _, r in rows],
            "C1s-",
            alpha=0.6,
            label="random" if first else None,
        )
    ax.set(
        xlabel="trials (budget)",
        ylabel="mean regret",
        yscale="log",
        title="one important, one unimportant hyperparameter (a line per seed)",
    )
    ax.legend()


# ------------------------------------------------------------------------------------------------
def _search_config(path: str, base: dict, search: dict, tune: dict):
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({**base, "search": search, "tune": tune}, f)


def run_search(base: dict, search: dict, tune: dict, out: str) -> list:
    """Run ``nnparts tune`` (its Python entry point) on a config written into ``out``; return
    the finished studies' trials, round by round (optuna FrozenTrials)."""
    try:
        import optuna
    except ImportError:
        raise RuntimeError(
            "this experiment runs nnparts tune, which needs Optuna: pip install 'nnparts[tune]'"
        ) from None

    from nnparts.tune import storage as storages
    from nnparts.tune import tune as run_tune

    path = os.path.join(out, "search.yaml")
    _search_config(path, base, search, tune)
    code = run_tune(path, flags={"out": out}, log=lambda line: None)
    if code != 0:
        raise RuntimeError(f"nnparts tune exited with {code} (see {out})")
    url = storages.embedded_url(out)
    names = sorted(optuna.get_all_study_names(storage=url))  # "search" then its round 2
    return [optuna.load_study(study_name=name, storage=url).trials for name in names]


COURSE_BASE = {
    "data": {
        "dataset": "fashion-mnist",
        "train_subset": 500,
        "val_size": 100,
        "test_subset": 100,
        "normalize": "standardize",
    },
    "model": {
        "name": "mlp",
        "hidden": [100] * 6,
        "activation": "relu",
        "init": "he_normal",
        "norm": "none",
        "dropout": 0.0,
    },
    "optimizer": {"name": "sgd", "momentum": 0.0},
    "scheduler": {"name": "none"},
    "train": {"epochs": 50, "batch_size": 100},
}
COURSE_SPACE = {
    "optimizer.lr": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "optimizer.weight_decay": {"type": "float", "low": 1e-8, "high": 1e-4, "log": True},
}


@experiment(
    name="course-random-search",
    unit=UNIT,
    claims=[40],
    claim="The course's random search (lr = 10^U(-6, -2), weight decay = 10^U(-8, -4), 100 "
    "trials) finds the good region — the best trials sit at large learning rates — and a "
    "coarse-to-fine second round narrowed around the best ones finds better trials.",
    source="003 BITAMIN HPO slides (the course's hyperparameter_optimization), 004 devcourse",
    setup="Through `nnparts tune` (random sampler, embedded storage): the course's setup — 500 "
    "Fashion-MNIST training images with 100 of them held out for validation, 784-[100 x 6]-10 "
    "ReLU He, SGD, batch 100, 50 epochs, lr and weight decay log-uniform as above, 100 trials; "
    "then a second round of 30 random trials in the ranges narrowed around the top 5 "
    "(margin 0.25 of each log range).",
    quick_setup="25 trials of 10 epochs, a second round of 10.",
    measures="where the top 10 trials' lr and weight decay lie (median log10), best validation "
    "accuracy of each round, mean validation accuracy of each round's trials",
    rule=Rule(
        Check("top10_median_log_lr", ">", -4),
        Check("round2_best", ">=", "round1_best"),
        Check("round2_mean", ">", "round1_mean"),
    ),
    seeds=1,
)
def course_random_search(ctx):
    trials, epochs, refine = ctx.pick(100, 25), ctx.pick(50, 10), ctx.pick(30, 10)
    for seed in ctx.seeds:
        base = {**COURSE_BASE, "seed": seed}
        base["train"] = {**COURSE_BASE["train"], "epochs": epochs}
        tune = {
            "sampler": "random",
            "trials": trials,
            "seed": seed,
            "figures": False,
            "refine": {"top_k": 5, "margin": 0.25, "trials": refine},
        }
        with tempfile.TemporaryDirectory(prefix="nnparts-lab-tune-") as out:
            rounds = run_search(base, COURSE_SPACE, tune, out)
        done = [[t for t in r if t.value is not None] for r in rounds]
        first, second = done[0], done[1] if len(done) > 1 else []
        top = sorted(first, key=lambda t: -t.value)[:10]
        lr = np.array([t.params["optimizer.lr"] for t in first])
        wd = np.array([t.params["optimizer.weight_decay"] for t in first])
        val = np.array([t.value for t in first])
        ctx.record(
            seed,
            round1_best=float(val.max()),
            round1_mean=float(val.mean()),
            round2_best=float(max(t.value for t in second)) if second else float("nan"),
            round2_mean=float(np.mean([t.value for t in second])) if second else float("nan"),
            top10_median_log_lr=float(np.median(np.log10([t.params["optimizer.lr"] for t in top]))),
            top10_median_log_wd=float(
                np.median(np.log10([t.params["optimizer.weight_decay"] for t in top]))
            ),
            trials_round1=len(first),
            trials_round2=len(second),
        )
        ctx.table(
            f"best 10 of round 1 (seed {seed})",
            ["rank", "val accuracy", "lr", "weight decay"],
            [
                [i + 1, t.value, t.params["optimizer.lr"], t.params["optimizer.weight_decay"]]
                for i, t in enumerate(top)
            ],
        )
        if seed == ctx.seeds[0]:
            fig, ax = ctx.figure("search", figsize=(6.5, 4.5))
            sc = ax.scatter(lr, wd, c=val, cmap="viridis", s=25, label="round 1")
            if second:
                ax.scatter(
                    [t.params["optimizer.lr"] for t in second],
                    [t.params["optimizer.weight_decay"] for t in second],
                    c=[t.value for t in second],
                    cmap="viridis",
                    marker="^",
                    s=40,
                    edgecolors="r",
                    label="round 2 (narrowed)",
                )
            fig.colorbar(sc, ax=ax, label="validation accuracy")
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="learning rate",
                ylabel="weight decay",
                title="the course's random search, then coarse-to-fine",
            )
            ax.legend(fontsize=8)
            grid, axes = ctx.figure("top20-curves", 4, 5, figsize=(13, 8.5), sharey=True)
            for ax_i, t in zip(axes.ravel(), sorted(first, key=lambda t: -t.value)[:20]):
                ax_i.plot(t.user_attrs.get("val_accuracy_curve", []))
                ax_i.set_title(
                    f"val {t.value:.2f}  lr {t.params['optimizer.lr']:.1e}\n"
                    f"wd {t.params['optimizer.weight_decay']:.1e}",
                    fontsize=7,
                )
                ax_i.tick_params(labelsize=6)
            grid.suptitle("top-20 trials of round 1: validation accuracy per epoch (as the course)")


# ------------------------------------------------------------------------------------------------
BO_BASE = {
    "data": {"dataset": "fashion-mnist", "train_subset": 1200, "val_size": 300, "test_subset": 100},
    "model": {"name": "mlp", "hidden": [64], "norm": "none", "dropout": 0.0},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "scheduler": {"name": "none"},
    "train": {"epochs": 3, "batch_size": 100},
}
BO_SPACE = {
    "optimizer.lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
    "optimizer.momentum": {"type": "float", "low": 0.0, "high": 0.99},
    "train.batch_size": {"type": "int", "low": 20, "high": 400, "step": 20},
}


def trials_to_target(values: list[float], target: float) -> int:
    """1-based index of the first value >= ``target``; ``len(values) + 1`` if none reaches it
    (censored: the budget ran out)."""
    for i, v in enumerate(values, 1):
        if v is not None and v >= target:
            return i
    return len(values) + 1


@experiment(
    name="bayesian-vs-random",
    unit=UNIT,
    claims=[41],
    claim="Bayesian optimization (a model of the objective chooses the next trial) reaches a "
    "target with fewer trials than random search.",
    source="003 BITAMIN HPO slides",
    setup="Through `nnparts tune`: MLP 784-64-10 on 1,200 Fashion-MNIST images (300 of them "
    "for validation), SGD, 3 epochs; lr 10^U(-5, 0), momentum U(0, 0.99), batch size 20..400; "
    "30 trials with the random, TPE (Optuna's, 5 random start-up trials) and GP (Optuna's "
    "GPSampler, needs torch) samplers, 4 repeats with different sampler seeds; target: "
    "validation accuracy 0.80.",
    quick_setup="12 trials, 2 repeats, TPE and random only.",
    measures="trials until the target (31 if never within 30), mean over repeats, per sampler",
    rule=Rule(
        Check("trials_tpe", "<", "trials_random"),
        over="mean",
        note="GP is reported beside TPE when torch is installed (it is not part of the rule, so "
        "the verdict does not depend on an optional dependency).",
    ),
    seeds=4,
)
def bayesian_vs_random(ctx):
    n_trials, target = ctx.pick(30, 12), 0.80
    samplers = ["random", "tpe"]
    if not ctx.quick:
        try:
            import torch  # noqa: F401

            samplers.append("gp")
        except ImportError:
            ctx.note("GP skipped: torch is not installed (pip install 'nnparts[gp]').")
    fig, ax = ctx.figure("best-so-far", figsize=(6.5, 4))
    for seed in ctx.seeds[: ctx.pick(len(ctx.seeds), 2)]:
        numbers = {}
        for name, color in zip(samplers, ("C0", "C1", "C2")):
            tune = {
                "sampler": name,
                "trials": n_trials,
                "seed": 100 + seed,
                "figures": False,
                "startup_trials": 5,
            }
            with tempfile.TemporaryDirectory(prefix="nnparts-lab-bo-") as out:
                (trials,) = run_search({**BO_BASE, "seed": 0}, BO_SPACE, tune, out)
            values = [t.value for t in sorted(trials, key=lambda t: t.number)]
            numbers[f"trials_{name}"] = trials_to_target(values, target)
            numbers[f"best_{name}"] = float(max(v for v in values if v is not None))
            best_so_far = np.maximum.accumulate([v if v is not None else 0 for v in values])
            ax.plot(
                range(1, len(values) + 1),
                best_so_far,
                color=color,
                alpha=0.6,
                label=name if seed == ctx.seeds[0] else None,
            )
        ctx.record(seed, **numbers)
    ax.axhline(target, color="k", ls=":", lw=1, label=f"target {target}")
    ax.set(
        xlabel="trial",
        ylabel="best validation accuracy so far",
        title="Bayesian (TPE, GP) vs random search (a line per repeat)",
    )
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------------
def _fit_score(x, y, xv, yv, seed, epochs):
    rng = np.random.default_rng([seed, 5])
    model = common.mlp([784, 32, 10], "relu", "he_normal", rng=rng)
    common.fit(
        model, optim.Adam(model.parameters(), lr=3e-3), x, y, rng, batch_size=100, epochs=epochs
    )
    return common.accuracy(model, xv, yv)


@experiment(
    name="kfold-vs-holdout",
    unit=UNIT,
    claims=[45],
    claim="k-fold cross-validation estimates the generalization accuracy with less variance "
    "than a single hold-out split.",
    source="002 boostcamp notes",
    setup="A pool of 1,000 Fashion-MNIST images; MLP 784-32-10 (Adam lr 3e-3, batch 100, 5 "
    "epochs); the estimate of its accuracy from one stratified hold-out split (20% validation) "
    "and from stratified k-fold CV (nnparts.tune.cv.stratified_kfold, k = 2, 3, 5, 10), each "
    "repeated over 10 different splits; the target is the accuracy on 5,000 test images of the "
    "model trained on the whole pool.",
    quick_setup="4 repeated splits, k = 2 and 5, 3 epochs, 2,000 test images.",
    measures="standard deviation of the estimate over the repeated splits, hold-out vs k-fold; "
    "mean error against the test accuracy",
    rule=Rule(Check("sd_kfold_5", "<", "sd_holdout"), Check("sd_kfold_2", "<", "sd_holdout")),
)
def kfold_vs_holdout(ctx):
    from nnparts.data import train_val_split
    from nnparts.tune.cv import stratified_kfold

    repeats, ks, epochs = ctx.pick(10, 4), ctx.pick([2, 3, 5, 10], [2, 5]), ctx.pick(5, 3)
    fig, ax = ctx.figure("spread", figsize=(6, 4))
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", 1000, ctx.pick(5000, 2000), seed=seed)
        truth = common.accuracy(_model_on(x, y, seed, epochs), xt, yt)
        holdout = []
        for r in range(repeats):
            xa, ya, xb, yb = train_val_split(
                x, y, val_fraction=0.2, seed=1000 * seed + r, stratify=True
            )
            holdout.append(_fit_score(xa, ya, xb, yb, r, epochs))
        numbers = {
            "test_accuracy": truth,
            "sd_holdout": float(np.std(holdout, ddof=1)),
            "bias_holdout": float(np.mean(holdout) - truth),
        }
        spreads = [numbers["sd_holdout"]]
        for k in ks:
            estimates = []
            for r in range(repeats):
                folds = stratified_kfold(y, k, seed=1000 * seed + r)
                estimates.append(
                    np.mean([_fit_score(x[tr], y[tr], x[va], y[va], r, epochs) for tr, va in folds])
                )
            numbers[f"sd_kfold_{k}"] = float(np.std(estimates, ddof=1))
            numbers[f"bias_kfold_{k}"] = float(np.mean(estimates) - truth)
            spreads.append(numbers[f"sd_kfold_{k}"])
        ctx.record(seed, **numbers)
        ax.plot(range(len(spreads)), spreads, "o-", alpha=0.7, label=f"seed {seed}")
    ax.set_xticks(range(len(ks) + 1), ["hold-out 20%"] + [f"{k}-fold" for k in ks])
    ax.set(ylabel="sd of the estimate over splits", title="spread of the accuracy estimate")
    ax.legend(fontsize=8)


def _model_on(x, y, seed, epochs):
    rng = np.random.default_rng([seed, 6])
    model = common.mlp([784, 32, 10], "relu", "he_normal", rng=rng)
    common.fit(
        model, optim.Adam(model.parameters(), lr=3e-3), x, y, rng, batch_size=100, epochs=epochs
    )
    return model
