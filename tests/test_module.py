"""Module, Parameter, Sequential, Linear: registration, state_dict, train/eval, torch equality."""

from __future__ import annotations

import numpy as np
import pytest

from nnparts import Tensor, gradcheck, nn
from nnparts import functional as F


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4, rng=0)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.5, rng=0)
        self.fc2 = nn.Linear(4, 2, bias=False, rng=1)
        self.register_buffer("steps", np.zeros(1))
        self.not_a_param = np.ones(3)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


def test_registration_and_names():
    m = TwoLayer()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight"]
    assert [p.shape for p in m.parameters()] == [(3, 4), (4,), (4, 2)]
    assert all(p.requires_grad for p in m.parameters())
    assert m.num_parameters() == 12 + 4 + 8
    assert list(m.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "steps"]
    # reassigning replaces, deleting unregisters
    m.fc2 = nn.Linear(4, 5)
    assert [p.shape for p in m.parameters()][-2:] == [(4, 5), (5,)]
    del m.fc2
    assert len(m.parameters()) == 2


def test_shared_parameter_counted_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(seq.parameters()) == 2


def test_super_init_required():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(2))

    with pytest.raises(RuntimeError, match="super"):
        Bad()


def test_train_eval_reaches_every_submodule():
    m = nn.Sequential(TwoLayer(), nn.Sequential(nn.Dropout(0.2)))
    assert all(sub.training for sub in m.modules())
    assert m.eval() is m
    assert not any(sub.training for sub in m.modules())
    m.train()
    assert all(sub.training for sub in m.modules())


def test_eval_makes_forward_deterministic(rng):
    m = TwoLayer()
    x = Tensor(rng.standard_normal((8, 3)).astype(np.float32))
    m.eval()
    np.testing.assert_array_equal(m(x).data, m(x).data)
    m.train()
    assert not np.array_equal(m(x).data, m(x).data)


def test_state_dict_roundtrip_copies(rng):
    a, b = TwoLayer(), TwoLayer()
    b.fc1.weight.data[...] = 0
    b.steps[...] = 5
    state = b.state_dict()
    state_copy = {k: v.copy() for k, v in state.items()}
    b.fc1.weight.data[...] = 1  # state_dict holds copies, not views
    np.testing.assert_array_equal(state["fc1.weight"], 0)
    weight_array = a.fc1.weight.data
    a.load_state_dict(state_copy)
    assert a.fc1.weight.data is weight_array  # loaded in place
    np.testing.assert_array_equal(a.fc1.weight.data, 0)
    np.testing.assert_array_equal(a.steps, 5)
    x = Tensor(rng.standard_normal((2, 3)).astype(np.float32))
    a.eval()
    b.load_state_dict(state_copy)
    b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    m = TwoLayer()
    state = m.state_dict()
    state["fc1.weight"] = np.zeros((4, 3))
    before = m.fc1.bias.data.copy()
    state["fc1.bias"] = np.ones(4)
    with pytest.raises(ValueError, match=r"'fc1.weight'.*\(4, 3\).*\(3, 4\)"):
        m.load_state_dict(state)
    np.testing.assert_array_equal(m.fc1.bias.data, before)  # nothing loaded on error


def test_load_state_dict_missing_and_unexpected_keys():
    m = TwoLayer()
    state = m.state_dict()
    del state["fc2.weight"]
    state["extra"] = np.zeros(1)
    with pytest.raises(
        KeyError, match=r"missing keys \['fc2.weight'\].*unexpected keys \['extra'\]"
    ):
        m.load_state_dict(state)
    m.load_state_dict(state, strict=False)


def test_sequential_indexing_and_append():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
    assert len(seq) == 2 and isinstance(seq[1], nn.Tanh)
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1
    seq.append(nn.Linear(3, 1))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(TypeError, match="item 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_linear_matches_torch(torch, rng):
    lin = nn.Linear(5, 3, dtype=np.float64, rng=0)
    ref = torch.nn.Linear(5, 3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(lin.weight.data.T))  # torch stores (out, in)
        ref.bias.copy_(torch.tensor(lin.bias.data))
    x = rng.standard_normal((4, 5))
    xs = Tensor(x, requires_grad=True)
    xr = torch.tensor(x, requires_grad=True)
    y, yr = lin(xs), ref(xr)
    np.testing.assert_allclose(y.data, yr.detach().numpy(), atol=1e-12)
    g = rng.standard_normal((4, 3))
    y.backward(g)
    yr.backward(torch.tensor(g))
    np.testing.assert_allclose(lin.weight.grad, ref.weight.grad.numpy().T, atol=1e-12)
    np.testing.assert_allclose(lin.bias.grad, ref.bias.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(xs.grad, xr.grad.numpy(), atol=1e-12)


def test_linear_gradcheck_and_batched_input(rng):
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    b = Tensor(rng.standard_normal(5), requires_grad=True)
    assert gradcheck(F.linear, [x, w, b])
    assert gradcheck(F.linear, [x, w])


@pytest.mark.parametrize("n", [0, 1, 7, 96, 128])
def test_linear_output_is_x_w_plus_b_bit_for_bit_at_any_batch_size(rng, n):
    """The product split over threads (by columns for a 512-wide output) and the bias added in
    place give the bits of ``x @ W + b``, an empty batch included; the bias gradient is the
    column sums of ``dY``."""
    x = rng.standard_normal((n, 33)).astype(np.float32)
    w = rng.standard_normal((33, 512)).astype(np.float32)
    b = rng.standard_normal(512).astype(np.float32)
    X, B = Tensor(x, requires_grad=True), Tensor(b, requires_grad=True)
    y = F.linear(X, Tensor(w, requires_grad=True), B)
    want = x @ w
    want += b
    np.testing.assert_array_equal(y.data, want)
    g = rng.standard_normal((n, 512)).astype(np.float32)
    y.backward(g)
    assert B.grad.dtype == np.float32 and B.grad.shape == (512,)
    np.testing.assert_allclose(B.grad, g.astype(np.float64).sum(axis=0), rtol=0, atol=2e-5)


def test_linear_defaults_and_errors():
    lin = nn.Linear(784, 10)
    assert lin.weight.shape == (784, 10) and lin.weight.dtype == np.float32
    bound = 1 / np.sqrt(784)
    assert np.abs(lin.weight.data).max() <= bound
    assert nn.Linear(3, 2, bias=False).bias is None
    with pytest.raises(ValueError, match=r"\(2, 7\).*7 features.*\(784, 10\).*784"):
        lin(Tensor(np.zeros((2, 7), dtype=np.float32)))
    with pytest.raises(ValueError, match="in_features=0"):
        nn.Linear(0, 3)


def test_mlp_learns_xor():
    """Behavior: Module + Linear + activation + loss + backward fit XOR."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    model = nn.Sequential(nn.Linear(2, 8, rng=0), nn.Tanh(), nn.Linear(8, 2, rng=1))
    for _ in range(300):
        model.zero_grad()
        F.cross_entropy(model(Tensor(x)), y).backward()
        for p in model.parameters():
            p.data -= 0.5 * p.grad
    assert np.array_equal(model(Tensor(x)).data.argmax(1), y)


def test_flatten_module():
    x = Tensor(np.zeros((2, 3, 4, 5)))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(start_dim=2)(x).shape == (2, 3, 20)
