"""Channels-last memory (NHWC memory seen as NCHW): the layout helpers, and every op that runs on
it — convolution, BatchNorm, ReLU, pooling — against PyTorch, finite differences, and behavior
(the layout is kept from layer to layer, so no transposing copies happen between them)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import nnparts
import nnparts.functional as F
from nnparts import Tensor, gradcheck, nn
from nnparts.functional.layout import empty_channels_last, flat, is_channels_last, rows


def to_cl(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def test_is_channels_last_and_the_views_of_a_channels_last_array(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    cl = to_cl(x)
    assert is_channels_last(cl) and not is_channels_last(x)
    assert not is_channels_last(to_cl(x[:, :1]))  # one channel: both layouts, counted as NCHW
    assert not is_channels_last(x[:, :, ::2])  # a strided view is neither
    r = rows(cl)
    assert r.shape == (2 * 4 * 5, 3) and r.flags.c_contiguous and np.shares_memory(r, cl)
    np.testing.assert_array_equal(
        r[7], x[0, :, 1, 2]
    )  # row (n, i, j) holds pixel (i, j)'s channels
    f = flat(cl)
    f[:] = np.arange(f.size)  # writes through, in memory order
    assert cl[0, 1, 0, 0] == 1 and cl[0, 0, 0, 1] == 3
    assert flat(x[:, :, ::2]) is None
    e = empty_channels_last((2, 3, 4, 5), np.float32)
    assert e.shape == (2, 3, 4, 5) and is_channels_last(e) and e.dtype == np.float32


def test_channels_last_and_contiguous_change_the_memory_not_the_values(rng):
    x = Tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True)
    y = F.channels_last(x)
    assert is_channels_last(y.data)
    np.testing.assert_array_equal(y.data, x.data)
    z = F.contiguous(y)
    assert z.data.flags.c_contiguous
    g = rng.standard_normal(x.shape)
    (z * Tensor(g)).sum().backward()
    np.testing.assert_array_equal(x.grad, g)
    with pytest.raises(ValueError, match="4-D"):
        F.channels_last(Tensor(np.zeros((2, 3))))


@pytest.mark.parametrize("grad_layout", ["channels_last", "nchw"])
def test_batchnorm2d_on_channels_last_matches_torch_and_keeps_the_layout(torch, rng, grad_layout):
    """Training steps then evaluation on channels-last input: outputs, input and parameter
    gradients, running statistics equal PyTorch's; the output and the input gradient are
    channels-last (whatever layout dout arrives in)."""
    ours = nn.BatchNorm2d(5, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(5)
    w, b = rng.standard_normal(5) + 1, rng.standard_normal(5)
    ours.weight.data[...], ours.bias.data[...] = w, b
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(w))
        theirs.bias.copy_(torch.tensor(b))
    for step in range(4):
        if step == 3:
            ours.eval()
            theirs.eval()
        x = rng.standard_normal((4, 5, 3, 6)) * 3 + 2
        g = rng.standard_normal(x.shape)
        xo = Tensor(to_cl(x), requires_grad=True)
        yo = ours(xo)
        assert is_channels_last(yo.data)
        yo.backward(to_cl(g) if grad_layout == "channels_last" else g)
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(yo.data, yt.detach().numpy(), atol=1e-10)
        np.testing.assert_allclose(xo.grad, xt.grad.numpy(), atol=1e-10)
        if step < 3:
            assert is_channels_last(xo.grad)
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), atol=1e-10)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), atol=1e-10)
        ours.zero_grad()
        theirs.zero_grad()
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), atol=1e-10)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_on_channels_last_gradcheck(rng, affine):
    inputs = [Tensor(rng.standard_normal((3, 2, 2, 3)), requires_grad=True)]
    if affine:
        inputs += [Tensor(rng.standard_normal(2) + 1, requires_grad=True)]
        inputs += [Tensor(rng.standard_normal(2), requires_grad=True)]

    def fn(x, *affine_params):
        y = F.batch_norm(F.channels_last(x), None, None, *affine_params, training=True)
        assert is_channels_last(y.data)
        return y

    assert gradcheck(fn, inputs)


def test_relu_on_channels_last_keeps_layout_values_and_gradient(rng):
    """ReLU splits a flat view of the memory into chunks: on channels-last memory it must write
    through to the channels-last output (a reshape(-1) would silently write into a copy)."""
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    xo = Tensor(to_cl(x), requires_grad=True)
    y = F.relu(xo)
    assert is_channels_last(y.data)
    np.testing.assert_array_equal(y.data, np.maximum(x, 0))
    g = rng.standard_normal(x.shape).astype(np.float32)
    y.backward(to_cl(g))
    assert is_channels_last(xo.grad)
    np.testing.assert_array_equal(xo.grad, g * (x > 0))
    xo.grad = None
    F.relu(xo).backward(g)  # dout NCHW, y channels-last: mixed layouts
    np.testing.assert_array_equal(xo.grad, g * (x > 0))
    x64 = Tensor(rng.standard_normal((2, 3, 2, 2)) + 0.05, requires_grad=True)
    assert gradcheck(lambda t: F.relu(F.channels_last(t)), [x64])


@pytest.mark.parametrize(
    "kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0), (2, 1, 2)]
)
def test_conv2d_on_channels_last_gradcheck(rng, kernel, stride, padding):
    """Finite differences through the channels-last convolution's every backward path:
    transposed convolution, col2im, 1x1 on the input's rows, strided 1x1."""
    x = Tensor(rng.standard_normal((2, 3, 5, 4)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, kernel, kernel)), requires_grad=True)
    b = Tensor(rng.standard_normal(4), requires_grad=True)

    def fn(x, w, b):
        return F.conv2d(F.channels_last(x), w, b, stride=stride, padding=padding)

    assert gradcheck(fn, [x, w, b])


def _small_cnn(torch, rng):
    """The same conv-BN-ReLU-pool network in nnparts (float64) and PyTorch, same weights."""
    ours = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, rng=rng),  # one channel: NCHW im2col
        nn.MaxPool2d(2),
        nn.BatchNorm2d(6, dtype=np.float64),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=False, rng=rng),  # channels-last im2col
        nn.BatchNorm2d(8, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 1, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Linear(8, 10, rng=rng),
    )
    for p in ours.parameters():
        p.data = p.data.astype(np.float64)
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1),
        torch.nn.MaxPool2d(2),
        torch.nn.BatchNorm2d(6),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(3),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    state = {}
    for name, value in ours.state_dict().items():
        value = np.asarray(value)
        if name.endswith("weight") and value.ndim == 2:  # Linear: (in, out) -> (out, in)
            value = value.T
        state[name] = torch.tensor(np.array(value, dtype=np.float64))
    theirs.load_state_dict(state)
    return ours, theirs


def test_a_cnn_runs_channels_last_from_its_first_convolution_and_equals_torch(torch, rng):
    """Behavior and reference at once: in a conv-pool-BN-ReLU network every activation from the
    first convolution on is channels-last (no transposing copies between layers; the first
    convolution of the NCHW images lowers NCHW), and outputs and every gradient equal
    PyTorch's."""
    ours, theirs = _small_cnn(torch, rng)
    x = rng.standard_normal((5, 1, 12, 12))
    layouts = []
    h = Tensor(x)
    for layer in ours:
        h = layer(h)
        layouts.append(is_channels_last(h.data))
    assert layouts == [True] * 10 + [False] * 3  # (N, 8, 1, 1) on: both layouts at once
    y = ours(Tensor(x))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ty = theirs(torch.tensor(x))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10)
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        tg = theirs_grads[name].grad.numpy()
        np.testing.assert_allclose(p.grad, tg.T if tg.ndim == 2 else tg, atol=1e-10, err_msg=name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_tune_malloc_applies_on_linux_and_can_be_switched_off(monkeypatch):
    from nnparts import memory

    monkeypatch.setenv("NNPARTS_TUNE_MALLOC", "0")
    assert memory.tune_malloc() is False
    monkeypatch.delenv("NNPARTS_TUNE_MALLOC")
    applied = memory.tune_malloc()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        pytest.skip("not glibc (no mallopt): tune_malloc leaves malloc alone")
    assert applied is True
    assert memory.malloc_settings()["mmap_threshold"] == 32 << 20
    assert nnparts.memory is memory


def test_concat_of_channels_last_maps_stays_channels_last(torch, rng):
    """DenseNet's channel concatenation keeps channels-last memory (NumPy's concatenate would
    return NCHW and the next BatchNorm and convolution would work on transposed copies); values
    and gradients equal PyTorch's; maps that differ elsewhere than in channels are refused."""
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 2, 4, 5))
    A, B = Tensor(to_cl(a), requires_grad=True), Tensor(to_cl(b), requires_grad=True)
    y = F.concat([A, B], axis=1)
    assert is_channels_last(y.data)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = torch.cat([ta, tb], dim=1)
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(y.data, ty.detach().numpy())
    np.testing.assert_array_equal(A.grad, ta.grad.numpy())
    np.testing.assert_array_equal(B.grad, tb.grad.numpy())
    with pytest.raises(ValueError):
        F.concat([A, Tensor(to_cl(rng.standard_normal((2, 2, 4, 4))))], axis=1)


@pytest.mark.parametrize("tile_values", [1, 512])
def test_channels_last_batchnorm_in_ranges_of_rows_matches_torch(
    torch, rng, monkeypatch, tile_values
):
    """The channels-last BatchNorm splits the rows over the threads and merges the ranges'
    means and centred sums of squares exactly; its per-channel vectors are tiled to rows of
    ``k*C`` values (``k = 20`` here) or not (``k = 1``): the output, gradients and statistics
    equal PyTorch's either way."""
    from nnparts import threads
    from nnparts.functional import layout

    monkeypatch.setattr(layout, "TILE_VALUES", tile_values)
    threads.set_min_work(0)
    try:
        x = rng.standard_normal((5, 3, 4, 5)) * 0.5 + 20.0  # a mean far from 0
        g = rng.standard_normal(x.shape)
        ours = nn.BatchNorm2d(3, dtype=np.float64)
        xo = Tensor(to_cl(x), requires_grad=True)
        yo = ours(xo)
        yo.backward(to_cl(g))
    finally:
        threads.set_min_work(1 << 18)
    theirs = torch.nn.BatchNorm2d(3)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(yo.data, yt.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), atol=1e-10)


def test_tile_factor_is_the_largest_divisor_within_the_row_width(monkeypatch):
    from nnparts.functional import layout

    monkeypatch.setattr(layout, "TILE_VALUES", 16384)
    assert layout.tile_factor(784, 32) == 392  # 28x28 maps: rows of 12544 values
    assert layout.tile_factor(729, 32) == 243  # 27x27 = 3^6: 243 <= 512, 729 > 512
    assert layout.tile_factor(49, 128) == 49  # a whole 7x7 sample, 6272 values
    assert layout.tile_factor(13, 4096) == 1  # a prime map, a channel count over the width
    assert layout.tile_factor(0, 32) == 1  # an empty batch (a linear layer's rows)
    monkeypatch.setattr(layout, "TILE_VALUES", 1)
    assert layout.tile_factor(784, 32) == 1
    for per, C in [(784, 32), (169, 64), (36, 128), (1, 3)]:  # any width: k divides per
        for width in (1, 100, 512, 16384, 10**6):
            monkeypatch.setattr(layout, "TILE_VALUES", width)
            k = layout.tile_factor(per, C)
            assert per % k == 0 and (k == 1 or k * C <= width)
            assert not any(per % j == 0 and j * C <= width for j in range(k + 1, per + 1))


def test_tiled_rows_give_the_same_bits_at_any_width(rng, monkeypatch):
    """The tiled ``(m/k, k*C)`` rows are only a wider view for NumPy's broadcast: BatchNorm in
    training (output, input and parameter gradients) and in evaluation, and a convolution's bias
    (output and bias gradient), equal bit for bit with ``k = 1``, an intermediate ``k`` and the
    default width."""
    from nnparts.functional import layout

    x = to_cl(rng.standard_normal((4, 8, 12, 12)).astype(np.float32) * 2 + 1)
    g = to_cl(rng.standard_normal((4, 8, 12, 12)).astype(np.float32))
    gamma = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    w, b = rng.standard_normal((16, 8, 3, 3)) * 0.1, rng.standard_normal(16)
    gout = to_cl(rng.standard_normal((4, 16, 12, 12)).astype(np.float32))
    results = {}
    for width in (1, 100, layout.TILE_VALUES):  # k = 1, 12 and 144 (a whole sample)
        monkeypatch.setattr(layout, "TILE_VALUES", width)
        bn = nn.BatchNorm2d(8)
        bn.weight.data[:] = gamma
        X = Tensor(x, requires_grad=True)
        y = bn(X)
        y.backward(g)
        bn.eval()
        ev = bn(Tensor(x)).data
        conv = nn.Conv2d(8, 16, 3, padding=1)
        conv.weight.data[:], conv.bias.data[:] = w, b
        Xc = Tensor(x, requires_grad=True)
        out = conv(Xc)
        out.backward(gout)
        results[width] = [y.data, X.grad, bn.weight.grad, bn.bias.grad, ev, out.data]
        results[width] += [conv.bias.grad, conv.weight.grad, Xc.grad]
    first, *others = results.values()
    for other in others:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


def test_channels_last_batchnorm_float32_statistics_are_accurate(rng):
    """float32 input whose mean is 1000x its spread: the statistics (float32 sums of values
    centred on a first guess, per thread, merged in float64) normalize it as well as float64
    arithmetic does, to the rounding of the output's ``x * alpha + beta``."""
    x = (rng.standard_normal((16, 4, 12, 12)) * 0.01 + 10.0).astype(np.float32)
    y = F.batch_norm(Tensor(to_cl(x)), None, None, training=True).data
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(
        x64.var(axis=(0, 2, 3), keepdims=True) + 1e-5
    )
    assert np.abs(y - ref).max() < 2e-4  # 6e-5 to 9e-5 measured (PyTorch: 4e-4 to 5e-4)
