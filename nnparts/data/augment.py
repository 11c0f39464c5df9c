"""Data augmentation, vectorized over a batch and seeded.

Every transform takes a batch of images ``x`` of shape ``(N, C, H, W)`` (or ``(N, H, W)``),
optionally labels ``y``, and an optional ``rng`` (``numpy.random.Generator``)::

    x_aug = transform(x)                 # images only
    x_aug, y_aug = transform(x, y)       # images and labels
    x_aug, y_aug = transform(x, y, rng=np.random.default_rng(0))

Each transform draws its random numbers for the whole batch at once (one draw per sample, no
Python loop over samples or pixels). Randomness comes from, in order: the ``rng`` argument,
the transform's own generator (``seed=`` at construction), the library's default generator.
Shapes and dtypes are preserved (integer images are rounded and clipped back to their range).

Label-mixing transforms (:class:`Mixup`, :class:`CutMix`, :class:`LabelSmoothing`) turn class
indices into soft label rows ``(N, num_classes)`` (float32) that sum to 1; the losses accept
probability rows as targets (``F.cross_entropy(logits, target_rows)``).

:class:`AlternatingFlip` is the one transform that needs to know *which* samples a batch holds
and in which epoch: it is called as ``t(x, y, index=..., epoch=...)`` (the Trainer passes the
batch's dataset indices and epoch from its :class:`~nnparts.data.DataLoader`).

Transforms compose with :class:`Compose`, and :func:`build_augmentation` builds a pipeline
from a config, e.g. ``[{"name": "hflip", "p": 0.5}, {"name": "random_erasing"}]``.
"""

from __future__ import annotations

import numpy as np

from nnparts.random import get_rng

__all__ = [
    "Transform",
    "Compose",
    "HorizontalFlip",
    "AlternatingFlip",
    "RandomCrop",
    "RandomShift",
    "RandomRotation",
    "GaussianNoise",
    "ElasticDeformation",
    "Cutout",
    "RandomErasing",
    "Mixup",
    "CutMix",
    "LabelSmoothing",
    "AUGMENTATIONS",
    "build_augmentation",
    "augment_batch",
    "one_hot",
]


# ----------------------------------------------------------------------------- helpers
def _images(x, name):
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(
            f"{name} expects a batch of images (N, C, H, W) or (N, H, W), got shape {x.shape}"
        )
    return x


def _per_sample(v, x):
    """Reshape a per-sample vector (N,) to broadcast against ``x`` (N, ...)."""
    return np.reshape(v, (-1,) + (1,) * (x.ndim - 1))


def _cast_like(out, x):
    """Back to ``x``'s dtype; integer images are rounded and clipped to the dtype's range."""
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(x.dtype)
    return out.astype(x.dtype, copy=False)


def _box_mask(top, bottom, left, right, h, w):
    """Boolean (N, H, W) mask of the per-sample boxes [top, bottom) x [left, right)."""
    rows = np.arange(h)
    cols = np.arange(w)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :]


def _spatial_mask(mask, x):
    """(N, H, W) -> broadcastable to x (N, ..., H, W)."""
    return mask.reshape((mask.shape[0],) + (1,) * (x.ndim - 3) + mask.shape[1:])


def one_hot(y, num_classes=None, dtype=np.float32):
    """Class indices ``(N,)`` -> one-hot rows ``(N, num_classes)``; rows pass through."""
    y = np.asarray(y)
    if y.ndim == 2:
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(
                f"label rows have {y.shape[1]} columns, expected num_classes={num_classes}"
            )
        return y.astype(dtype) if not np.issubdtype(y.dtype, np.floating) else y
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be class indices (N,) of an integer dtype or probability rows (N, K), "
            f"got {y.dtype} {y.shape}"
        )
    if num_classes is None:
        raise ValueError("class-index labels need num_classes=K to become label rows")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes - 1}], got range [{y.min()}, {y.max()}]"
        )
    out = np.zeros((y.shape[0], num_classes), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


def _warp(x, src_i, src_j, fill, order):
    """Sample every image at per-sample source coordinates ``src_i, src_j`` (N, H, W).

    One ``scipy.ndimage.map_coordinates`` call on the whole batch: the sample and channel
    coordinates are exact integers, so with ``order`` 0 or 1 nothing leaks between samples.
    """
    try:
        from scipy import ndimage
    except ImportError as err:  # pragma: no cover - scipy is in the test extra
        raise ImportError("rotation and elastic deformation need scipy: pip install scipy") from err
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    xr = x.reshape(n, -1, h, w)
    m = xr.shape[1]
    work = np.float64 if x.dtype == np.float64 else np.float32
    coords = np.empty((4, n, m, h, w), dtype=work)
    coords[0] = np.arange(n, dtype=work)[:, None, None, None]
    coords[1] = np.arange(m, dtype=work)[None, :, None, None]
    coords[2] = src_i[:, None]
    coords[3] = src_j[:, None]
    out = ndimage.map_coordinates(
        xr.astype(work), coords, order=order, mode="constant", cval=fill, prefilter=False
    )
    return _cast_like(out.reshape(x.shape), x)


# ----------------------------------------------------------------------------- base
class Transform:
    """Base class: ``__call__(x, y=None, rng=None)`` -> ``x`` or ``(x, y)``.

    Subclasses implement ``apply(x, y, rng) -> (x, y)``.
    """

    name = ""
    needs_labels = False
    needs_index = False  # True: called with the batch's dataset indices and epoch

    def __init__(self, seed=None):
        self.rng = None if seed is None else get_rng(seed)

    def _generator(self, rng):
        if rng is not None:
            return get_rng(rng)
        return self.rng if self.rng is not None else get_rng(None)

    def __call__(self, x, y=None, rng=None, index=None, epoch=None):
        x = _images(x, type(self).__name__)
        if self.needs_labels and y is None:
            raise ValueError(f"{type(self).__name__} mixes labels: call it as t(x, y)")
        if y is not None and np.shape(y)[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has shape {np.shape(y)}")
        if self.needs_index:
            index = _batch_index(index, epoch, x, type(self).__name__)
            x_out, y_out = self.apply_indexed(x, y, self._generator(rng), index, int(epoch))
        else:
            x_out, y_out = self.apply(x, y, self._generator(rng))
        return x_out if y is None else (x_out, y_out)

    def apply(self, x, y, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def apply_indexed(self, x, y, rng, index, epoch):  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        """JSON-able state of the transform's own generator (``{}`` if it has none)."""
        return {} if self.rng is None else {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if "rng" in state:
            if self.rng is None:
                self.rng = np.random.default_rng()
            self.rng.bit_generator.state = state["rng"]

    def __repr__(self):
        skip = {"rng"}
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in skip)
        return f"{type(self).__name__}({args})"


def _batch_index(index, epoch, x, name):
    """The dataset indices ``(N,)`` of a batch, checked, for a transform that needs them."""
    if index is None or epoch is None:
        raise ValueError(
            f"{name} depends on which samples a batch holds and on the epoch: call it as "
            "t(x, y, index=dataset_indices, epoch=epoch) (the Trainer does this itself, "
            "from its DataLoader)"
        )
    index = np.asarray(index)
    if index.shape != (x.shape[0],) or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(
            f"{name}: index must be the batch's {x.shape[0]} dataset indices (ints, shape "
            f"({x.shape[0]},)), got shape {index.shape} and dtype {index.dtype}"
        )
    if index.size and index.min() < 0:
        raise ValueError(f"{name}: dataset indices must be >= 0, got {int(index.min())}")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"{name}: epoch must be an int >= 0, got {epoch!r}")
    return index


def augment_batch(transform, x, y, rng=None, batch=None):
    """``transform`` applied to one batch, as ``(x, y)``: the one place that decides how to call
    it (DataLoader, Trainer and the benchmarks use it). ``batch`` is ``(epoch, dataset
    indices)`` (a DataLoader's ``current_batch``), handed to a transform whose ``needs_index``
    is true; ``rng=None`` calls ``transform(x, y)`` (or ``transform(x)`` without labels)."""
    if getattr(transform, "needs_index", False):
        epoch, index = batch if batch is not None else (None, None)
        out = transform(x, y, rng, index=index, epoch=epoch)
    elif rng is None:
        out = transform(x) if y is None else transform(x, y)
    else:
        out = transform(x, y, rng)
    return out if isinstance(out, tuple) else (out, y)


def _check_p(p):
    if not 0 <= p <= 1:
        raise ValueError(f"p (probability of applying) must be in [0, 1], got {p}")
    return float(p)


# ----------------------------------------------------------------------------- geometric
class HorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p`` (``x[..., ::-1]``)."""

    name = "hflip"

    def __init__(self, p=0.5, seed=None):
        super().__init__(seed)
        self.p = _check_p(p)

    def apply(self, x, y, rng):
        flip = rng.random(x.shape[0]) < self.p
        return np.where(_per_sample(flip, x), x[..., ::-1], x), y


class AlternatingFlip(Transform):
    """Mirror images left-right in alternate epochs (airbench, Jordan 2024).

    In epoch 0, each image is mirrored or not by a fixed coin per dataset index (probability
    1/2; the coins come from ``seed``, a pure function of the index, so a resumed run gets the
    same ones). In every later epoch an image is mirrored exactly when it was not in the epoch
    before: ``flip(i, e) = coin(i) XOR (e odd)``. Any two consecutive epochs therefore show each
    image once each way, which random flips (:class:`HorizontalFlip`) only do on average: a
    quarter of the images would be seen the same way twice. The batches' order is still the
    DataLoader's shuffle. Call as ``t(x, y, index=dataset_indices, epoch=epoch)``.
    """

    name = "alternating_hflip"
    needs_index = True

    def __init__(self, seed=0):
        super().__init__(None)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0 (it fixes the epoch-0 coins), got {seed!r}")
        self.seed = int(seed)
        self._coins = np.zeros(0, dtype=bool)

    def coins(self, index) -> np.ndarray:
        """Whether each dataset index is mirrored in epoch 0."""
        index = np.asarray(index)
        need = int(index.max()) + 1 if index.size else 0
        if need > self._coins.size:  # the generator's stream is prefix-stable: old coins kept
            size = max(need, 2 * self._coins.size)
            self._coins = np.random.default_rng(self.seed).random(size) < 0.5
        return self._coins[index]

    def apply_indexed(self, x, y, rng, index, epoch):
        flip = self.coins(index) ^ bool(epoch % 2)
        return np.where(_per_sample(flip, x), x[..., ::-1], x), y

    def __repr__(self):
        return f"AlternatingFlip(seed={self.seed})"


PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


class RandomCrop(Transform):
    """Pad by ``padding`` pixels on each side, then crop ``size`` at a random place.

    ``size=None`` keeps the input size: a random shift of up to ``padding`` pixels in each
    direction (the CIFAR recipe: pad 4, crop 32). One gather for the whole batch.

    ``padding_mode`` (as torchvision's): ``"constant"`` pads with ``fill``; ``"edge"`` repeats
    the border pixels; ``"reflect"`` / ``"symmetric"`` mirror the image without / with its
    border. On standardized images ``fill=0`` is the *mean* pixel, a grey frame that test images
    never have; ``"edge"`` keeps the background of centred objects (Fashion-MNIST, MNIST).
    """

    name = "random_crop"

    def __init__(self, size=None, padding=4, fill=0, padding_mode="constant", seed=None):
        super().__init__(seed)
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"unknown padding_mode {padding_mode!r}; allowed: {', '.join(PADDING_MODES)}"
            )
        self.padding_mode = padding_mode
        if size is not None:
            size = (size, size) if np.isscalar(size) else tuple(size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be a positive int or (height, width), got {size}")
        self.size, self.padding, self.fill = size, int(padding), fill

    def apply(self, x, y, rng):
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        ch, cw = (h, w) if self.size is None else self.size
        p = self.padding
        hp, wp = h + 2 * p, w + 2 * p
        if ch > hp or cw > wp:
            raise ValueError(
                f"crop size {(ch, cw)} is larger than the padded image {(hp, wp)}; "
                "use a smaller size or more padding"
            )
        pad = [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)]
        if self.padding_mode == "constant":
            xp = np.pad(x, pad, constant_values=self.fill)
        else:
            if self.padding_mode == "reflect" and p >= min(h, w):
                raise ValueError(f"reflect padding {p} needs images larger than {p}, got {(h, w)}")
            xp = np.pad(x, pad, mode=self.padding_mode)
        xp = xp.reshape(n, -1, hp, wp)
        top = rng.integers(0, hp - ch + 1, size=n)
        left = rng.integers(0, wp - cw + 1, size=n)
        rows = (top[:, None] + np.arange(ch))[:, None, :, None]
        cols = (left[:, None] + np.arange(cw))[:, None, None, :]
        sample = np.arange(n)[:, None, None, None]
        channel = np.arange(xp.shape[1])[None, :, None, None]
        out = xp[sample, channel, rows, cols]
        return out.reshape(x.shape[:-2] + (ch, cw)), y


class RandomShift(RandomCrop):
    """Translate each image by up to ``max_shift`` pixels in each direction (``fill`` or
    ``padding_mode`` as :class:`RandomCrop`)."""

    name = "random_shift"

    def __init__(self, max_shift=2, fill=0, padding_mode="constant", seed=None):
        super().__init__(
            size=None, padding=max_shift, fill=fill, padding_mode=padding_mode, seed=seed
        )


class RandomRotation(Transform):
    """Rotate each image about its centre by an angle ~ U(-degrees, degrees) (bilinear).

    Output pixel ``p`` takes the input at ``R(theta) (p - c) + c`` (``c`` the centre);
    pixels coming from outside the image get ``fill``.
    """

    name = "rotation"

    def __init__(self, degrees=10.0, fill=0.0, order=1, seed=None):
        super().__init__(seed)
        if degrees < 0:
            raise ValueError(f"degrees must be >= 0, got {degrees}")
        if order not in (0, 1):
            raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order}")
        self.degrees, self.fill, self.order = float(degrees), float(fill), order

    def apply(self, x, y, rng):
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        theta = np.deg2rad(rng.uniform(-self.degrees, self.degrees, size=n))[:, None, None]
        di = np.arange(h)[None, :, None] - (h - 1) / 2
        dj = np.arange(w)[None, None, :] - (w - 1) / 2
        cos, sin = np.cos(theta), np.sin(theta)
        src_i = cos * di - sin * dj + (h - 1) / 2
        src_j = sin * di + cos * dj + (w - 1) / 2
        return _warp(x, src_i, src_j, self.fill, self.order), y


class ElasticDeformation(Transform):
    """Elastic distortion (Simard, Steinkraus & Platt, 2003).

    Random displacement fields ``dx, dy ~ U(-1, 1)`` per pixel, smoothed by a Gaussian of
    std ``sigma`` and scaled by ``alpha``; each pixel takes the input at ``(i + dy, j + dx)``
    (bilinear). The same field moves all channels of a sample.
    """

    name = "elastic"

    def __init__(self, alpha=34.0, sigma=4.0, fill=0.0, order=1, seed=None):
        super().__init__(seed)
        if alpha < 0 or sigma <= 0:
            raise ValueError(f"need alpha >= 0 and sigma > 0, got alpha={alpha}, sigma={sigma}")
        if order not in (0, 1):
            raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order}")
        self.alpha, self.sigma = float(alpha), float(sigma)
        self.fill, self.order = float(fill), order

    def apply(self, x, y, rng):
        from scipy import ndimage

        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        fields = rng.uniform(-1, 1, size=(2, n, h, w))
        sigma = (0, 0, self.sigma, self.sigma)  # smooth within each image only
        smooth = ndimage.gaussian_filter(fields, sigma=sigma, mode="constant")
        src_i = np.arange(h)[None, :, None] + self.alpha * smooth[0]
        src_j = np.arange(w)[None, None, :] + self.alpha * smooth[1]
        return _warp(x, src_i, src_j, self.fill, self.order), y


# ----------------------------------------------------------------------------- pixel noise
class GaussianNoise(Transform):
    """Add ``N(0, std^2)`` noise to every pixel; ``std`` is in units of the [0, 1] range.

    For uint8 images the noise is ``255 * std`` and the result is rounded and clipped to
    0..255; float images may be clipped to ``clip = (low, high)``.
    """

    name = "gaussian_noise"

    def __init__(self, std=0.1, clip=None, seed=None):
        super().__init__(seed)
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.std, self.clip = float(std), clip

    def apply(self, x, y, rng):
        scale = self.std * (255.0 if x.dtype == np.uint8 else 1.0)
        work = np.float64 if x.dtype == np.float64 else np.float32
        out = x.astype(work) + rng.standard_normal(x.shape, dtype=work) * work(scale)
        if self.clip is not None:
            out = np.clip(out, *self.clip)
        return _cast_like(out, x), y


# ----------------------------------------------------------------------------- erasing
class Cutout(Transform):
    """Cutout (DeVries & Taylor, 2017): fill a ``size`` x ``size`` square with ``value``.

    The square's centre is uniform over the image, so near the border only part of it is
    inside (as in the paper). Applied to each sample with probability ``p``.
    """

    name = "cutout"

    def __init__(self, size=8, p=1.0, value=0.0, seed=None):
        super().__init__(seed)
        if size < 1:
            raise ValueError(f"size must be >= 1 pixel, got {size}")
        self.size, self.p, self.value = int(size), _check_p(p), value

    def apply(self, x, y, rng):
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        cy = rng.integers(0, h, size=n)
        cx = rng.integers(0, w, size=n)
        half = self.size // 2
        mask = _box_mask(cy - half, cy - half + self.size, cx - half, cx - half + self.size, h, w)
        mask &= (rng.random(n) < self.p)[:, None, None]
        return np.where(_spatial_mask(mask, x), np.asarray(self.value).astype(x.dtype), x), y


class RandomErasing(Transform):
    """Random erasing (Zhong et al., 2020), with PyTorch's defaults.

    With probability ``p``, a rectangle of area ``U(scale) * H * W`` and aspect ratio
    ``exp(U(log ratio))`` (clipped to the image) at a uniform position is set to ``value``.
    """

    name = "random_erasing"

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, seed=None):
        super().__init__(seed)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {ratio}")
        self.p, self.scale, self.ratio, self.value = _check_p(p), tuple(scale), tuple(ratio), value

    def apply(self, x, y, rng):
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        area = rng.uniform(*self.scale, size=n) * h * w
        aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), size=n))
        eh = np.clip(np.rint(np.sqrt(area * aspect)), 1, h).astype(np.int64)
        ew = np.clip(np.rint(np.sqrt(area / aspect)), 1, w).astype(np.int64)
        top = (rng.random(n) * (h - eh + 1)).astype(np.int64)
        left = (rng.random(n) * (w - ew + 1)).astype(np.int64)
        mask = _box_mask(top, top + eh, left, left + ew, h, w)
        mask &= (rng.random(n) < self.p)[:, None, None]
        return np.where(_spatial_mask(mask, x), np.asarray(self.value).astype(x.dtype), x), y


# ----------------------------------------------------------------------------- label mixing
def _check_alpha(alpha):
    if alpha <= 0:
        raise ValueError(f"alpha (of Beta(alpha, alpha)) must be > 0, got {alpha}")
    return float(alpha)


class Mixup(Transform):
    """mixup (Zhang et al., 2018): convex combinations of pairs of samples and their labels.

    For each sample ``i``, ``lam_i ~ Beta(alpha, alpha)`` and a partner ``j = perm(i)``::

        x'_i = lam_i x_i + (1 - lam_i) x_j        y'_i = lam_i y_i + (1 - lam_i) y_j

    ``y`` is class indices (needs ``num_classes``) or label rows; the result is label rows.
    (One ``lam`` per sample rather than per batch: timm's "elem" mode.)
    """

    name = "mixup"
    needs_labels = True

    def __init__(self, alpha=0.2, num_classes=None, seed=None):
        super().__init__(seed)
        self.alpha, self.num_classes = _check_alpha(alpha), num_classes

    def apply(self, x, y, rng):
        n = x.shape[0]
        rows = one_hot(y, self.num_classes)
        lam = rng.beta(self.alpha, self.alpha, size=n)
        perm = rng.permutation(n)
        work = np.float64 if x.dtype == np.float64 else np.float32
        lx = _per_sample(lam, x).astype(work)
        x_out = lx * x + (1 - lx) * x[perm]
        lr = lam[:, None].astype(rows.dtype)
        return _cast_like(x_out, x), lr * rows + (1 - lr) * rows[perm]


class CutMix(Transform):
    """CutMix (Yun et al., 2019): paste a box of a partner image; mix labels by the box area.

    ``lam ~ Beta(alpha, alpha)``; a box of ``H sqrt(1 - lam)`` x ``W sqrt(1 - lam)`` at a
    uniform centre, clipped to the image, is copied from partner ``j = perm(i)``. ``lam`` is
    then corrected to the exact share of pixels kept, ``lam = 1 - box_area / (H W)``, and
    ``y'_i = lam y_i + (1 - lam) y_j``. One box per sample.
    """

    name = "cutmix"
    needs_labels = True

    def __init__(self, alpha=1.0, num_classes=None, seed=None):
        super().__init__(seed)
        self.alpha, self.num_classes = _check_alpha(alpha), num_classes

    def apply(self, x, y, rng):
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        rows = one_hot(y, self.num_classes)
        lam = rng.beta(self.alpha, self.alpha, size=n)
        perm = rng.permutation(n)
        cut = np.sqrt(1.0 - lam)
        ch, cw = (h * cut).astype(np.int64), (w * cut).astype(np.int64)
        cy, cx = rng.integers(0, h, size=n), rng.integers(0, w, size=n)
        top, bottom = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        left, right = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        mask = _box_mask(top, bottom, left, right, h, w)
        x_out = np.where(_spatial_mask(mask, x), x[perm], x)
        lam = 1.0 - (bottom - top) * (right - left) / (h * w)
        lr = lam[:, None].astype(rows.dtype)
        return x_out, lr * rows + (1 - lr) * rows[perm]


class LabelSmoothing(Transform):
    """Label smoothing (Szegedy et al., 2016): ``y' = (1 - smoothing) y + smoothing / K``.

    The same target as ``F.cross_entropy(..., label_smoothing=smoothing)`` (PyTorch's
    definition, mass ``smoothing / K`` on every class including the true one). Images pass
    through unchanged.
    """

    name = "label_smoothing"
    needs_labels = True

    def __init__(self, smoothing=0.1, num_classes=None, seed=None):
        super().__init__(seed)
        if not 0 <= smoothing <= 1:
            raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
        self.smoothing, self.num_classes = float(smoothing), num_classes

    def apply(self, x, y, rng):
        rows = one_hot(y, self.num_classes)
        k = rows.shape[1]
        return x, (1 - self.smoothing) * rows + rows.dtype.type(self.smoothing / k)


# ----------------------------------------------------------------------------- pipeline
class Compose(Transform):
    """Apply ``transforms`` in order. ``seed`` gives the pipeline one generator for all."""

    name = "compose"

    def __init__(self, transforms, seed=None):
        super().__init__(seed)
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise ValueError(f"Compose expects callables (transforms), got {t!r}")

    @property
    def needs_index(self) -> bool:
        return any(getattr(t, "needs_index", False) for t in self.transforms)

    def __call__(self, x, y=None, rng=None, index=None, epoch=None):
        rng = rng if rng is not None else self.rng
        for t in self.transforms:
            if not isinstance(t, Transform):
                out = t(x) if y is None else t(x, y)
            elif t.needs_index:
                out = t(x, y, rng=rng, index=index, epoch=epoch)
            else:
                out = t(x, y, rng=rng)
            x, y = (out, None) if y is None else out
        return x if y is None else (x, y)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["transforms"] = [
            t.state_dict() if isinstance(t, Transform) else {} for t in self.transforms
        ]
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for t, s in zip(self.transforms, state.get("transforms", [])):
            if isinstance(t, Transform):
                t.load_state_dict(s)

    def __len__(self):
        return len(self.transforms)

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


#: Config name -> transform class.
AUGMENTATIONS = {
    cls.name: cls
    for cls in (
        HorizontalFlip,
        AlternatingFlip,
        RandomCrop,
        RandomShift,
        RandomRotation,
        GaussianNoise,
        ElasticDeformation,
        Cutout,
        RandomErasing,
        Mixup,
        CutMix,
        LabelSmoothing,
    )
}


def build_augmentation(config, seed=None) -> Compose:
    """Build a :class:`Compose` pipeline from a config.

    ``config`` is a list whose items are a name (``"hflip"``) or a dict with ``"name"`` and the
    transform's keyword arguments (``{"name": "cutmix", "alpha": 1.0, "num_classes": 10}``).
    Valid names: the keys of :data:`AUGMENTATIONS`.
    """
    if isinstance(config, (str, dict)):
        config = [config]
    transforms = []
    for item in config:
        spec = {"name": item} if isinstance(item, str) else dict(item)
        name = spec.pop("name", None)
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"unknown augmentation {name!r}; valid names: {', '.join(sorted(AUGMENTATIONS))}"
            )
        cls = AUGMENTATIONS[name]
        try:
            transforms.append(cls(**spec))
        except TypeError as err:
            raise ValueError(f"bad arguments {spec} for augmentation {name!r}: {err}") from None
    return Compose(transforms, seed=seed)
