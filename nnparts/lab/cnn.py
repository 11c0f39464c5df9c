"""CNN: convolution arithmetic, and the convolution's backward as a convolution (claim 42)."""

from __future__ import annotations

import numpy as np
from scipy import signal

from nnparts import nn
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.tensor import Tensor

UNIT = "cnn"

# (H, K, P, S): odd and even sizes, padding 0..2, strides 1..3, kernels 1..7
CASES = [
    (28, 3, 0, 1),
    (28, 3, 1, 1),
    (28, 5, 2, 1),
    (28, 3, 1, 2),
    (28, 5, 0, 2),
    (27, 3, 1, 2),
    (32, 7, 3, 2),
    (32, 4, 1, 2),
    (15, 3, 0, 3),
    (9, 1, 0, 1),
    (9, 1, 0, 2),
    (10, 5, 2, 3),
    (6, 6, 0, 1),
    (7, 2, 1, 1),
    (224, 7, 3, 2),
]


def full_convolution_grad(dy: np.ndarray, weight: np.ndarray, padding: int, size: int):
    """dX of a stride-1 convolution as the course draws it, independent of our conv code:
    dX[n, c] = sum over output channels o of the *full* 2-D convolution (scipy's, which flips
    the kernel) of dY[n, o] with W[o, c], cropped by the padding."""
    n, out_c = dy.shape[:2]
    in_c = weight.shape[1]
    dx = np.zeros((n, in_c, size, size))
    for i in range(n):  # a handful of images and channels: the definition, not a hot path
        for c in range(in_c):
            for o in range(out_c):
                full = signal.convolve2d(dy[i, o], weight[o, c], mode="full")
                dx[i, c] += full[padding : padding + size, padding : padding + size]
    return dx


@experiment(
    name="conv-arithmetic",
    unit=UNIT,
    claims=[42],
    claim="A convolution's output size is (H + 2P - K) / S + 1 (rounded down); its backward "
    "pass with respect to the input is itself a convolution: the full convolution of the "
    "output gradient with the kernel flipped (rotated 180 degrees).",
    source="002 boostcamp notes",
    setup=f"nn.Conv2d on random float64 inputs (batch 2, 3 -> 4 channels) for {len(CASES)} "
    "cases of (H, K, P, S); for the stride-1 cases, the input gradient from autograd against "
    "the full 2-D convolution (scipy.signal.convolve2d, which flips the kernel) of the output "
    "gradient with each kernel, summed over output channels and cropped by P.",
    measures="max |formula - actual output size| over the table; max |autograd dX - "
    "full-convolution dX| over the stride-1 cases",
    rule=Rule(
        Check("max_size_error", "==", 0),
        Check("max_backward_diff", "<=", 1e-10),
    ),
)
def conv_arithmetic(ctx):
    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        size_errors, diffs, rows = [], [], []
        for h, k, p, s in CASES:
            conv = nn.Conv2d(3, 4, k, stride=s, padding=p, rng=rng)
            conv.weight.data = conv.weight.data.astype(np.float64)
            conv.bias.data = conv.bias.data.astype(np.float64)
            x = Tensor(rng.standard_normal((2, 3, h, h)), requires_grad=True)
            y = conv(x)
            formula = (h + 2 * p - k) // s + 1
            size_errors.append(abs(formula - y.shape[-1]) + abs(formula - y.shape[-2]))
            diff = None
            if s == 1:
                dy = rng.standard_normal(y.shape)
                y.backward(dy)
                full = full_convolution_grad(dy, conv.weight.data, p, h)
                diff = float(np.abs(full - x.grad).max())
                diffs.append(diff)
                last = (x, full, k, p)
            rows.append([h, k, p, s, formula, f"{y.shape[-2]}x{y.shape[-1]}", diff])
        ctx.record(
            seed,
            max_size_error=int(max(size_errors)),
            max_backward_diff=float(max(diffs)),
            cases=len(CASES),
            stride1_cases=len(diffs),
        )
        if seed == ctx.seeds[0]:
            ctx.table(
                "cases (seed 0)", ["H", "K", "P", "S", "formula", "actual", "|dX diff|"], rows
            )
            shown = last
    # figure: the two input gradients of the last stride-1 case, and their difference
    x, full, k, p = shown
    fig, axes = ctx.figure("backward", 1, 3, figsize=(11, 3.4))
    panels = [
        (x.grad[0, 0], "autograd dX (channel 0)"),
        (full[0, 0], f"full convolution of dY with the kernel (crop {p})"),
        (x.grad[0, 0] - full[0, 0], "difference"),
    ]
    for ax, (img, title) in zip(axes, panels):
        im = ax.imshow(img, cmap="coolwarm")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
