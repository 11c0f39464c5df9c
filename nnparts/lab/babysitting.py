"""Babysitting the learning process, and data preprocessing (claims 17-20).

Claims 17-19 run through ``nnparts babysit``'s own checks (:mod:`nnparts.train.babysit`), on
training configs, so the lab measures exactly what a user's ``nnparts babysit`` reports. The
notes' net is CS231n's babysitting example: a two-layer net (one hidden layer of 50 ReLU units),
small random weights, no regularization, vanilla SGD. Claim 20 measures preprocessing with
:mod:`nnparts.data.preprocessing` (zero-centring, standardization, PCA / ZCA whitening).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from nnparts import data, optim
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.train import babysit
from nnparts.train import config as configs

UNIT = "babysitting"
LN10 = math.log(10)

# CS231n's babysitting net: 784-50-10, ReLU, small weights N(0, 0.01^2), no regularization, SGD
NOTES_NET = {
    "model": {"hidden": [50], "init": "normal", "norm": "none", "dropout": 0.0},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
    "train": {"batch_size": 100},
    "scheduler": {"name": "none"},
}
NOTES_RANGE = (1e-5, 1e-3)  # the notes' working range for their setup (CIFAR-10, raw pixels)


def notes_config(seed: int, **sections) -> dict:
    """The notes' net as a training config (``nnparts train`` / ``babysit`` accept it)."""
    cfg = {key: dict(value) for key, value in NOTES_NET.items()}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    return configs.resolve({**cfg, "seed": seed})


def lab_data(seed: int, n_train: int, n_val: int = 1000) -> dict:
    """Fashion-MNIST (stratified, standardized) in the shape ``babysit``'s checks take."""
    x, y, xv, yv = common.load("fashion-mnist", n_train, n_val, seed=seed, flat=False)
    return {"x_train": x, "y_train": y, "x_val": xv, "y_val": yv, "in_shape": x.shape[1:],
            "num_classes": 10}  # fmt: skip


@experiment(
    name="initial-loss",
    unit=UNIT,
    claims=[17],
    claim="With small random weights and no regularization, the loss at initialization is "
    "-ln(1/C) = ln C (2.303 for 10 classes); adding regularization raises it.",
    source="001 CS231n-style notes",
    setup="nnparts babysit's initial-loss and regularization checks on the notes' net "
    "(784-50-10, ReLU, weights N(0, 0.01^2), no regularization) on 1,000 Fashion-MNIST training "
    "images, in training mode; L2 (lambda/2 * sum W^2) of 1e-3 and of 1. For contrast (not in the "
    "rule), the same check on nnparts train's default config (784-512-256-10, He init, BatchNorm).",
    quick_setup="500 training images; otherwise the same.",
    measures="loss at init; loss with L2 1e-3 and with L2 1",
    rule=Rule(
        Check("initial_loss", "~", LN10, tol=0.05, label="|initial_loss - ln 10| <= 0.05"),
        Check("loss_l2_1e-3", ">", "initial_loss"),
        Check("loss_l2_1", ">", "loss_l2_1e-3"),
        note="'≈ ln C' read as within 0.05 nats (2%); 'raises' as strictly higher, and higher "
        "again for the stronger penalty.",
    ),
)
def initial_loss(ctx):
    n = ctx.pick(1000, 500)
    rows = []
    for seed in ctx.seeds:
        prepared = lab_data(seed, n)
        cfg = notes_config(seed)
        init = babysit.initial_loss(cfg, prepared, n)
        small = babysit.regularization_raises_loss(cfg, prepared, n, probe_l2=1e-3)
        large = babysit.regularization_raises_loss(cfg, prepared, n, probe_l2=1.0)
        default = babysit.initial_loss(configs.resolve({"seed": seed}), prepared, n)
        numbers = {
            "initial_loss": init.numbers["loss"],
            "loss_l2_1e-3": small.numbers["loss_with_l2"],
            "loss_l2_1": large.numbers["loss_with_l2"],
            "default_config_initial_loss": default.numbers["loss"],
        }
        ctx.record(seed, **numbers)
        rows.append([seed, init.status, default.status, *(f"{v:.4f}" for v in numbers.values())])
    cols = ["seed", "babysit: notes' net", "babysit: default config", *numbers]
    ctx.table("losses at init", cols, rows)
    fig, ax = ctx.figure("losses", figsize=(6.5, 3.6))
    labels = ["notes' net", "+ L2 1e-3", "+ L2 1", "default config\n(He, BatchNorm)"]
    values = np.array([[r[k] for k in numbers] for r in ctx.records])
    ax.bar(labels, values.mean(0), color=["tab:blue", "tab:purple", "tab:purple", "tab:gray"])
    ax.errorbar(labels, values.mean(0), yerr=[values.mean(0) - values.min(0),
                values.max(0) - values.mean(0)], fmt="none", color="k", capsize=4)  # fmt: skip
    ax.axhline(LN10, color="k", ls="--", lw=1, label="ln 10")
    ax.set_ylabel("cross-entropy at init (min-max over seeds)")
    ax.set_title("Loss at initialization", fontsize=10)
    ax.legend(fontsize=8)


@experiment(
    name="overfit-20",
    unit=UNIT,
    claims=[18],
    claim="Before training on the full data, make sure the model can overfit a very small "
    "subset: with 20 samples and regularization off, it reaches 100% training accuracy.",
    source="001 CS231n-style notes",
    setup="nnparts babysit's overfit-20 check: 20 Fashion-MNIST training images (2 per class), "
    "full batch, regularization and augmentation off, at most 200 steps (the notes' 200 "
    "epochs); accuracy in evaluation mode. Two configs: the notes' net (784-50-10, N(0, 0.01^2), "
    "SGD lr 0.1) and nnparts train's default (784-512-256-10, He, BatchNorm, dropout 0.2, Adam "
    "lr 1e-3).",
    measures="whether 100% training accuracy is reached within 200 steps, and after how many",
    rule=Rule(Check("reached", "==", 1), note="on every seed and both configs"),
)
def overfit_20(ctx):
    configs_by_group = {
        "notes' net (SGD)": notes_config,
        "default config (Adam)": lambda seed: configs.resolve({"seed": seed}),
    }
    rows, curves = [], {g: [] for g in configs_by_group}
    for seed in ctx.seeds:
        prepared = lab_data(seed, 1000)
        for group, make in configs_by_group.items():
            check = babysit.overfit_small(make(seed), prepared, 20, max_steps=200)
            o = check.numbers
            diverged = int(o["diverged"] is not None)
            steps = o["steps"] or 201
            ctx.record(seed, group, reached=int(o["reached"]), steps=steps,
                       final_loss=o["final_loss"], diverged=diverged)  # fmt: skip
            rows.append([seed, group, check.status, o["steps"], f"{o['final_loss']:.4f}"])
            curves[group].append(o["curve"])
    ctx.table("overfit-20 per seed", ["seed", "config", "babysit", "steps", "final loss"], rows)
    fig, axes = ctx.figure("curves", 1, 2, figsize=(9, 3.4))
    for ax, (group, runs) in zip(axes, curves.items()):
        for seed, curve in zip(ctx.seeds, runs):
            ax.plot(curve["step"], curve["accuracy"], label=f"seed {seed}")
        ax.set_title(group, fontsize=10)
        ax.set_xlabel("step (full batch of 20)")
        ax.set_ylabel("accuracy on the 20 (eval mode)")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)


@experiment(
    name="lr-sweep",
    unit=UNIT,
    claims=[19],
    claim="A learning rate that is too large makes the loss explode (to NaN); one that is too "
    "small leaves the loss barely changed; a coarse search over decades finds the working range "
    "(1e-3 .. 1e-5 in the notes' setup).",
    source="001 CS231n-style notes",
    setup="The notes' net (784-50-10, ReLU, N(0, 0.01^2), vanilla SGD, batch 100) on 5,000 "
    "standardized Fashion-MNIST images; coarse search: one run per lr in 1e-6, 1e-5, ..., 10, "
    "300 steps each, through the Trainer (its divergence guard stops a run whose loss is not "
    "finite or stays far above its start, and names the step). An lr works when its run did "
    "not diverge and its loss over the last 30 steps is below half of that over the first 30. "
    "Fine stage: nnparts babysit's LR "
    "range test (1e-6 to 10 over 200 steps).",
    quick_setup="1,000 training images, 100 steps per lr (the mean of 10 steps at each end), "
    "a 100-step range test.",
    measures="whether the guard fires at lr 10 (and at which step); the relative change of the "
    "loss at lr 1e-6; the number of working lrs and the range; the range test's suggestion",
    rule=Rule(
        Check("diverged_at_10", "==", 1),
        Check("change_at_1e-6", "<", 0.01),
        Check("n_working", ">=", 1),
        note="'barely changes' = the loss moves by less than 1% of its start",
    ),
)
def lr_sweep(ctx):
    n, steps, sweep_steps = ctx.pick((5000, 300, 200), (1000, 100, 100))
    lrs = [10.0**k for k in range(-6, 2)]
    searches, tests, rows = [], [], []
    for seed in ctx.bar(ctx.seeds, len(ctx.seeds), "lr-sweep"):
        prepared = lab_data(seed, n)
        cfg = notes_config(seed)
        search = babysit.coarse_lr_search(cfg, prepared, lrs, steps, 0.5,
                                          val=(prepared["x_val"], prepared["y_val"]))  # fmt: skip
        test = babysit.lr_range_test(cfg, prepared, 1e-6, 10.0, sweep_steps)
        trials = {t["lr"]: t for t in search["trials"]}
        top, bottom = trials[lrs[-1]], trials[lrs[0]]
        low, high = search["range"] or (math.nan, math.nan)
        change = abs(bottom["loss_end"] - bottom["loss_start"]) / bottom["loss_start"]
        suggested = test.numbers["suggested"] or (math.nan, math.nan)
        ctx.record(
            seed,
            diverged_at_10=int(top["diverged_after"] is not None),
            guard_stopped_after_at_10=top["diverged_after"] or 0,
            **{"change_at_1e-6": change},
            n_working=len(search["working"]),
            working_low=low,
            working_high=high,
            range_test_low=suggested[0],
            range_test_high=suggested[1],
        )  # fmt: skip
        for t in search["trials"]:
            acc = "-" if t["val_accuracy"] is None else f"{t['val_accuracy']:.3f}"
            where = t["message"].split(";")[0] if t["message"] else ""
            rows.append([seed, f"{t['lr']:g}", f"{t['loss_start']:.3f}", f"{t['loss_end']:.3f}",
                         acc, "yes" if t["works"] else "no", where])  # fmt: skip
        searches.append(search)
        tests.append(test)
    cols = ["seed", "lr", "loss (first tenth)", "loss (last tenth)", "val acc", "works", "guard"]
    ctx.table("coarse search", cols, rows)
    mean = lambda key: float(np.nanmean([r[key] for r in ctx.records]))  # noqa: E731
    ctx.note(
        f"Our working range (coarse grid, mean over seeds): {mean('working_low'):.2g} .. "
        f"{mean('working_high'):.2g}; the range test suggests {mean('range_test_low'):.2g} .. "
        f"{mean('range_test_high'):.2g}. The notes' 1e-5 .. 1e-3 is for CIFAR-10 pixels that are "
        "only zero-centred (std about 60 on the 0..255 scale); our inputs are standardized (std "
        "1), so the same steps need a learning rate about 60^2 times larger for the first layer."
    )
    fig, axes = ctx.figure("sweep", 1, 3, figsize=(14, 3.8))
    ax = axes[0]
    for t, color in zip(searches[0]["trials"], _colors(len(lrs))):
        losses = np.asarray(t["losses"], float)
        smoothed = babysit.centred_smooth(losses, 9)
        ax.plot(np.arange(1, len(losses) + 1), smoothed, color=color, label=f"lr {t['lr']:g}")
        if t["diverged_after"]:
            ax.plot(t["diverged_after"], 4.8, "x", color="tab:red", ms=10, mew=2)
    ax.set_ylim(0, 5)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(f"fixed-lr runs (seed {ctx.seeds[0]}; x: guard fired)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1]
    ratio = np.array([[t["loss_end"] / t["loss_start"] if t["diverged_after"] is None else np.nan
                       for t in s["trials"]] for s in searches])  # fmt: skip
    with warnings.catch_warnings():  # a diverged lr has no ratio on any seed
        warnings.simplefilter("ignore", RuntimeWarning)
        mid, low, high = (f(ratio, 0) for f in (np.nanmean, np.nanmin, np.nanmax))
    ax.plot(lrs, mid, "o-", color="tab:blue", label="mean over seeds (min-max band)")
    ax.fill_between(lrs, low, high, alpha=0.2, color="tab:blue")
    ax.axhline(0.5, color="k", ls=":", lw=1, label="works below 0.5")
    ax.axvspan(*NOTES_RANGE, color="tab:orange", alpha=0.2, label="the notes' range")
    div = [lr for lr, d in zip(lrs, np.isnan(ratio).any(0)) if d]
    for lr in div:
        ax.axvline(lr, color="tab:red", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss at the end / at the start")
    ax.set_title("coarse search (red dashes: diverged)", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[2]
    for test, seed in zip(tests, ctx.seeds):
        r = test.numbers
        lr_, loss_ = np.asarray(r["lrs"], float), np.asarray(r["losses"], float)
        ok = np.isfinite(loss_)
        ax.plot(lr_[ok], babysit.centred_smooth(loss_[ok], 9), label=f"seed {seed}")
        if r["suggested"]:
            ax.axvspan(*r["suggested"], color="tab:green", alpha=0.1)
    ax.set_xscale("log")
    ax.set_ylim(0, 5)
    ax.set_xlabel("learning rate (grows each step)")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title("LR range test (green: suggested)", fontsize=10)
    ax.legend(fontsize=7)


def _colors(n):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


class _Reached(Exception):
    pass


def steps_to_target(x, y, xv, yv, seed, rng, target, max_steps, every=25) -> tuple[int, list]:
    """SGD steps until the validation accuracy reaches ``target`` (checked every ``every``
    steps), or ``max_steps + every`` when it never does; and the accuracy curve."""
    model = common.mlp([784, 100, 100, 10], "relu", "he_normal", rng=np.random.default_rng(seed))
    opt = optim.SGD(model.parameters(), lr=0.01)
    curve = []

    def probe(step, loss):
        if step % every == 0:
            curve.append((step, common.accuracy(model, xv, yv)))
            if curve[-1][1] >= target:
                raise _Reached

    try:
        common.fit(model, opt, x, y, rng, batch_size=100, steps=max_steps, on_step=probe)
    except _Reached:
        return curve[-1][0], curve
    return max_steps + every, curve


@experiment(
    name="zero-centring",
    unit=UNIT,
    claims=[20],
    claim="Zero-centring the inputs (subtracting the mean image) speeds up training: with "
    "all-positive inputs a unit's weight gradients share one sign and updates zig-zag.",
    source="001 CS231n-style notes",
    setup="Fashion-MNIST, 10,000 training images, 1,000 validation images; the same MLP "
    "784-100-100-10 (ReLU, He init, the same initial weights and batches per seed), SGD lr 0.01, "
    "batch 100; inputs raw (pixels / 255, in [0, 1]), zero-centred (minus the training mean "
    "image) or standardized (also divided by each pixel's training std, as the notes' "
    "X /= np.std(X, axis=0)); statistics fit on the training images only.",
    quick_setup="1,000 training images, at most 300 steps.",
    measures="SGD steps until the validation accuracy reaches 80% (checked every 25 steps; "
    "max + 25 when never reached)",
    rule=Rule(Check("steps_centred", "<", "steps_raw")),
)
def zero_centring(ctx):
    n, max_steps = ctx.pick((10000, 2000), (1000, 300))
    target, curves = 0.8, {}
    for seed in ctx.seeds:
        x, y, xv, yv = common.load("fashion-mnist", n, 1000, seed=seed, normalize="scale")
        inputs = {"raw": (x, xv)}
        for name, pre in (("centred", data.ZeroCenter()), ("standardized", data.Standardize())):
            pre.fit(x)
            inputs[name] = (pre.transform(x), pre.transform(xv))
        numbers = {}
        for name, (xt, xvt) in inputs.items():
            steps, curve = steps_to_target(xt, y, xvt, yv, seed, ctx.rng(seed, 1), target,
                                           max_steps)  # fmt: skip
            numbers[f"steps_{name}"] = steps
            numbers[f"reached_{name}"] = int(steps <= max_steps)
            curves.setdefault(name, []).append(curve)
        ctx.record(seed, **numbers)
    fig, ax = ctx.figure("curves", figsize=(6.5, 3.8))
    for (name, runs), color in zip(curves.items(), ["tab:gray", "tab:blue", "tab:green"]):
        for i, curve in enumerate(runs):
            steps, acc = zip(*curve)
            ax.plot(steps, acc, color=color, alpha=0.8, label=name if i == 0 else None)
    ax.axhline(target, color="k", ls=":", lw=1, label=f"target {target:.0%}")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("validation accuracy")
    ax.set_title("steps to the target (one line per seed)", fontsize=10)
    ax.legend(fontsize=8)


def covariance(z: np.ndarray) -> np.ndarray:
    """The covariance of the rows of ``z`` (float64, ``/ N`` as the notes' ``X.T @ X / N``)."""
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    zc = z - z.mean(0)
    return zc.T @ zc / len(z)


def identity_errors(cov: np.ndarray) -> dict:
    """How far a covariance is from the identity: the largest |off-diagonal| entry and the
    largest |diagonal - 1|."""
    off = cov - np.diag(np.diag(cov))
    return {"max_offdiag": float(np.abs(off).max()),
            "max_diag_error": float(np.abs(np.diag(cov) - 1).max())}  # fmt: skip


@experiment(
    name="whitening",
    unit=UNIT,
    claims=[20],
    claim="PCA decorrelates the data (a diagonal covariance); whitening also divides each "
    "direction by its standard deviation, so the covariance becomes the identity.",
    source="001 CS231n-style notes",
    setup="5,000 Fashion-MNIST training images, pixels / 255; PCA whitening onto the top 100 "
    "components (the notes' reduction) and ZCA whitening (all 784 dimensions, rotated back to "
    "pixels), both with the notes' eps = 1e-5 (z / sqrt(S + eps)); nnparts.data.PCAWhitening and "
    "ZCAWhitening fit on the same images; covariance of the whitened training images.",
    quick_setup="2,000 training images.",
    measures="max |off-diagonal| and max |diagonal - 1| of the whitened covariance; the number "
    "of dimensions whose diagonal is off by more than 0.05",
    rule=Rule(
        Check("max_offdiag", "<=", 0.01),
        Check("max_diag_error", "<=", 0.01),
        note="covariance ≈ identity read as every entry within 0.01 of it; each whitening is a "
        "group",
    ),
)
def whitening(ctx):
    n = ctx.pick(5000, 2000)
    for seed in ctx.seeds:
        x, _, _, _ = common.load("fashion-mnist", n, 10, seed=seed, normalize="scale")
        whiteners = {"PCA (100)": data.PCAWhitening(100, eps=1e-5), "ZCA": data.ZCAWhitening(1e-5)}
        out = {}
        for group, w in whiteners.items():
            z = w.fit(x).transform(x)
            cov = covariance(z)
            err = identity_errors(cov)
            ctx.record(seed, group, **err,
                       dims_off=int((np.abs(np.diag(cov) - 1) > 0.05).sum()))  # fmt: skip
            out[group] = (z, cov)
        if seed == ctx.seeds[0]:
            shown = (x, covariance(x), out, whiteners)
            variances = whiteners["PCA (100)"].all_variances
    x, raw_cov, out, whiteners = shown
    ctx.note(
        f"Of the 784 eigenvalues of the training covariance (seed {ctx.seeds[0]}), "
        f"{int((variances < 1e-5).sum())} are below eps = 1e-5 and {int((variances < 1e-4).sum())} "
        "below 1e-4: directions of almost no variance (border pixels) that z / sqrt(S + eps) "
        "scales by sqrt(S / (S + eps)) < 1 instead of to 1."
    )
    fig, axes = ctx.figure("covariance", 1, 3, figsize=(12, 3.8))
    panels = [(raw_cov, "pixels / 255"), (out["PCA (100)"][1], "PCA-whitened (100)"),
              (out["ZCA"][1], "ZCA-whitened")]  # fmt: skip
    for ax, (cov, title) in zip(axes, panels):
        lim = float(np.abs(cov).max())
        im = ax.imshow(cov, cmap="coolwarm", vmin=-lim, vmax=lim)
        ax.set_title(f"covariance: {title}", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig, axes = ctx.figure("images", 3, 6, figsize=(10, 5.4))
    pca = whiteners["PCA (100)"]
    back = pca.inverse_transform(out["PCA (100)"][0][:6])  # the 100-component reconstruction
    rows = [(x[:6], "original"), (back, "PCA 100, back"), (out["ZCA"][0][:6], "ZCA-whitened")]
    for r, (images, label) in enumerate(rows):
        for c in range(6):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c]).reshape(28, 28), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
