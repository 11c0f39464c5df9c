"""Preprocessing fit on the training split only, then applied to any split.

The course's recipe (CS231n "Data preprocessing"): compute every statistic on the training
data, then apply the same transform to validation and test data -- never fit on them.

Each object has ``fit(x)`` (learns statistics from ``x``, returns ``self``), ``transform(x)``,
``fit_transform(x)``, ``inverse_transform(x)`` and ``state_dict()`` / ``load_state_dict()``
holding only NumPy arrays and JSON-able values (no pickle), so the statistics save with a
model checkpoint. Statistics are computed in float64; outputs are float32 unless the input is
float64. Samples are along axis 0; images are ``(N, C, H, W)``.

``mode`` of the element-wise transforms says over which axes a statistic is shared:

- ``"feature"``: one value per feature (per pixel and channel), the mean image --
  ``X -= np.mean(X, axis=0)``;
- ``"channel"``: one value per channel (axis 1), over samples and positions -- the per-channel
  mean of VGG-style image preprocessing;
- ``"global"``: one value for the whole array.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "to_float",
    "ZeroCenter",
    "Standardize",
    "MinMaxScale",
    "PCA",
    "PCAWhitening",
    "ZCAWhitening",
    "PREPROCESSORS",
    "preprocessor_from_state",
]

_MODES = ("feature", "channel", "global")


def to_float(x, dtype=np.float32) -> np.ndarray:
    """uint8 images (0..255) -> floats in [0, 1]: ``x / 255`` as ``dtype`` (float32 default)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"to_float expects uint8 images (0..255), got dtype {x.dtype}")
    dtype = np.dtype(dtype)
    return x.astype(dtype) / np.asarray(255, dtype=dtype)


def _out_dtype(x):
    return np.float64 if x.dtype == np.float64 else np.float32


def _as_2d(x, name):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"{name} expects samples along axis 0 and features after, got shape {x.shape}"
        )
    return x.reshape(x.shape[0], -1)


class Preprocessor:
    """Base class: ``fit``/``transform``/``fit_transform``/``state_dict``/``load_state_dict``."""

    _arrays: tuple[str, ...] = ()  # fitted arrays saved in the state dict
    _config: tuple[str, ...] = ()  # constructor arguments saved in the state dict

    def fit(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def transform(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse_transform(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def __call__(self, x):
        return self.transform(x)

    @property
    def fitted(self) -> bool:
        return all(getattr(self, a, None) is not None for a in self._arrays)

    def _check_fitted(self):
        if not self.fitted:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(x_train) first")

    def state_dict(self) -> dict:
        """``{"name": ..., <config>: JSON-able values, <statistics>: ndarrays}``; no pickle."""
        state = {"name": type(self).__name__}
        for k in self._config:
            v = getattr(self, k)
            state[k] = list(v) if isinstance(v, tuple) else v
        for k in self._arrays:
            v = getattr(self, k, None)
            state[k] = None if v is None else np.array(v)
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("name", type(self).__name__) != type(self).__name__:
            raise ValueError(
                f"state is for {state['name']}, cannot load it into {type(self).__name__}"
            )
        for k in self._config:
            if k in state:
                v = state[k]
                setattr(self, k, tuple(v) if isinstance(v, list) else v)
        for k in self._arrays:
            if k not in state:
                raise ValueError(f"{type(self).__name__} state is missing {k!r}")
            setattr(self, k, None if state[k] is None else np.asarray(state[k]))
        self._after_load()

    def _after_load(self):
        pass

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._config)
        return f"{type(self).__name__}({args})"


class _Elementwise(Preprocessor):
    """Shared machinery: statistics reduced over the axes that ``mode`` says."""

    _config = ("mode",)

    def __init__(self, mode="feature"):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        self.shape = None  # feature shape seen in fit (x.shape[1:])

    def _axes(self, x):
        if self.mode == "feature":
            return (0,)
        if self.mode == "global":
            return tuple(range(x.ndim))
        if x.ndim < 2:
            raise ValueError(f"mode='channel' needs (N, C, ...) input, got shape {x.shape}")
        return (0,) + tuple(range(2, x.ndim))

    def _input(self, x, fitting=False):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"expected an array with samples along axis 0, got shape {x.shape}")
        if not fitting:
            self._check_fitted()
            ref = self._stat_shape()
            if self.mode == "feature" and x.shape[1:] != ref:
                raise ValueError(
                    f"fitted on samples of shape {ref}, got samples of shape {x.shape[1:]}"
                )
            if self.mode == "channel" and (x.ndim < 2 or x.shape[1] != ref[0]):
                raise ValueError(f"fitted on {ref[0]} channels, got input of shape {x.shape}")
        return x

    def _stat_shape(self):
        return tuple(np.shape(getattr(self, self._arrays[0])))[1:]

    def _reduce(self, x, fn):
        return fn(x.astype(np.float64), axis=self._axes(x), keepdims=True)


class ZeroCenter(_Elementwise):
    """Zero-centering: ``x' = x - mean``, the mean taken over the training data.

    CS231n: ``X -= np.mean(X, axis=0)`` (``mode="feature"``, the mean image); per channel
    (``mode="channel"``) or a single global mean (``mode="global"``) are the image variants.
    """

    _arrays = ("mean",)

    def __init__(self, mode="feature"):
        super().__init__(mode)
        self.mean = None

    def fit(self, x):
        x = self._input(x, fitting=True)
        self.mean = self._reduce(x, np.mean)
        return self

    def transform(self, x):
        x = self._input(x)
        return (x - self.mean).astype(_out_dtype(x))

    def inverse_transform(self, x):
        x = np.asarray(x)
        return (x + self.mean).astype(_out_dtype(x))


class Standardize(_Elementwise):
    """Standardization: ``x' = (x - mean) / (std + eps)`` (CS231n: ``X /= np.std(X, axis=0)``).

    ``std`` is the population standard deviation (``ddof=0``) as in scikit-learn's
    ``StandardScaler``; ``eps`` keeps constant features (e.g. always-black border pixels) finite.
    """

    _arrays = ("mean", "std")
    _config = ("mode", "eps")

    def __init__(self, mode="feature", eps=1e-8):
        super().__init__(mode)
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)
        self.mean = self.std = None

    def fit(self, x):
        x = self._input(x, fitting=True)
        self.mean = self._reduce(x, np.mean)
        self.std = self._reduce(x, np.std)
        return self

    def transform(self, x):
        x = self._input(x)
        return ((x - self.mean) / (self.std + self.eps)).astype(_out_dtype(x))

    def inverse_transform(self, x):
        x = np.asarray(x)
        return (x * (self.std + self.eps) + self.mean).astype(_out_dtype(x))


class MinMaxScale(_Elementwise):
    """Min-max scaling to ``feature_range = (a, b)``: ``x' = a + (x - min) (b - a) / (max - min)``.

    A constant feature (``max == min``) maps to ``a``.
    """

    _arrays = ("min", "max")
    _config = ("mode", "feature_range")

    def __init__(self, mode="feature", feature_range=(0.0, 1.0)):
        super().__init__(mode)
        a, b = (float(v) for v in feature_range)
        if not a < b:
            raise ValueError(f"feature_range must be (a, b) with a < b, got {feature_range}")
        self.feature_range = (a, b)
        self.min = self.max = None

    def _scale(self):
        span = self.max - self.min
        return np.where(span > 0, span, 1.0)

    def fit(self, x):
        x = self._input(x, fitting=True)
        self.min = self._reduce(x, np.min)
        self.max = self._reduce(x, np.max)
        return self

    def transform(self, x):
        x = self._input(x)
        a, b = self.feature_range
        return (a + (x - self.min) * ((b - a) / self._scale())).astype(_out_dtype(x))

    def inverse_transform(self, x):
        x = np.asarray(x)
        a, b = self.feature_range
        return ((x - a) * (self._scale() / (b - a)) + self.min).astype(_out_dtype(x))


class PCA(Preprocessor):
    """Principal component analysis on flattened samples (CS231n's recipe).

    ``cov = Xc^T Xc / N`` with ``Xc = X - mean``; ``U, S, _ = svd(cov)`` (eigenvectors as
    columns of ``U``, eigenvalues ``S`` in decreasing order); project on the first ``k``:
    ``z = Xc @ U[:, :k]``. With ``whiten=True`` each component is divided by its standard
    deviation, ``z / sqrt(S[:k] + eps)``, so the covariance of ``z`` is ~ identity.
    ``inverse_transform(z) = z @ U[:, :k]^T + mean`` (times ``sqrt(S + eps)`` if whitened):
    on the training data the mean squared reconstruction error per sample equals the
    discarded variance ``sum(S[k:])``.

    Args:
        n_components: an int ``k``; a float in (0, 1): the smallest ``k`` whose components
            keep at least that fraction of the variance; ``None``: all components.
        whiten: divide each component by its standard deviation.
        eps: added to the eigenvalues before the square root (CS231n uses 1e-5).

    Pearson (1901); Hotelling (1933).
    """

    _arrays = ("mean", "components", "explained_variance")
    _config = ("n_components", "whiten", "eps")

    def __init__(self, n_components=None, whiten=False, eps=1e-5):
        if n_components is not None:
            if isinstance(n_components, bool) or not isinstance(
                n_components, (int, float, np.integer, np.floating)
            ):
                raise ValueError(
                    f"n_components must be an int, a float in (0, 1) or None, got {n_components!r}"
                )
            if isinstance(n_components, (float, np.floating)) and not 0 < n_components < 1:
                raise ValueError(
                    "n_components as a float is the variance kept and must be in (0, 1), "
                    f"got {n_components}"
                )
            if isinstance(n_components, (int, np.integer)) and n_components < 1:
                raise ValueError(f"n_components must be >= 1, got {n_components}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.n_components = n_components
        self.whiten = bool(whiten)
        self.eps = float(eps)
        self.mean = self.components = self.explained_variance = None
        self.all_variances = None  # every eigenvalue of the training covariance (not saved)

    def fit(self, x):
        x2 = _as_2d(x, type(self).__name__).astype(np.float64)
        n, d = x2.shape
        self.mean = x2.mean(axis=0)
        xc = x2 - self.mean
        cov = xc.T @ xc / n
        u, s, _ = np.linalg.svd(cov, hermitian=True)
        k = self.n_components
        if k is None:
            k = d
        elif isinstance(k, (float, np.floating)):
            ratio = np.cumsum(s) / s.sum() if s.sum() > 0 else np.ones_like(s)
            k = int(np.searchsorted(ratio, k - 1e-12) + 1)
        elif k > d:
            raise ValueError(f"n_components={k} is more than the {d} features of the data")
        self.components = u[:, :k]
        self.explained_variance = s[:k]
        self.all_variances = s
        return self

    @property
    def explained_variance_ratio(self):
        self._check_fitted()
        if self.all_variances is None:
            raise ValueError("explained_variance_ratio needs fit() (not kept in the state dict)")
        return self.explained_variance / self.all_variances.sum()

    def transform(self, x):
        self._check_fitted()
        x2 = _as_2d(x, type(self).__name__)
        if x2.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"fitted on {self.mean.shape[0]} features, got {x2.shape[1]} "
                f"(input shape {np.shape(x)})"
            )
        z = (x2 - self.mean) @ self.components
        if self.whiten:
            z = z / np.sqrt(self.explained_variance + self.eps)
        return z.astype(_out_dtype(np.asarray(x)))

    def inverse_transform(self, z):
        self._check_fitted()
        z = np.asarray(z)
        k = self.components.shape[1]
        if z.ndim != 2 or z.shape[1] != k:
            raise ValueError(f"expected codes of shape (N, {k}), got {z.shape}")
        if self.whiten:
            z = z * np.sqrt(self.explained_variance + self.eps)
        return (z @ self.components.T + self.mean).astype(_out_dtype(z))


class PCAWhitening(PCA):
    """PCA whitening: ``z = (X - mean) U[:, :k] / sqrt(S[:k] + eps)``; ``cov(z) ~ I``."""

    _config = ("n_components", "eps")

    def __init__(self, n_components=None, eps=1e-5):
        super().__init__(n_components=n_components, whiten=True, eps=eps)


class ZCAWhitening(Preprocessor):
    """ZCA whitening: PCA whitening rotated back to pixel space.

    ``W = U diag(1 / sqrt(S + eps)) U^T`` and ``x' = (x - mean) W`` (Bell & Sejnowski, 1997;
    used on CIFAR-10 by Krizhevsky, 2009). Of all whitening matrices this one keeps the result
    closest to the input (the whitened images still look like images); the output has the
    input's shape and, for ``eps -> 0``, covariance ~ identity.
    """

    _arrays = ("mean", "matrix", "inverse_matrix")
    _config = ("eps",)

    def __init__(self, eps=1e-5):
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = float(eps)
        self.mean = self.matrix = self.inverse_matrix = None
        self.shape = None

    def fit(self, x):
        x = np.asarray(x)
        x2 = _as_2d(x, "ZCAWhitening").astype(np.float64)
        n = x2.shape[0]
        self.mean = x2.mean(axis=0)
        xc = x2 - self.mean
        u, s, _ = np.linalg.svd(xc.T @ xc / n, hermitian=True)
        self.matrix = (u / np.sqrt(s + self.eps)) @ u.T
        self.inverse_matrix = (u * np.sqrt(s + self.eps)) @ u.T
        return self

    def transform(self, x):
        self._check_fitted()
        x = np.asarray(x)
        x2 = _as_2d(x, "ZCAWhitening")
        if x2.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"fitted on {self.mean.shape[0]} features, got input of shape {x.shape}"
            )
        return ((x2 - self.mean) @ self.matrix).reshape(x.shape).astype(_out_dtype(x))

    def inverse_transform(self, x):
        self._check_fitted()
        x = np.asarray(x)
        x2 = x.reshape(x.shape[0], -1)
        return (x2 @ self.inverse_matrix + self.mean).reshape(x.shape).astype(_out_dtype(x))


PREPROCESSORS = {
    cls.__name__: cls
    for cls in (ZeroCenter, Standardize, MinMaxScale, PCA, PCAWhitening, ZCAWhitening)
}


def preprocessor_from_state(state: dict) -> Preprocessor:
    """Rebuild a fitted preprocessor from its ``state_dict()`` (e.g. read from a checkpoint)."""
    name = state.get("name")
    if name not in PREPROCESSORS:
        raise ValueError(f"unknown preprocessor {name!r}; valid names: {', '.join(PREPROCESSORS)}")
    obj = PREPROCESSORS[name].__new__(PREPROCESSORS[name])
    PREPROCESSORS[name].__init__(obj)
    obj.load_state_dict(state)
    return obj
