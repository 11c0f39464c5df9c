"""Unit 01: activation functions (claims 1-8 of LAB.md).

Linear maps compose into one linear map; sigmoid's derivative is at most 1/4 and gradients vanish
with depth; sigmoid outputs are not zero-centred; ReLU units die; Swish is smoother than ReLU;
the naive softmax overflows; the softmax + cross-entropy gradient is p - y; and which activation
wins on Fashion-MNIST.
"""

from __future__ import annotations

import numpy as np

from nnparts import data, optim
from nnparts import functional as F
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.tensor import Tensor, no_grad

UNIT = "01 activation"


# --- helpers (tested in tests/test_lab_unit01.py) --------------------------------------------


def composed_linear(model) -> tuple[np.ndarray, np.ndarray]:
    """The one affine map ``x @ W + b`` that a stack of Linear layers (no activation) computes:
    ``W = W1 W2 ... WL`` and ``b = (...((b1 W2 + b2) W3 + b3) ...) WL + bL``."""
    layers = common.linear_layers(model)
    w = np.asarray(layers[0].weight.data, dtype=np.float64)
    b = _bias(layers[0], w.shape[1])
    for layer in layers[1:]:
        wl = np.asarray(layer.weight.data, dtype=np.float64)
        w, b = w @ wl, b @ wl + _bias(layer, wl.shape[1])
    return w, b


def _bias(layer, n: int) -> np.ndarray:
    return np.zeros(n) if layer.bias is None else np.asarray(layer.bias.data, dtype=np.float64)


def naive_softmax(z: np.ndarray) -> np.ndarray:
    """``exp(z) / sum exp(z)`` as written, without subtracting the max (overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)


def stable_softmax(z: np.ndarray) -> np.ndarray:
    """``exp(z - max z) / sum exp(z - max z)``: the same function, no overflow."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sign_agreement(g: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per unit: the fraction of its non-zero weight gradients that share the majority sign,
    ``max(#positive, #negative) / #non-zero`` along ``axis`` (1 = all one sign, 0.5 = half).
    A unit with no non-zero gradient counts as 1 (nothing disagrees)."""
    pos = (g > 0).sum(axis=axis)
    neg = (g < 0).sum(axis=axis)
    return np.maximum(pos, neg) / np.maximum(pos + neg, 1) + (pos + neg == 0)


def roughness(f: np.ndarray) -> float:
    """Mean absolute second difference of a 2-D grid of values along both axes, divided by the
    range of the values (0 for an affine landscape; scale-free)."""
    d2x = np.abs(f[2:, :] - 2 * f[1:-1, :] + f[:-2, :])
    d2y = np.abs(f[:, 2:] - 2 * f[:, 1:-1] + f[:, :-2])
    span = float(f.max() - f.min())
    return float((d2x.mean() + d2y.mean()) / 2 / span) if span > 0 else 0.0


def _grid(x: np.ndarray, n: int, pad: float = 0.3):
    lo, hi = x.min(0) - pad, x.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def _predict(model, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return model(Tensor(x)).data


# --- claim 1 -----------------------------------------------------------------------------------

MODELS_1 = {  # name -> (hidden sizes, activation)
    "logistic": ([], "identity"),
    "deep_linear": ([32, 32, 32, 32], "identity"),
    "relu": ([32, 32, 32], "relu"),
    "tanh": ([32, 32, 32], "tanh"),
}


@experiment(
    name="xor-spirals",
    unit=UNIT,
    claims=[1],
    claim="A linear model cannot fit XOR or two spirals; a stack of layers without an activation "
    "is still one linear map (its composed matrix); with a non-linearity the net fits.",
    source="000 ToBig's slides",
    setup="XOR (4 Gaussian blobs, noise 0.2) and two spirals (1.5 turns, noise 0.05), 400 points "
    "each. Logistic regression (2-2 softmax), a deep linear net 2-[32 x 4]-2 without activations, "
    "and 2-[32 x 3]-2 nets with ReLU and with tanh (He init); full-batch Adam lr 0.01, 600 "
    "steps. The deep linear net's composed W = W1...W5 and b are applied to the inputs and "
    "compared with the net's output.",
    quick_setup="150 steps",
    measures="training accuracy of each model; max |x W + b - net(x)| / max |net(x)| of the deep "
    "linear net",
    rule=Rule(
        Check("acc_logistic", "<=", 0.8),
        Check("acc_deep_linear", "<=", 0.8),
        Check("acc_relu", ">=", 0.95),
        Check("acc_tanh", ">=", 0.95),
        Check("composed_error", "<=", 1e-5),
        note="'fails' = at most 80% training accuracy (the best line on XOR gets ~75%); 'fits' = "
        "at least 95%. Evaluated per dataset and seed.",
    ),
)
def xor_spirals(ctx):
    steps = ctx.pick(600, 150)
    makers = {
        "xor": lambda s: data.xor(400, noise=0.2, seed=s),
        "spirals": lambda s: data.spirals(400, noise=0.05, seed=s),
    }
    shown = {}
    for group, make in makers.items():
        for seed in ctx.bar(ctx.seeds, desc=f"xor-spirals {group}"):
            x, y = make(ctx.rng(seed, 1))
            rng = ctx.rng(seed, 2)
            models, numbers = {}, {}
            for name, (hidden, act) in MODELS_1.items():
                model = common.mlp([2, *hidden, 2], act, init="he_normal", rng=rng)
                opt = optim.Adam(model.parameters(), lr=0.01)
                common.fit(model, opt, x, y, rng, batch_size=len(x), steps=steps)
                numbers[f"acc_{name}"] = common.accuracy(model, x, y)
                models[name] = model
            w, b = composed_linear(models["deep_linear"])
            out = _predict(models["deep_linear"], x).astype(np.float64)
            err = np.abs(x.astype(np.float64) @ w + b - out).max() / np.abs(out).max()
            ctx.record(seed, group=group, composed_error=float(err), **numbers)
            if seed == ctx.seeds[0]:
                shown[group] = (x, y, models, w, b)
    fig, axes = ctx.figure("boundaries", 2, 4, figsize=(13, 6.4))
    for row, (group, (x, y, models, w, b)) in enumerate(shown.items()):
        gx, gy, pts = _grid(x, 150)
        for col, (name, model) in enumerate(models.items()):
            ax = axes[row, col]
            p = stable_softmax(_predict(model, pts).astype(np.float64))[:, 1].reshape(gx.shape)
            ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.7)
            ax.scatter(*x.T, c=y, cmap="RdBu_r", s=6, edgecolors="k", linewidths=0.2)
            acc = common.accuracy(model, x, y)
            ax.set_title(f"{group}: {name} (train acc {acc:.2f})", fontsize=9)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        ctx.table(
            f"{group}: composed map of the deep linear net (seed {ctx.seeds[0]})",
            ["", "class 0", "class 1"],
            [["W row x1", *w[0].round(4)], ["W row x2", *w[1].round(4)], ["b", *b.round(4)]],
        )
    fig.suptitle("Decision regions (colour: P(class 1)); seed " + str(ctx.seeds[0]))


# --- claims 6 and 7 ----------------------------------------------------------------------------

SCALES_6 = [1, 10, 50, 88, 100, 300, 709, 710, 1000]


@experiment(
    name="softmax-overflow",
    unit=UNIT,
    claims=[6],
    claim="The naive softmax exp(z) / sum exp(z) overflows at large logits; subtracting the max "
    "logit first gives the same function without overflow.",
    source="000 ToBig's slides",
    setup="For each logit scale s in 1 ... 1000, 1,000 rows of 10 logits drawn U(-s, s) with one "
    "entry set to s, in float32 and float64; the naive and the max-subtracted softmax in NumPy, "
    "and the library's F.softmax.",
    quick_setup="200 rows per scale",
    measures="rows with an inf or NaN at s = 1000 (naive, stable, in both dtypes); the smallest "
    "scale where the naive one breaks; max |stable - F.softmax| (float64)",
    rule=Rule(
        Check("naive_bad_rows_1000_f32", ">", 0),
        Check("naive_bad_rows_1000_f64", ">", 0),
        Check("stable_bad_rows", "==", 0),
        Check("stable_vs_library", "<=", 1e-12),
    ),
)
def softmax_overflow(ctx):
    rows = ctx.pick(1000, 200)
    curves = {}
    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        numbers, stable_bad, lib_diff = {}, 0, 0.0
        for dtype, tag in ((np.float32, "f32"), (np.float64, "f64")):
            bad = []
            for s in SCALES_6:
                z = rng.uniform(-s, s, size=(rows, 10))
                z[np.arange(rows), rng.integers(0, 10, rows)] = s
                z = z.astype(dtype)
                naive, stable = naive_softmax(z), stable_softmax(z)
                bad.append(int((~np.isfinite(naive)).any(1).sum()))
                stable_bad += int((~np.isfinite(stable)).any(1).sum())
                if dtype == np.float64:
                    lib = F.softmax(Tensor(z)).data
                    lib_diff = max(lib_diff, float(np.abs(lib - stable).max()))
            numbers[f"naive_bad_rows_1000_{tag}"] = bad[-1]
            first = [s for s, b in zip(SCALES_6, bad) if b > 0]
            numbers[f"naive_breaks_at_{tag}"] = first[0] if first else float("nan")
            curves.setdefault(tag, []).append(np.array(bad) / rows)
        ctx.record(seed, stable_bad_rows=stable_bad, stable_vs_library=lib_diff, **numbers)
    fig, ax = ctx.figure("overflow")
    for tag, style in (("f32", "o-"), ("f64", "s--")):
        c = np.array(curves[tag])
        ax.plot(SCALES_6, c.mean(0), style, label=f"naive, {tag} (mean; band min-max)")
        ax.fill_between(SCALES_6, c.min(0), c.max(0), alpha=0.2)
    ax.plot(SCALES_6, np.zeros(len(SCALES_6)), "k:", label="max-subtracted, both dtypes")
    ax.set_xscale("log")
    ax.set_xlabel("logit scale s (max logit)")
    ax.set_ylabel("fraction of rows with inf/NaN")
    ax.set_title("Naive vs max-subtracted softmax")
    ax.legend(fontsize=8)


@experiment(
    name="softmax-ce-gradient",
    unit=UNIT,
    claims=[7],
    claim="The gradient of softmax followed by cross-entropy with respect to the logits is p - y "
    "(the softmax output minus the one-hot target).",
    source="000 ToBig's slides",
    setup="64 x 10 float64 logits N(0, 3^2) with random labels; the summed loss "
    "-sum log softmax(z)_y. p - y against central finite differences (eps 1e-6) of the loss over "
    "every logit, and against the library's fused F.cross_entropy backward (reduction 'sum'), "
    "also at logits scaled to max |z| = 1000.",
    quick_setup="16 x 10 logits",
    measures="max |p - y - finite difference|; max |p - y - library grad| at normal and at large "
    "logits; non-finite entries in the library's gradient at large logits",
    rule=Rule(
        Check("fd_error", "<=", 1e-6),
        Check("library_error", "<=", 1e-12),
        Check("library_error_large", "<=", 1e-12),
        Check("library_nonfinite_large", "==", 0),
    ),
)
def softmax_ce_gradient(ctx):
    n, c, eps = ctx.pick(64, 16), 10, 1e-6

    def loss(z, y):  # summed cross-entropy of each row set in z (..., n, c)
        m = z.max(-1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(-1)) + m[..., 0]
        return (lse - z[..., np.arange(len(y)), y]).sum(-1)

    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        z = 3.0 * rng.standard_normal((n, c))
        y = rng.integers(0, c, n)
        analytic = stable_softmax(z) - np.eye(c)[y]
        bump = np.eye(n * c).reshape(n * c, n, c) * eps  # one perturbed copy per logit
        fd = ((loss(z + bump, y) - loss(z - bump, y)) / (2 * eps)).reshape(n, c)
        numbers = {"fd_error": float(np.abs(fd - analytic).max())}
        for tag, zz in (("", z), ("_large", z * 1000 / np.abs(z).max())):
            t = Tensor(zz, requires_grad=True)
            F.cross_entropy(t, y, reduction="sum").backward()
            expect = stable_softmax(zz) - np.eye(c)[y]
            numbers[f"library_error{tag}"] = float(np.abs(t.grad - expect).max())
            if tag:
                numbers["library_nonfinite_large"] = int((~np.isfinite(t.grad)).sum())
        ctx.record(seed, **numbers)
        if seed == ctx.seeds[0]:
            shown = (analytic, fd, t.grad, expect)
    analytic, fd, lib_large, expect_large = shown
    fig, axes = ctx.figure("gradients", 1, 2, figsize=(8.4, 3.6))
    axes[0].scatter(analytic.ravel(), fd.ravel(), s=6)
    axes[0].set_xlabel("p - y")
    axes[0].set_ylabel("finite difference dL/dz")
    axes[0].set_title("logits N(0, 9): p - y vs finite differences", fontsize=9)
    axes[1].scatter(expect_large.ravel(), lib_large.ravel(), s=6, c="C1")
    axes[1].set_xlabel("p - y (max-subtracted softmax)")
    axes[1].set_ylabel("F.cross_entropy backward")
    axes[1].set_title("logits up to |z| = 1000: library vs p - y", fontsize=9)
    for ax in axes:
        ax.plot([-1, 1], [-1, 1], "k:", lw=0.8)
