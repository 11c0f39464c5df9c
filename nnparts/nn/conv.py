"""Convolution and pooling layers (modules around :mod:`nnparts.functional.conv`/``pooling``)."""

from __future__ import annotations

import math

import numpy as np

from nnparts import init as initializers
from nnparts.functional.conv import _pair, conv2d
from nnparts.functional.pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from nnparts.nn.module import Module, Parameter
from nnparts.random import get_rng

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d"]


class Conv2d(Module):
    """2-D convolution layer: ``out = conv2d(x, weight, bias, stride, padding)``.

    The course's Convolution layer holds ``W (FN, C, FH, FW)`` and ``b (FN,)``; that is PyTorch's
    layout too (``out_channels, in_channels, kh, kw``), so weights copy across unchanged.

    Args:
        in_channels, out_channels: channel counts ``C`` and ``FN``.
        kernel_size, stride, padding: an int or a pair ``(height, width)``.
        bias: learn a per-output-channel bias.
        init: initializer name from :mod:`nnparts.init` or a callable ``f(shape, rng=...)``;
            fans are ``fan_in = in*kh*kw``, ``fan_out = out*kh*kw``. ``"default"`` is PyTorch's
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
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d needs kernel_size >= 1, stride >= 1, padding >= 0; got kernel_size="
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding}"
            )
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        init_fn = initializers.get(init)
        rng = get_rng(rng)  # one generator for weight and bias (an int seed would repeat)
        self.weight = Parameter(init_fn(shape, rng=rng, dtype=dtype))
        if bias:
            if init_fn is initializers.default:
                bound = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
                b = initializers.uniform((out_channels,), -bound, bound, rng=rng, dtype=dtype)
            else:
                b = np.zeros(out_channels, dtype=dtype)
            self.bias = Parameter(b)
        else:
            self.bias = None

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class MaxPool2d(Module):
    """Max pooling (see :func:`nnparts.functional.max_pool2d`; stride defaults to the kernel)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(MaxPool2d):
    """Average pooling with zero padding counted (PyTorch's ``count_include_pad=True``)."""

    def forward(self, x):
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """``(N, C, H, W) -> (N, C)``: the mean of each feature map (``keepdims`` keeps ``1x1``)."""

    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        return global_avg_pool2d(x, keepdims=self.keepdims)
