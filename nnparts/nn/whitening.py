"""PatchWhitening: a frozen first convolution that whitens the image's k x k patches."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnparts.functional.conv import _pair, conv2d
from nnparts.nn.module import Module
from nnparts.tensor import Tensor

__all__ = ["PatchWhitening"]

_CHUNK_PATCHES = 1 << 16  # patches per covariance chunk in fit(): a few MiB of float64


class PatchWhitening(Module):
    """A convolution whose filters are fitted, not learned: they PCA-whiten ``k x k`` patches.

    The course's PCA whitening of a data matrix ``X`` (one patch per row, ``d = C*k*k``
    columns)::

        Sigma = cov(X) = U diag(lambda) U^T       (eigendecomposition, lambda descending)
        W     = diag(1 / sqrt(lambda + eps)) U^T  (PCA whitening; ZCA would be U W)
        cov(X W^T) = diag(lambda / (lambda + eps)) ~ I

    ``fit(x)`` computes ``Sigma`` over every stride-1 ``k x k`` patch of ``x`` and stores ``W``,
    row ``i`` reshaped to a filter ``(C, k, k)``, as the buffer ``weight`` (shape
    ``(out_channels, C, k, k)``). ``forward`` is ``conv2d(x, weight, stride, padding)`` without
    a bias, so output channel ``i`` at each position is the patch's coordinate along the i-th
    principal direction, scaled to unit variance. Filters come in descending-eigenvalue order.

    With ``negate=True`` (airbench's trick: Keller Jordan, "94% on CIFAR-10 in 3.29 seconds",
    2024) the filters are ``concat(W, -W)``, so ``out_channels = 2*d``: a ReLU after the layer
    then keeps both signs of every component. Otherwise ``out_channels = d``.

    The weight is a buffer: it is in ``state_dict()`` (checkpoints restore it) but not in
    ``parameters()`` (optimizers never change it). ``center=True`` (default) subtracts the
    patch mean before the covariance, as the course's PCA does; ``center=False`` uses the
    uncentered second moment ``X^T X / n`` as airbench does (then the output's second moment,
    not its covariance, is ~I; the two agree for zero-mean inputs).

    Args:
        in_channels: ``C`` of the input ``(N, C, H, W)``.
        kernel_size: ``k`` (an int or a pair ``(kh, kw)``).
        eps: added to the eigenvalues (bounds the gain of near-zero-variance directions).
        negate: append the negated filters (``out_channels = 2*d``).
        stride, padding: of the convolution in ``forward`` (``fit`` always uses every
            unpadded stride-1 patch).
        center: subtract the mean patch before the covariance.
        dtype: dtype of the stored filters (``fit`` accumulates in float64).

    Example:
        >>> white = PatchWhitening.from_data(train_images[:5000], kernel_size=2)  # doctest: +SKIP
        >>> features = white(images)        # (N, 2*C*4, H-1, W-1)              # doctest: +SKIP
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size=2,
        eps: float = 5e-4,
        negate: bool = True,
        stride=1,
        padding=0,
        center: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, (int, np.integer)):
            raise ValueError(f"PatchWhitening in_channels must be an int, got {in_channels!r}")
        if in_channels < 1:
            raise ValueError(f"PatchWhitening needs in_channels >= 1, got {in_channels}")
        if not eps >= 0:
            raise ValueError(f"PatchWhitening eps must be >= 0, got {eps!r}")
        self.in_channels = int(in_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        if min(self.kernel_size) < 1:
            raise ValueError(f"PatchWhitening kernel_size must be >= 1, got {kernel_size!r}")
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.eps, self.negate, self.center = float(eps), bool(negate), bool(center)
        self.patch_size = self.in_channels * math.prod(self.kernel_size)
        self.out_channels = 2 * self.patch_size if self.negate else self.patch_size
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.register_buffer("weight", np.zeros(shape, dtype=dtype))
        self.register_buffer("eigenvalues", np.zeros(self.patch_size, dtype=np.float64))
        self.register_buffer("fitted", np.array(False))

    @classmethod
    def from_data(cls, x, kernel_size=2, **kwargs) -> PatchWhitening:
        """A layer for ``x``'s channel count, fitted on ``x`` (``(N, C, H, W)``)."""
        x = np.asarray(x.data if isinstance(x, Tensor) else x)
        if x.ndim != 4:
            raise ValueError(f"PatchWhitening.from_data needs x (N, C, H, W), got {x.shape}")
        return cls(x.shape[1], kernel_size=kernel_size, **kwargs).fit(x)

    def _patch_matrix(self, x):
        """Every stride-1 patch of ``x`` as rows ``(N*OH*OW, C*kh*kw)`` (a copy)."""
        windows = sliding_window_view(x, self.kernel_size, axis=(2, 3))  # (N, C, OH, OW, kh, kw)
        return windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, self.patch_size)

    def fit(self, x) -> PatchWhitening:
        """Set the filters from the patches of ``x`` (NumPy ``(N, C, H, W)``); returns self.

        The covariance is accumulated in float64 over chunks of images (so the patch matrix of
        a whole data set never sits in memory at once).
        """
        x = np.asarray(x.data if isinstance(x, Tensor) else x)
        kh, kw = self.kernel_size
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"PatchWhitening({self.in_channels}).fit needs x (N, {self.in_channels}, H, W), "
                f"got shape {x.shape}"
            )
        if x.shape[2] < kh or x.shape[3] < kw:
            raise ValueError(
                f"PatchWhitening.fit: images {x.shape[2:]} are smaller than the kernel {(kh, kw)}"
            )
        per_image = (x.shape[2] - kh + 1) * (x.shape[3] - kw + 1)
        step = max(1, _CHUNK_PATCHES // per_image)
        d = self.patch_size
        second, total = np.zeros((d, d)), np.zeros(d)
        for start in range(0, x.shape[0], step):  # chunks of images, not single samples
            patches = self._patch_matrix(x[start : start + step].astype(np.float64))
            second += patches.T @ patches
            total += patches.sum(axis=0)
        n = x.shape[0] * per_image
        if n < 2 and self.center:
            raise ValueError("PatchWhitening.fit needs at least 2 patches to estimate a covariance")
        if self.center:
            mean = total / n
            cov = (second - n * np.outer(mean, mean)) / (n - 1)
        else:
            cov = second / n
        eigvals, eigvecs = np.linalg.eigh(cov)
        eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]  # descending: principal first
        eigvals = np.maximum(eigvals, 0.0)  # rounding can leave tiny negatives
        filters = eigvecs.T / np.sqrt(eigvals + self.eps)[:, None]
        if self.negate:
            filters = np.concatenate([filters, -filters])
        self.weight[...] = filters.reshape(self.weight.shape)
        self.eigenvalues[...] = eigvals
        self._buffers["fitted"] = np.array(True)
        return self

    def forward(self, x):
        if not bool(self.fitted):
            raise RuntimeError(
                "PatchWhitening has no filters yet: call fit(x) (or PatchWhitening.from_data(x))"
                " with training images (N, C, H, W) before using the layer"
            )
        return conv2d(x, self.weight, None, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"eps={self.eps}, negate={self.negate}, stride={self.stride}, "
            f"padding={self.padding}, fitted={bool(self.fitted)}"
        )
