"""Inverted dropout: scaling, fraction dropped, eval identity, gradient through kept units."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts
from nnparts import Tensor, gradcheck, nn
from nnparts import functional as F


def test_mean_preserved_and_fraction_dropped(rng):
    x = Tensor(np.ones((200, 500), dtype=np.float32))
    for p in (0.1, 0.5, 0.8):
        y = F.dropout(x, p, rng=rng).data
        assert y.dtype == np.float32
        dropped = np.mean(y == 0)
        assert abs(dropped - p) < 0.01, (p, dropped)
        kept = y[y != 0]
        np.testing.assert_allclose(kept, 1 / (1 - p), rtol=1e-6)  # inverted: scaled at train time
        assert abs(y.mean() - 1.0) < 0.03


def test_eval_and_p0_are_identity(rng):
    x = Tensor(rng.standard_normal((4, 5)).astype(np.float32))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, rng=rng) is x
    m = nn.Dropout(0.5, rng=0)
    m.eval()
    np.testing.assert_array_equal(m(x).data, x.data)
    m.train()
    assert np.any(m(x).data == 0)


def test_p1_drops_everything(rng):
    x = Tensor(np.ones(10), requires_grad=True)
    y = F.dropout(x, 1.0, rng=rng)
    np.testing.assert_array_equal(y.data, 0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, 0)


def test_gradient_flows_only_through_kept_units(rng):
    x = Tensor(rng.standard_normal((6, 7)), requires_grad=True)
    y = F.dropout(x, 0.4, rng=np.random.default_rng(5))
    y.backward(np.ones(y.shape))
    kept = y.data != 0
    np.testing.assert_allclose(x.grad[kept], 1 / 0.6)
    np.testing.assert_array_equal(x.grad[~kept], 0)
    assert 0 < kept.sum() < kept.size


def test_gradcheck_with_fixed_mask(rng):
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    # gradcheck calls the function repeatedly: a fresh generator with the same seed per call
    assert gradcheck(lambda v: F.dropout(v, 0.3, rng=np.random.default_rng(9)), [x])


def test_seeded_and_reproducible():
    x = Tensor(np.ones((5, 5), dtype=np.float32))
    a = F.dropout(x, 0.5, rng=3).data
    b = F.dropout(x, 0.5, rng=3).data
    np.testing.assert_array_equal(a, b)
    nnparts.manual_seed(11)
    c = F.dropout(x, 0.5).data
    nnparts.manual_seed(11)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, c)
    m = nn.Dropout(0.5, rng=3)
    assert not np.array_equal(m(x).data, m(x).data)  # a module's masks differ call to call


def test_matches_torch_given_the_same_mask(torch, rng):
    """Same mask as torch -> same output and gradient (torch's scaling is 1/(1-p))."""
    x = rng.standard_normal((4, 6))
    p = 0.25
    ours = Tensor(x, requires_grad=True)
    y = F.dropout(ours, p, rng=np.random.default_rng(1))
    mask = (y.data != 0).astype(np.float64)
    xr = torch.tensor(x, requires_grad=True)
    yr = xr * torch.tensor(mask) / (1 - p)
    np.testing.assert_allclose(y.data, yr.detach().numpy(), atol=1e-12)
    torch.manual_seed(0)
    t_out = torch.nn.functional.dropout(torch.ones(10000), p)
    assert set(np.unique(t_out.numpy()).round(6)) == {0.0, round(1 / (1 - p), 6)}
    y.sum().backward()
    yr.sum().backward()
    np.testing.assert_allclose(ours.grad, xr.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", None])
def test_bad_p(p):
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        F.dropout(Tensor(np.ones(3)), p)
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        nn.Dropout(p)
