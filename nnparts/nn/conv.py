"""Convolution and pooling layers (modules around :mod:`nnparts.functional.conv`/``pooling``)."""

from __future__ import annotations

import math

import numpy as np

from nnparts import init as initializers
from nnparts.functional.conv import _pair, conv2d
from nnparts.functional.pooling import (
    adaptive_avg_pool2d,
    avg_pool2d,
    global_avg_pool2d,
    max_pool2d,
)
from nnparts.nn.module import Module, Parameter
from nnparts.random import get_rng

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool2d"]


class Conv2d(Module):
    """2-D convolution layer: ``out = conv2d(x, weight, bias, stride, padding, dilation, groups)``.

    The course's Convolution layer holds ``W (FN, C, FH, FW)`` and ``b (FN,)``; that is PyTorch's
    layout too (``out_channels, in_channels, kh, kw``), so weights copy across unchanged.

    Args:
        in_channels, out_channels: channel counts ``C`` and ``FN``.
        kernel_size, stride, dilation: an int or a pair ``(height, width)``.
        padding: an int, a pair, ``'same'`` or ``'valid'`` (see :func:`nnparts.functional.conv2d`).
        groups: channel groups; the weight is ``(out, in/groups, kh, kw)``, ``groups=in_channels``
            is a depthwise convolution.
        bias: learn a per-output-channel bias.
        init: initializer name from :mod:`nnparts.init` or a callable ``f(shape, rng=...)``;
            fans come from the weight's shape, ``fan_in = in/groups*kh*kw``,
            ``fan_out = out*kh*kw`` (as PyTorch). ``"default"`` is PyTorch's
            ``U(+-1/sqrt(fan_in))`` for the weight and the bias; with any other initializer
            the bias starts at zero.
        rng: seed or ``numpy.random.Generator``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        init="default",
        rng=None,
        dtype=np.float32,
    ):
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(
                f"Conv2d needs positive channel counts, got in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"Conv2d padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(
                    f"Conv2d padding='same' needs stride 1 (as in PyTorch), got stride="
                    f"{self.stride}; give the padding as numbers for a strided convolution"
                )
            self.padding = padding
        else:
            self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        pads = (0,) if isinstance(self.padding, str) else self.padding
        if (
            min(self.kernel_size) < 1
            or min(self.stride) < 1
            or min(pads) < 0
            or min(self.dilation) < 1
        ):
            raise ValueError(
                f"Conv2d needs kernel_size >= 1, stride >= 1, padding >= 0, dilation >= 1; got "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}"
            )
        if (
            isinstance(groups, bool)
            or not isinstance(groups, (int, np.integer))
            or groups < 1
            or in_channels % groups
            or out_channels % groups
        ):
            raise ValueError(
                f"Conv2d groups={groups!r} must be an int >= 1 that divides in_channels="
                f"{in_channels} and out_channels={out_channels}"
            )
        self.groups = int(groups)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        init_fn = initializers.get(init)
        rng = get_rng(rng)  # one generator for weight and bias (an int seed would repeat)
        self.weight = Parameter(init_fn(shape, rng=rng, dtype=dtype))
        if bias:
            if init_fn is initializers.default:
                fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
                bound = 1.0 / math.sqrt(fan_in)
                b = initializers.uniform((out_channels,), -bound, bound, rng=rng, dtype=dtype)
            else:
                b = np.zeros(out_channels, dtype=dtype)
            self.bias = Parameter(b)
        else:
            self.bias = None

    def forward(self, x):
        if self.groups == 1 and self.dilation == (1, 1):
            return conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        return conv2d(
            x,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )

    def extra_repr(self):
        extra = ""
        if self.dilation != (1, 1):
            extra += f", dilation={self.dilation}"
        if self.groups != 1:
            extra += f", groups={self.groups}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}{extra}, bias={self.bias is not None}"
        )


class MaxPool2d(Module):
    """Max pooling (see :func:`nnparts.functional.max_pool2d`; stride defaults to the kernel).

    Arguments and defaults as ``torch.nn.MaxPool2d``: ``dilation``, ``return_indices`` (the
    forward then returns ``(out, indices)``) and ``ceil_mode``.
    """

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False
    ):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)

    def forward(self, x):
        if self.dilation == (1, 1) and not self.return_indices and not self.ceil_mode:
            return max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def extra_repr(self):
        extra = ""
        if self.dilation != (1, 1):
            extra += f", dilation={self.dilation}"
        if self.ceil_mode:
            extra += ", ceil_mode=True"
        if self.return_indices:
            extra += ", return_indices=True"
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}{extra}"
        )


class AvgPool2d(Module):
    """Average pooling (see :func:`nnparts.functional.avg_pool2d`): zero padding counted by
    default (``count_include_pad=True``), ``ceil_mode`` and ``divisor_override`` as
    ``torch.nn.AvgPool2d``."""

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, x):
        return avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
        )

    def extra_repr(self):
        extra = ""
        if self.ceil_mode:
            extra += ", ceil_mode=True"
        if not self.count_include_pad:
            extra += ", count_include_pad=False"
        if self.divisor_override is not None:
            extra += f", divisor_override={self.divisor_override}"
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}{extra}"
        )


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size (``torch.nn.AdaptiveAvgPool2d``); see
    :func:`nnparts.functional.adaptive_avg_pool2d`. ``output_size`` an int, a pair, or a pair
    with None (keep that input size)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(Module):
    """``(N, C, H, W) -> (N, C)``: the mean of each feature map (``keepdims`` keeps ``1x1``)."""

    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        return global_avg_pool2d(x, keepdims=self.keepdims)
