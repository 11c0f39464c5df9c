"""The affine (fully connected) layer as one fused op."""

from __future__ import annotations

import numpy as np

from nnparts import threads
from nnparts.tensor import Function, Tensor


def _shape_hint(shape, weight) -> str:
    """The likely fix for an input that does not fit ``weight``: images not flattened, or a
    flattened size that is not ``in_features``."""
    if len(shape) < 3:
        return ""
    per_sample = int(np.prod(shape[1:]))
    n_in = weight.shape[0]
    if per_sample == n_in:
        return (
            f"; the input looks like a batch of images {shape}: flatten it first with "
            f"nn.Flatten() or x.reshape(len(x), -1), giving ({shape[0]}, {n_in})"
        )
    return (
        f"; flattened per sample the input has {per_sample} features, not {n_in}: check the "
        f"image size, or set in_features={per_sample} (and flatten with nn.Flatten())"
    )


class Linear(Function):
    """``Y = X W + b`` for ``X (N, in)``, ``W (in, out)``, ``b (out,)``.

    Backward (the course's Affine layer): ``dX = dY W^T``, ``dW = X^T dY``, ``db = sum_N dY``.
    Inputs with more than two dimensions are treated as a batch of rows ``(..., in)``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        if weight.ndim != 2:
            raise ValueError(f"linear weight must be 2-D (in, out), got shape {weight.shape}")
        if x.ndim < 1 or x.shape[-1] != weight.shape[0]:
            raise ValueError(
                f"linear shape mismatch: input {x.shape} has {x.shape[-1] if x.ndim else 0} "
                f"features but weight {weight.shape} expects {weight.shape[0]} "
                "(weight layout is (in_features, out_features))" + _shape_hint(x.shape, weight)
            )
        if bias is not None and bias.shape != (weight.shape[1],):
            raise ValueError(
                f"linear bias shape {bias.shape} does not match weight {weight.shape}; "
                f"expected ({weight.shape[1]},)"
            )
        ctx.save(x, weight)
        y = threads.matmul(x, weight) if x.ndim == 2 else x @ weight
        if bias is not None:
            y += bias
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        needs = ctx.needs_grad
        need_b = len(needs) > 2 and needs[2]
        g2 = g.reshape(-1, g.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        gb = g2.sum(axis=0) if need_b else None
        if needs[0] and needs[1] and g.ndim == 2:
            # the two products are independent and of similar size: one on each thread
            gx, gw = threads.parallel_tasks(
                x.size * weight.shape[1] // 32, lambda: g @ weight.T, lambda: x2.T @ g2
            )
            return gx, gw, gb
        gx = gw = None
        if needs[0]:
            gx = threads.matmul(g, weight.T) if g.ndim == 2 else g @ weight.T
        if needs[1]:
            gw = threads.matmul(x2.T, g2)
        return gx, gw, gb


def linear(x, weight, bias=None) -> Tensor:
    """Affine map ``x @ weight + bias`` with ``weight`` of shape ``(in, out)``."""
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
