"""Losses: cross-entropy (indices, probabilities, label smoothing), MSE, BCE with logits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnparts import Tensor, gradcheck
from nnparts import functional as F


def t64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def _torch_check(torch, ours, theirs, logits, target, target_torch, atol=1e-8):
    z = t64(logits)
    zr = torch.tensor(logits, requires_grad=True)
    loss, loss_r = ours(z, target), theirs(zr, target_torch)
    np.testing.assert_allclose(loss.data, loss_r.detach().numpy(), atol=atol, rtol=0)
    g = np.random.default_rng(3).standard_normal(loss.shape) if loss.ndim else 1.0
    loss.backward(np.asarray(g, dtype=np.float64) if loss.ndim else None)
    loss_r.backward(torch.tensor(g) if loss.ndim else None)
    np.testing.assert_allclose(z.grad, zr.grad.numpy(), atol=atol, rtol=0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_indices_matches_torch(torch, rng, smoothing, reduction):
    logits = rng.standard_normal((6, 5)) * 3
    labels = rng.integers(0, 5, size=6)
    _torch_check(
        torch,
        lambda z, t: F.cross_entropy(z, t, label_smoothing=smoothing, reduction=reduction),
        lambda z, t: torch.nn.functional.cross_entropy(
            z, t, label_smoothing=smoothing, reduction=reduction
        ),
        logits,
        labels,
        torch.tensor(labels),
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("normalized", [True, False])
def test_cross_entropy_probabilities_matches_torch(torch, rng, smoothing, normalized):
    logits = rng.standard_normal((4, 6)) * 2
    probs = rng.uniform(0.0, 1.0, size=(4, 6))
    if normalized:
        probs /= probs.sum(1, keepdims=True)
    _torch_check(
        torch,
        lambda z, t: F.cross_entropy(z, t, label_smoothing=smoothing),
        lambda z, t: torch.nn.functional.cross_entropy(z, t, label_smoothing=smoothing),
        logits,
        probs,
        torch.tensor(probs),
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_gradcheck(rng, smoothing):
    logits = rng.standard_normal((4, 3))
    labels = rng.integers(0, 3, size=4)
    assert gradcheck(lambda z: F.cross_entropy(z, labels, label_smoothing=smoothing), [t64(logits)])
    probs = rng.dirichlet(np.ones(3), size=4)
    assert gradcheck(lambda z: F.cross_entropy(z, probs, label_smoothing=smoothing), [t64(logits)])
    assert gradcheck(lambda z: F.cross_entropy(z, labels, reduction="none"), [t64(logits)])


def test_cross_entropy_backward_is_p_minus_y_over_n(rng):
    logits = rng.standard_normal((8, 4))
    labels = rng.integers(0, 4, size=8)
    z = t64(logits)
    F.cross_entropy(z, labels).backward()
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.eye(4)[labels]
    np.testing.assert_allclose(z.grad, (p - y) / 8, atol=1e-15)


def test_cross_entropy_index_and_onehot_agree_and_float_labels_accepted(rng):
    logits = rng.standard_normal((5, 3))
    labels = np.array([0, 2, 1, 1, 0])
    a = F.cross_entropy(t64(logits), labels, label_smoothing=0.1).item()
    b = F.cross_entropy(t64(logits), np.eye(3)[labels], label_smoothing=0.1).item()
    c = F.cross_entropy(t64(logits), labels.astype(np.float32)).item()
    d = F.cross_entropy(t64(logits), Tensor(labels)).item()
    assert a == pytest.approx(b, abs=1e-12)
    assert c == pytest.approx(d, abs=1e-12)


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_cross_entropy_stable_at_1e4(big):
    logits = np.array([[big, 0.0, -big], [0.0, big, 1.0]], dtype=np.float32)
    for target in (np.array([0, 2]), np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])):
        z = Tensor(logits, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(over="raise", divide="raise", invalid="raise"):
                loss = F.cross_entropy(z, target, label_smoothing=0.1)
                loss.backward()
        assert loss.dtype == np.float32
        assert np.isfinite(loss.item()) and np.all(np.isfinite(z.grad))
    # the loss is exact, not clipped: the wrong row pays 1e4
    loss = F.cross_entropy(t64([[0.0, 1e4]]), np.array([0])).item()
    assert loss == pytest.approx(1e4)


def test_cross_entropy_bad_labels():
    z = Tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"out of range: \[-1, 4\].*0\.\.3"):
        F.cross_entropy(z, np.array([0, 4, -1]))
    with pytest.raises(ValueError, match=r"non-integer values \[1\.5\].*\[0, 3\]"):
        F.cross_entropy(z, np.array([0.0, 1.5, 2.0]))
    with pytest.raises(ValueError, match=r"\(2,\).*batch 3"):
        F.cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        F.cross_entropy(z, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"\(N, C\).*\(4,\)"):
        F.cross_entropy(Tensor(np.zeros(4)), np.array([1]))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, np.array([0, 1, 2]), reduction="avg")


def test_cross_entropy_training_learns_separable_data(rng):
    """Behavior: gradient descent on cross-entropy classifies a separable problem."""
    x = rng.standard_normal((60, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    w = Tensor(np.zeros((2, 2)), requires_grad=True)
    for _ in range(100):
        w.grad = None
        F.cross_entropy(Tensor(x) @ w, y).backward()
        w.data -= 1.0 * w.grad
    accuracy = np.mean((x @ w.data).argmax(1) == y)
    assert accuracy > 0.95


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch_and_gradcheck(torch, rng, reduction):
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    p, t = t64(pred), t64(target)
    pr = torch.tensor(pred, requires_grad=True)
    tr = torch.tensor(target, requires_grad=True)
    loss = F.mse_loss(p, t, reduction=reduction)
    loss_r = torch.nn.functional.mse_loss(pr, tr, reduction=reduction)
    np.testing.assert_allclose(loss.data, loss_r.detach().numpy(), atol=1e-10)
    g = np.ones(loss.shape)
    loss.backward(g)
    loss_r.backward(torch.tensor(g))
    np.testing.assert_allclose(p.grad, pr.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(t.grad, tr.grad.numpy(), atol=1e-10)
    assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [t64(pred), t64(target)])
    assert F.mse_loss(t64([1.0, 2.0]), np.array([1.0, 4.0])).item() == pytest.approx(2.0)


def test_mse_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4,\)"):
        F.mse_loss(Tensor(np.zeros((4, 1))), Tensor(np.zeros(4)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch_and_gradcheck(torch, rng, reduction):
    logits = rng.standard_normal((5, 2)) * 4
    target = rng.uniform(0, 1, size=(5, 2))
    z, t = t64(logits), t64(target)
    zr = torch.tensor(logits, requires_grad=True)
    tr = torch.tensor(target, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(z, t, reduction=reduction)
    loss_r = torch.nn.functional.binary_cross_entropy_with_logits(zr, tr, reduction=reduction)
    np.testing.assert_allclose(loss.data, loss_r.detach().numpy(), atol=1e-10)
    g = np.full(loss.shape, 0.7)
    loss.backward(g)
    loss_r.backward(torch.tensor(g))
    np.testing.assert_allclose(z.grad, zr.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(t.grad, tr.grad.numpy(), atol=1e-10)
    assert gradcheck(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
        [t64(logits), t64(target)],
    )


def test_bce_with_logits_stable_and_shape_checked():
    z = Tensor(np.array([1e4, -1e4, 0.0], dtype=np.float32), requires_grad=True)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        loss = F.binary_cross_entropy_with_logits(z, np.array([0.0, 1.0, 1.0], dtype=np.float32))
        loss.backward()
    assert loss.item() == pytest.approx((1e4 + 1e4 + np.log(2)) / 3, rel=1e-6)
    np.testing.assert_allclose(z.grad, np.array([1.0, -1.0, -0.5]) / 3, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        F.binary_cross_entropy_with_logits(z, np.zeros(2))
