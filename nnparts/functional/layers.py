"""The affine (fully connected) layer as one fused op."""

from __future__ import annotations

from nnparts import threads
from nnparts.tensor import Function, Tensor


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
                "(weight layout is (in_features, out_features))"
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
