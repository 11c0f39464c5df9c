"""Normalization layers: BatchNorm1d/2d, LayerNorm, InstanceNorm2d, GroupNorm, WeightNorm.

The math (forward and hand-written backward) lives in :mod:`nnparts.functional.normalization`;
these modules hold the learnable ``weight`` (gamma) and ``bias`` (beta) and the running
statistics, with PyTorch's names, defaults and state_dict keys.
"""

from __future__ import annotations

import numpy as np

from nnparts.functional import normalization as N
from nnparts.nn.module import Module, Parameter
from nnparts.tensor import Tensor

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "InstanceNorm2d", "GroupNorm", "WeightNorm"]


def _channel_state(module, num_features, affine, track_running_stats, dtype):
    """Per-channel gamma/beta (ones/zeros) and running statistics, as PyTorch's norms hold."""
    module.affine, module.track_running_stats = bool(affine), bool(track_running_stats)
    if affine:
        module.weight = Parameter(np.ones(num_features, dtype=dtype))
        module.bias = Parameter(np.zeros(num_features, dtype=dtype))
    else:
        module.weight = module.bias = None
    if track_running_stats:
        module.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        module.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        module.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
    else:
        module.running_mean = module.running_var = module.num_batches_tracked = None


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d (they differ only in the accepted input rank)."""

    _ranks: tuple = ()
    _layout: str = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"{type(self).__name__} needs num_features > 0, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] (or None), got {momentum}")
        self.num_features = int(num_features)
        self.eps, self.momentum = float(eps), momentum
        _channel_state(self, num_features, affine, track_running_stats, dtype)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def _check_input(self, x):
        shape = tuple(np.shape(x.data if isinstance(x, Tensor) else x))
        if len(shape) not in self._ranks:
            raise ValueError(
                f"{type(self).__name__} expects a {' or '.join(f'{r}-D' for r in self._ranks)} "
                f"input {self._layout}, got shape {shape}"
            )
        if shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got an input with {shape[1]} "
                f"channels (shape {shape}); expected {self._layout} with C={self.num_features}"
            )

    def forward(self, x):
        self._check_input(x)
        use_batch = self.training or not self.track_running_stats
        return N.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=use_batch,
            momentum=self.momentum,
            eps=self.eps,
            num_batches_tracked=self.num_batches_tracked if self.training else None,
        )

    def fold(self):
        """The inference-time map ``y = scale * x + shift`` per channel, as NumPy arrays::

            scale = gamma / sqrt(running_var + eps)
            shift = beta - gamma * running_mean / sqrt(running_var + eps)

        Eval-mode output equals ``x * scale + shift`` (broadcast over the channel axis 1); a
        preceding Linear/Conv can absorb it (``W' = W * scale``, ``b' = b * scale + shift``).
        """
        if not self.track_running_stats:
            raise ValueError(
                f"{type(self).__name__}(track_running_stats=False) has no running statistics to "
                "fold; it always normalizes with the batch statistics"
            )
        inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        gamma = self.weight.data if self.affine else np.ones_like(inv_std)
        beta = self.bias.data if self.affine else np.zeros_like(inv_std)
        scale = gamma * inv_std
        return scale, beta - self.running_mean * scale

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalization (Ioffe & Szegedy 2015) of ``(N, C)`` or ``(N, C, L)`` input.

    Training: ``y = gamma * (x - mu_B) / sqrt(var_B + eps) + beta`` with the mini-batch mean and
    biased variance per feature; the running statistics follow PyTorch::

        running_mean = (1 - momentum) * running_mean + momentum * mu_B
        running_var  = (1 - momentum) * running_var  + momentum * var_B * m/(m-1)

    (the course writes ``running = momentum * running + (1 - momentum) * batch``: its momentum
    0.9 is PyTorch's 0.1). Evaluation uses the running statistics, so each sample's output no
    longer depends on the rest of the batch. A batch of one sample in training mode raises
    ValueError. ``fold()`` returns the inference-time per-channel (scale, shift).
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` input, statistics per channel over N*H*W values
    (not over C*H*W as the course's own code does). Same semantics as :class:`BatchNorm1d`.
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class LayerNorm(Module):
    """Layer normalization (Ba et al. 2016) over the trailing ``normalized_shape`` dims.

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with statistics per sample, so training
    and evaluation behave the same and a batch of one works. ``weight``/``bias`` have shape
    ``normalized_shape``.
    """

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) <= 0:
            raise ValueError(
                f"LayerNorm needs a non-empty normalized_shape of positive sizes, got "
                f"{normalized_shape}"
            )
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
            self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype)) if bias else None
        else:
            self.weight = self.bias = None

    def forward(self, x):
        if self.weight is not None and self.bias is None:  # weight only: scale after
            return N.layer_norm(x, self.normalized_shape, None, None, self.eps) * self.weight
        return N.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class InstanceNorm2d(Module):
    """Instance normalization (Ulyanov et al. 2016) of ``(N, C, H, W)``: statistics per sample
    and channel over H*W. As in PyTorch, ``affine=False`` and ``track_running_stats=False`` by
    default, so training and evaluation both use the instance statistics.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        dtype=np.float32,
    ):
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"InstanceNorm2d needs num_features > 0, got {num_features}")
        self.num_features = int(num_features)
        self.eps, self.momentum = float(eps), momentum
        _channel_state(self, num_features, affine, track_running_stats, dtype)

    def forward(self, x):
        shape = tuple(np.shape(x.data if isinstance(x, Tensor) else x))
        if len(shape) != 4 or shape[1] != self.num_features:
            raise ValueError(
                f"InstanceNorm2d({self.num_features}) expects input (N, {self.num_features}, H, W),"
                f" got shape {shape}"
            )
        use_input_stats = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked[...] += 1
        return N.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats=use_input_stats,
            momentum=self.momentum,
            eps=self.eps,
        )

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class GroupNorm(Module):
    """Group normalization (Wu & He 2018): channels split into ``num_groups`` groups, statistics
    per sample and group; independent of the batch size. ``weight``/``bias`` per channel.
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        if num_groups <= 0 or num_channels <= 0 or num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_channels={num_channels} is not divisible by "
                f"num_groups={num_groups}; num_groups must be a positive divisor of num_channels"
            )
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps, self.affine = float(eps), bool(affine)
        if affine:
            self.weight = Parameter(np.ones(num_channels, dtype=dtype))
            self.bias = Parameter(np.zeros(num_channels, dtype=dtype))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        shape = tuple(np.shape(x.data if isinstance(x, Tensor) else x))
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm({self.num_groups}, {self.num_channels}) expects input "
                f"(N, {self.num_channels}, *), got shape {shape}"
            )
        return N.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class WeightNorm(Module):
    """Weight normalization (Salimans & Kingma 2016) of ``module.<name>``: ``w = g * v / ||v||``.

    The norm is per output unit: over every axis but ``dim``. By default ``dim`` is the output
    axis of nnparts' layouts: 1 for a 2-D Linear weight ``(in, out)`` (one g per column, shape
    ``(1, out)``), 0 for a Conv weight ``(out, in, kh, kw)`` (g of shape ``(out, 1, 1, 1)``).
    At construction ``v = w`` and ``g = ||w||``, so the wrapped layer starts with the same output.

    The original ``weight`` Parameter is replaced by ``weight_g`` and ``weight_v`` (held by this
    wrapper); each forward recomputes ``w`` and assigns it to ``module.<name>`` before calling the
    module, so any module whose forward reads ``self.<name>`` works, and gradients flow to g and
    v. PyTorch: ``torch.nn.utils.parametrizations.weight_norm`` (its ``dim`` counts in its own
    ``(out, in)`` Linear layout, i.e. dim 0 there is dim 1 here).
    """

    def __init__(self, module: Module, name: str = "weight", dim: int | None = -1):
        super().__init__()
        weight = module._parameters.get(name) if isinstance(module, Module) else None
        if weight is None:
            raise ValueError(
                f"WeightNorm: {type(module).__name__} has no parameter {name!r}; its parameters "
                f"are {list(getattr(module, '_parameters', {}))}"
            )
        if dim == -1:  # auto: the output-unit axis
            dim = 1 if weight.ndim == 2 else 0
        if dim is not None and not -weight.ndim <= dim < weight.ndim:
            raise ValueError(f"WeightNorm: dim={dim} is out of range for weight {weight.shape}")
        self.name, self.dim = name, (None if dim is None else dim % weight.ndim)
        axes = (
            tuple(range(weight.ndim))
            if dim is None
            else tuple(a for a in range(weight.ndim) if a != self.dim)
        )
        v = weight.data.copy()
        g = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=axes, keepdims=True)).astype(v.dtype)
        del module._parameters[name]
        self.module = module
        setattr(self, name + "_g", Parameter(g))
        setattr(self, name + "_v", Parameter(v))
        self._assign()

    def compute_weight(self) -> Tensor:
        """``g * v / ||v||`` as a differentiable tensor."""
        g = getattr(self, self.name + "_g")
        v = getattr(self, self.name + "_v")
        return N.weight_norm(g, v, self.dim)

    def _assign(self):
        w = self.compute_weight()
        # a plain Tensor attribute (not a Parameter): the optimizer only sees g and v
        object.__setattr__(self.module, self.name, w)

    def forward(self, *args, **kwargs):
        self._assign()
        return self.module(*args, **kwargs)

    def extra_repr(self):
        return f"name={self.name!r}, dim={self.dim}"
