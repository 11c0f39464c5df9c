"""Building blocks of residual and dense networks.

* :class:`Residual` — ``y = F(x) + shortcut(x)`` (He et al., "Deep Residual Learning for Image
  Recognition", CVPR 2016). The identity path passes the gradient through unchanged:
  ``dL/dx = dL/dy * (dF/dx + 1)``, which is why very deep stacks still train.
* :class:`PreActBlock` — the pre-activation residual unit, BN-ReLU-conv-BN-ReLU-conv with the
  addition left un-activated (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).
* :class:`DenseLayer`, :class:`DenseBlock`, :class:`Transition` — DenseNet (Huang et al., "Densely
  Connected Convolutional Networks", CVPR 2017): layer ``l`` sees the concatenation
  ``[x_0, x_1, ..., x_{l-1}]`` of all earlier feature maps and adds ``k`` (the growth rate) new
  ones: ``x_l = H_l([x_0, ..., x_{l-1}])``, ``H_l = BN-ReLU-Conv3x3`` (DenseNet-B puts a
  bottleneck ``BN-ReLU-Conv1x1`` to ``bn_size*k`` channels first). A block of ``L`` layers maps
  ``C`` channels to ``C + L*k``. Between blocks a transition ``BN-ReLU-Conv1x1-AvgPool2x2``
  halves the spatial size; DenseNet-C's compression ``theta`` is choosing
  ``out_channels = floor(theta * in_channels)``.

Convolutions followed by BatchNorm carry no bias (the BN shift makes it redundant), as in
torchvision.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts.functional.math import concat
from nnparts.nn.conv import AvgPool2d, Conv2d
from nnparts.nn.module import Module
from nnparts.random import get_rng

__all__ = ["Residual", "PreActBlock", "DenseLayer", "DenseBlock", "Transition"]


def _bn_relu(channels):
    # imported here so this file loads even while normalization/activation are being edited
    from nnparts.nn.activation import ReLU
    from nnparts.nn.normalization import BatchNorm2d

    return BatchNorm2d(channels), ReLU()


def _positive(name, **values):
    for key, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} needs a positive integer {key}, got {v!r}")


class Residual(Module):
    """``y = block(x) + shortcut(x)``; the shortcut is the identity when ``None``.

    ``block(x)`` and ``shortcut(x)`` must have the same shape (use a 1x1 strided convolution as
    the shortcut when the block changes the channel count or the spatial size).
    """

    def __init__(self, block: Module, shortcut: Module | None = None):
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual block must be a Module, got {type(block).__name__}")
        self.block = block
        self.shortcut = shortcut

    def forward(self, x):
        out = self.block(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        if tuple(out.shape) != tuple(skip.shape):
            raise ValueError(
                f"Residual: block output shape {tuple(out.shape)} differs from the shortcut's "
                f"{tuple(skip.shape)}; give a shortcut (e.g. a 1x1 Conv2d with the same stride)"
            )
        return out + skip


class PreActBlock(Module):
    """Pre-activation residual unit: ``y = conv2(relu(bn2(conv1(relu(bn1(x)))))) + s(x)``.

    ``conv1`` is 3x3 with ``stride``, ``conv2`` 3x3 with stride 1. When the shape changes
    (``stride != 1`` or ``in_channels != out_channels``) the shortcut ``s`` is a 1x1 convolution
    with ``stride`` applied to the pre-activated input ``relu(bn1(x))`` (as in the paper's
    reference code); otherwise ``s(x) = x``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, init="default", rng=None
    ):
        super().__init__()
        _positive("PreActBlock", in_channels=in_channels, out_channels=out_channels, stride=stride)
        rng = get_rng(rng)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.bn1, self.relu1 = _bn_relu(in_channels)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, init=init, rng=rng)
        self.bn2, self.relu2 = _bn_relu(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, init=init, rng=rng)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels, out_channels, 1, stride, bias=False, init=init, rng=rng
            )
        else:
            self.shortcut = None

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + skip

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class DenseLayer(Module):
    """``H_l``: ``[BN-ReLU-Conv1x1(bn_size*k) ->] BN-ReLU-Conv3x3(k) [-> Dropout]``.

    Returns only the ``growth_rate`` new feature maps; :class:`DenseBlock` concatenates them.
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int,
        bottleneck: bool = False,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        init="default",
        rng=None,
    ):
        super().__init__()
        _positive("DenseLayer", in_channels=in_channels, growth_rate=growth_rate, bn_size=bn_size)
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"DenseLayer drop_rate must be in [0, 1), got {drop_rate!r}")
        rng = get_rng(rng)
        self.bottleneck = bool(bottleneck)
        channels = in_channels
        if self.bottleneck:
            self.bn0, self.relu0 = _bn_relu(in_channels)
            channels = bn_size * growth_rate
            self.conv0 = Conv2d(in_channels, channels, 1, bias=False, init=init, rng=rng)
        self.bn, self.relu = _bn_relu(channels)
        self.conv = Conv2d(channels, growth_rate, 3, padding=1, bias=False, init=init, rng=rng)
        if drop_rate > 0:
            from nnparts.nn.dropout import Dropout

            self.dropout = Dropout(drop_rate, rng=rng)
        else:
            self.dropout = None

    def forward(self, x):
        if self.bottleneck:
            x = self.conv0(self.relu0(self.bn0(x)))
        out = self.conv(self.relu(self.bn(x)))
        return out if self.dropout is None else self.dropout(out)


class DenseBlock(Module):
    """``num_layers`` dense layers, each fed the concatenation of every earlier feature map.

    ``out_channels = in_channels + num_layers * growth_rate``.
    """

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bottleneck: bool = False,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        init="default",
        rng=None,
    ):
        super().__init__()
        _positive(
            "DenseBlock", num_layers=num_layers, in_channels=in_channels, growth_rate=growth_rate
        )
        rng = get_rng(rng)
        self.num_layers, self.in_channels, self.growth_rate = num_layers, in_channels, growth_rate
        self.out_channels = in_channels + num_layers * growth_rate
        for i in range(num_layers):
            layer = DenseLayer(
                in_channels + i * growth_rate,
                growth_rate,
                bottleneck,
                bn_size,
                drop_rate,
                init=init,
                rng=rng,
            )
            setattr(self, f"layer{i + 1}", layer)

    def forward(self, x):
        for layer in self._modules.values():
            x = concat([x, layer(x)], axis=1)  # [x_0, ..., x_{l-1}] -> [x_0, ..., x_l]
        return x

    def extra_repr(self):
        return (
            f"num_layers={self.num_layers}, in_channels={self.in_channels}, "
            f"growth_rate={self.growth_rate}, out_channels={self.out_channels}"
        )


class Transition(Module):
    """``BN-ReLU-Conv1x1(out_channels)-AvgPool2d(2)``: halves height and width between blocks.

    For DenseNet-C compression ``theta`` pass ``out_channels = floor(theta * in_channels)``
    (see :meth:`compressed`).
    """

    def __init__(self, in_channels: int, out_channels: int, init="default", rng=None):
        super().__init__()
        _positive("Transition", in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.bn, self.relu = _bn_relu(in_channels)
        self.conv = Conv2d(in_channels, out_channels, 1, bias=False, init=init, rng=rng)
        self.pool = AvgPool2d(2)

    @classmethod
    def compressed(cls, in_channels: int, theta: float = 0.5, **kwargs) -> Transition:
        """A transition with DenseNet-C compression: ``out = floor(theta * in)``."""
        if not 0.0 < theta <= 1.0:
            raise ValueError(f"compression theta must be in (0, 1], got {theta!r}")
        return cls(in_channels, max(1, math.floor(theta * in_channels)), **kwargs)

    def forward(self, x):
        return self.pool(self.conv(self.relu(self.bn(x))))

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}"
