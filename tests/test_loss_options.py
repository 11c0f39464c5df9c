"""Loss options against PyTorch: cross-entropy over (N, C, d1, ...) with weight, ignore_index,
every reduction and label smoothing; BCE-with-logits weight/pos_weight; label messages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import nnparts
from nnparts import Tensor, gradcheck, nn
from nnparts import functional as F


def t64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def _compare(torch, ours, theirs, logits, target, target_torch, atol=1e-10):
    z = t64(logits)
    zr = torch.tensor(logits, requires_grad=True)
    loss, loss_r = ours(z, target), theirs(zr, target_torch)
    assert loss.shape == tuple(loss_r.shape)
    np.testing.assert_allclose(loss.data, loss_r.detach().numpy(), atol=atol, rtol=0)
    g = np.random.default_rng(3).standard_normal(loss.shape) if loss.ndim else np.array(0.7)
    loss.backward(g)
    loss_r.backward(torch.tensor(g))
    np.testing.assert_allclose(z.grad, zr.grad.numpy(), atol=atol, rtol=0)


SHAPES = [(5, 4), (3, 4, 5), (2, 3, 4, 2), (4,)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_indices_options_equal_torch(
    torch, rng, shape, reduction, smoothing, weighted, ignore
):
    c = shape[0] if len(shape) == 1 else shape[1]
    logits = rng.standard_normal(shape) * 2
    idx_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    labels = rng.integers(0, c, size=idx_shape)
    ignore_index = 2 if ignore else -100
    if ignore and labels.ndim:
        labels.reshape(-1)[::3] = ignore_index  # some positions skipped
    weight = rng.uniform(0.2, 2.0, size=c) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing, ignore_index=ignore_index)
    _compare(
        torch,
        lambda z, t: F.cross_entropy(z, t, weight=weight, **kw),
        lambda z, t: torch.nn.functional.cross_entropy(
            z, t, weight=None if weight is None else torch.tensor(weight), **kw
        ),
        logits,
        labels,
        torch.tensor(labels),
    )


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_probabilities_options_equal_torch(torch, rng, shape, reduction, weighted):
    c = shape[0] if len(shape) == 1 else shape[1]
    axis = 0 if len(shape) == 1 else 1
    logits = rng.standard_normal(shape)
    probs = rng.uniform(0.05, 1.0, size=shape)
    probs /= probs.sum(axis=axis, keepdims=True)
    weight = rng.uniform(0.2, 2.0, size=c) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=0.1)
    _compare(
        torch,
        lambda z, t: F.cross_entropy(z, t, weight=weight, **kw),
        lambda z, t: torch.nn.functional.cross_entropy(
            z, t, weight=None if weight is None else torch.tensor(weight), **kw
        ),
        logits,
        probs,
        torch.tensor(probs),
    )


def test_cross_entropy_options_gradcheck(rng):
    logits = rng.standard_normal((2, 3, 4))
    labels = rng.integers(0, 3, size=(2, 4))
    labels[0, 1] = -100
    weight = np.array([0.5, 1.0, 2.0])
    for reduction in ("mean", "sum", "none"):
        assert gradcheck(
            lambda z, r=reduction: F.cross_entropy(
                z, labels, weight=weight, reduction=r, label_smoothing=0.1
            ),
            [t64(logits)],
        )
    probs = rng.dirichlet(np.ones(3), size=(2, 4)).transpose(0, 2, 1)
    assert gradcheck(lambda z: F.cross_entropy(z, probs, weight=weight), [t64(logits)])


def test_cross_entropy_ignore_index_and_weight_behave():
    """Ignored positions neither cost nor count; a zero class weight silences that class."""
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    labels = np.array([0, -100, 2])
    both = F.cross_entropy(t64(logits), labels).item()
    kept = F.cross_entropy(t64(logits[[0, 2]]), labels[[0, 2]]).item()
    assert both == pytest.approx(kept, abs=1e-14)
    z = t64(logits)
    F.cross_entropy(z, labels).backward()
    assert np.all(z.grad[1] == 0)
    w = np.array([1.0, 1.0, 0.0])
    only_first = F.cross_entropy(t64(logits), np.array([0, 1, 2]), weight=w).item()
    assert only_first == pytest.approx(
        F.cross_entropy(t64(logits[:2]), np.array([0, 1])).item(), abs=1e-14
    )
    # nothing left to average: NaN, as torch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(F.cross_entropy(t64(logits), np.full(3, -100)).item())


def test_cross_entropy_per_pixel_equals_flattened_rows(rng):
    logits = rng.standard_normal((2, 3, 4, 5))
    labels = rng.integers(0, 3, size=(2, 4, 5))
    a = F.cross_entropy(t64(logits), labels, reduction="none").data
    rows = logits.transpose(0, 2, 3, 1).reshape(-1, 3)
    b = F.cross_entropy(t64(rows), labels.reshape(-1), reduction="none").data
    np.testing.assert_allclose(a, b.reshape(2, 4, 5), atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("which", ["pos_weight", "weight", "both"])
def test_bce_with_logits_weights_equal_torch_and_gradcheck(torch, rng, reduction, which):
    logits = rng.standard_normal((4, 3)) * 3
    target = rng.uniform(0, 1, size=(4, 3))
    kw = {}
    if which in ("pos_weight", "both"):
        kw["pos_weight"] = rng.uniform(0.5, 4.0, size=3)
    if which in ("weight", "both"):
        kw["weight"] = rng.uniform(0.5, 2.0, size=(4, 1))
    z, t = t64(logits), t64(target)
    zr = torch.tensor(logits, requires_grad=True)
    tr = torch.tensor(target, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(z, t, reduction=reduction, **kw)
    loss_r = torch.nn.functional.binary_cross_entropy_with_logits(
        zr, tr, reduction=reduction, **{k: torch.tensor(v) for k, v in kw.items()}
    )
    np.testing.assert_allclose(loss.data, loss_r.detach().numpy(), atol=1e-10, rtol=0)
    g = np.full(loss.shape, 0.7)
    loss.backward(g)
    loss_r.backward(torch.tensor(g))
    np.testing.assert_allclose(z.grad, zr.grad.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(t.grad, tr.grad.numpy(), atol=1e-10, rtol=0)
    assert gradcheck(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw),
        [t64(logits), t64(target)],
    )


def test_bce_pos_weight_counts_positives_k_times():
    """pos_weight=3 gives the same summed loss as repeating every positive label 3 times."""
    z = np.array([0.3, -1.2, 2.0])
    t = np.array([1.0, 0.0, 1.0])
    weighted = F.binary_cross_entropy_with_logits(
        t64(z), t, reduction="sum", pos_weight=np.array([3.0])
    ).item()
    rep = np.concatenate([z[[0, 0, 0, 1, 2, 2, 2]]])
    plain = F.binary_cross_entropy_with_logits(
        t64(rep), np.array([1.0, 1, 1, 0, 1, 1, 1]), reduction="sum"
    ).item()
    assert weighted == pytest.approx(plain, abs=1e-12)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        big = F.binary_cross_entropy_with_logits(
            Tensor(np.array([1e4, -1e4], dtype=np.float32)),
            np.array([0.0, 1.0], dtype=np.float32),
            pos_weight=np.array([2.0], dtype=np.float32),
        )
    assert big.item() == pytest.approx((1e4 + 2e4) / 2, rel=1e-6)


def test_bce_weight_shapes_are_checked():
    z = Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4,\).*\(4, 3\).*last axis"):
        F.binary_cross_entropy_with_logits(z, np.zeros((4, 3)), pos_weight=np.ones(4))
    with pytest.raises(ValueError, match=r"weight of shape \(3, 1\).*\(4, 3\)"):
        F.binary_cross_entropy_with_logits(z, np.zeros((4, 3)), weight=np.ones((3, 1)))


# ---------------------------------------------------------------------------------------------
# labels: each mistake gets a message that names the value and the fix


def test_label_messages_name_the_value_and_the_fix():
    z = Tensor(np.zeros((4, 10)))
    with pytest.raises(ValueError, match=r"non-integer values \[0\.5\].*y\.astype\(np\.int64\)"):
        F.cross_entropy(z, np.array([0.0, 0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"non-integer values \[nan\]"):
        F.cross_entropy(z, np.array([0.0, np.nan, 1.0, 2.0]))
    with pytest.raises(
        ValueError, match=r"out of range: \[10\].*0\.\.9.*numbered from 1.*subtract 1"
    ):
        F.cross_entropy(z, np.array([1, 10, 3, 4]))
    with pytest.raises(ValueError, match=r"out of range: \[12\].*13 or more classes.*outputs"):
        F.cross_entropy(z, np.array([0, 12, 3, 4]))
    with pytest.raises(ValueError, match=r"out of range: \[-1\].*ignore_index=-100"):
        F.cross_entropy(z, np.array([0, -1, 3, 4]))
    with pytest.raises(ValueError, match=r"\(4, 1\) has an extra axis.*\(4,\).*reshape\(-1\)"):
        F.cross_entropy(z, np.array([[0], [1], [2], [3]]))
    with pytest.raises(ValueError, match=r"\(2, 5, 1\) has an extra axis.*reshape\(\(2, 5\)\)"):
        F.cross_entropy(Tensor(np.zeros((2, 3, 5))), np.zeros((2, 5, 1), dtype=int))
    with pytest.raises(ValueError, match=r"dtype <U1 is not a label type"):
        F.cross_entropy(z, np.array(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match=r"weight of shape \(3,\).*10 classes.*\(10,\)"):
        F.cross_entropy(z, np.array([0, 1, 2, 3]), weight=np.ones(3))
    with pytest.raises(ValueError, match=r"third positional argument is label_smoothing.*weight="):
        F.cross_entropy(z, np.array([0, 1, 2, 3]), np.ones(10))


def test_soft_targets_that_do_not_sum_to_one_warn_and_follow_torch(torch, rng):
    logits = rng.standard_normal((3, 4))
    t = np.array([[0.5, 0.5, 0, 0], [1, 1, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    with pytest.warns(UserWarning, match=r"1 of 3 rows do not sum to 1 \(row \(1,\) sums to 2\)"):
        loss = F.cross_entropy(t64(logits), t)
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(t))
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    with pytest.warns(UserWarning, match=r"1 entries are negative"):
        F.cross_entropy(t64(logits), np.array([[1.5, -0.5, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rows that sum to 1 in float32: no warning
        p = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
        F.cross_entropy(Tensor(logits.astype(np.float32)), p)


def test_images_that_do_not_fit_the_first_linear_layer_say_how():
    layer = nn.Linear(784, 10)
    with pytest.raises(ValueError, match=r"batch of images \(2, 1, 28, 28\).*nn\.Flatten\(\)"):
        layer(Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"per sample the input has 3072 features, not 784"):
        layer(Tensor(np.zeros((2, 3, 32, 32), dtype=np.float32)))
    out = nn.Sequential(nn.Flatten(), layer)(Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32)))
    assert out.shape == (2, 10)
    assert layer(Tensor(np.zeros(784, dtype=np.float32))).shape == (10,)  # unbatched, as torch
    assert nnparts.Tensor  # the package imports
