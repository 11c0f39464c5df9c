"""conv2d and Conv2d: finite differences, PyTorch reference, channels-last internals, behavior."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnparts
import nnparts.functional as F
from nnparts import nn
from nnparts.functional.conv import col2im, im2col

# (N, C, H, W, out, kh, kw, stride, padding)
CASES = [
    (2, 3, 7, 7, 4, 3, 3, 1, 1),  # "same" 3x3
    (2, 3, 9, 8, 5, 3, 3, 2, 0),  # stride 2, odd size
    (1, 2, 7, 6, 3, 3, 2, (2, 1), (1, 2)),  # non-square kernel, stride and padding
    (2, 4, 5, 5, 3, 1, 1, 1, 0),  # 1x1 conv
    (2, 2, 6, 5, 3, 1, 1, 2, 1),  # 1x1 conv with stride and padding
    (1, 1, 5, 5, 2, 5, 5, 1, 0),  # kernel as large as the input
    (3, 2, 8, 8, 2, 4, 4, 3, 2),  # stride that leaves rows unread
]


# The default path's ways to lower a convolution: NCHW im2col (runs of image rows), NHWC im2col
# of the padded input (runs of ``kw*C`` values), and NHWC on the rectangles of taps inside the
# image (no product with the padding), as (conv.LAYOUT, conv.SKIP_PADDING).
LOWERINGS = {"nchw": ("nchw", "never"), "nhwc": ("nhwc", "never"), "skip": ("nhwc", "always")}


@pytest.fixture(params=list(LOWERINGS))
def layout(request, monkeypatch):
    """Each lowering of the default path forced in turn: each must give the same convolution."""
    from nnparts.functional import conv

    monkeypatch.setattr(conv, "LAYOUT", LOWERINGS[request.param][0])
    monkeypatch.setattr(conv, "SKIP_PADDING", LOWERINGS[request.param][1])
    return request.param


def _torch_conv(torch, x, w, b, stride, padding, g):
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    ty.backward(torch.tensor(g))
    return ty, tx, tw, tb


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_matches_torch(torch, rng, case, with_bias, layout):
    N, C, H, W, O, kh, kw, stride, padding = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C, kh, kw))
    b = rng.standard_normal(O) if with_bias else None
    X = nnparts.Tensor(x, requires_grad=True)
    Wt = nnparts.Tensor(w, requires_grad=True)
    B = nnparts.Tensor(b, requires_grad=True) if with_bias else None
    y = F.conv2d(X, Wt, B, stride=stride, padding=padding)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ty, tx, tw, tb = _torch_conv(torch, x, w, b, stride, padding, g)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(Wt.grad, tw.grad.numpy(), atol=1e-8, rtol=0)
    if with_bias:
        np.testing.assert_allclose(B.grad, tb.grad.numpy(), atol=1e-8, rtol=0)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3),
    h=st.integers(3, 8), w=st.integers(3, 8), kh=st.integers(1, 3), kw=st.integers(1, 3),
    sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)  # fmt: skip
@pytest.mark.parametrize("lowering", list(LOWERINGS))
def test_conv2d_random_shapes_match_torch(n, c, o, h, w, kh, kw, sh, sw, ph, pw, seed, lowering):
    torch = pytest.importorskip("torch")
    from nnparts.functional import conv

    # hypothesis runs many examples per test: no function-scoped fixture
    conv.LAYOUT, conv.SKIP_PADDING = LOWERINGS[lowering]
    try:
        _random_case(torch, n, c, o, h, w, kh, kw, sh, sw, ph, pw, seed)
    finally:
        conv.LAYOUT, conv.SKIP_PADDING = "auto", "auto"


def _random_case(torch, n, c, o, h, w, kh, kw, sh, sw, ph, pw, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, kh, kw))
    b = rng.standard_normal(o)
    X, Wt, B = (nnparts.Tensor(a, requires_grad=True) for a in (x, wt, b))
    y = F.conv2d(X, Wt, B, stride=(sh, sw), padding=(ph, pw))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ty, tx, tw, tb = _torch_conv(torch, x, wt, b, (sh, sw), (ph, pw), g)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(Wt.grad, tw.grad.numpy(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(B.grad, tb.grad.numpy(), atol=1e-8, rtol=0)


@pytest.mark.parametrize(
    "stride, padding, kernel", [(1, 1, (3, 3)), (2, 0, (3, 2)), ((1, 2), (2, 1), (2, 3))]
)
def test_conv2d_gradcheck(rng, stride, padding, kernel, layout):
    x = nnparts.Tensor(rng.standard_normal((2, 2, 5, 4)), requires_grad=True)
    w = nnparts.Tensor(rng.standard_normal((3, 2, *kernel)), requires_grad=True)
    b = nnparts.Tensor(rng.standard_normal(3), requires_grad=True)
    assert nnparts.gradcheck(
        lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding), [x, w, b]
    )


def test_conv2d_stack_and_channels_last_input(torch, rng):
    """A stack of convolutions equals PyTorch; outputs are channels-last (NHWC memory seen as
    NCHW, PyTorch's channels_last) whichever im2col layout a layer uses; an input whose memory
    is channels-last gives the same numbers and gradients."""
    from nnparts.functional.layout import is_channels_last

    x = rng.standard_normal((2, 3, 6, 6))
    w1, w2 = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((5, 4, 3, 3))
    X = nnparts.Tensor(x, requires_grad=True)
    W1, W2 = nnparts.Tensor(w1, requires_grad=True), nnparts.Tensor(w2, requires_grad=True)
    h = F.conv2d(X, W1, padding=1)
    assert h.shape == (2, 4, 6, 6)
    assert is_channels_last(h.data)  # the GEMM's rows are the output pixels
    assert is_channels_last(F.conv2d(X[:, :1], W1[:, :1], padding=1).data)  # NCHW lowering too
    y = F.conv2d(h, W2, stride=2)
    assert is_channels_last(y.data)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    tx, tw1, tw2 = (torch.tensor(a, requires_grad=True) for a in (x, w1, w2))
    th = torch.nn.functional.conv2d(tx, tw1, padding=1)
    ty = torch.nn.functional.conv2d(th, tw2, stride=2)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-8)
    for ours, theirs in ((X, tx), (W1, tw1), (W2, tw2)):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), atol=1e-8)
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    X_cl = nnparts.Tensor(x_cl, requires_grad=True)
    y_cl = F.conv2d(F.conv2d(X_cl, W1, padding=1), W2, stride=2)
    np.testing.assert_allclose(y_cl.data, y.data, atol=1e-12)
    y_cl.backward(g)
    np.testing.assert_allclose(X_cl.grad, X.grad, atol=1e-12)
    assert is_channels_last(X_cl.grad) and X.grad.flags.c_contiguous  # dx has x's layout


@pytest.mark.parametrize("grad_layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride, padding, kernel", [(1, 1, 3), (2, 1, 3), (1, 0, 1), (2, 0, 1)])
def test_conv2d_channels_last_path_takes_gradients_in_either_layout(
    torch, rng, grad_layout, stride, padding, kernel
):
    """The channels-last convolution's backward gets ``dout`` in whichever layout the next op
    returns it (BatchNorm and ReLU keep channels-last, a reshape makes it NCHW) and gives the
    same gradients, equal to PyTorch's, on each backward path (transposed convolution, col2im,
    1x1)."""
    from nnparts.functional.layout import is_channels_last

    x = rng.standard_normal((3, 6, 5, 5))
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((4, 6, kernel, kernel))
    b = rng.standard_normal(4)
    X, Wt, B = (nnparts.Tensor(a, requires_grad=True) for a in (x_cl, w, b))
    y = F.conv2d(X, Wt, B, stride=stride, padding=padding)
    assert is_channels_last(y.data) or y.shape[2:] == (1, 1)
    g = rng.standard_normal(y.shape)
    if grad_layout == "channels_last":
        g = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y.backward(g)
    ty, tx, tw, tb = _torch_conv(torch, x, w, b, stride, padding, np.ascontiguousarray(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(Wt.grad, tw.grad.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(B.grad, tb.grad.numpy(), atol=1e-10, rtol=0)
    assert is_channels_last(X.grad)


def test_im2col_col2im_are_adjoint(rng):
    """<col2im(D), X> == <D, im2col(X)>: col2im is exactly the transpose of im2col."""
    x = rng.standard_normal((2, 3, 7, 6))
    col = im2col(x, (3, 2), (2, 1), (1, 1))
    assert col.shape == (3, 3, 2, 2, 4, 7)  # (C, kh, kw, N, OH, OW)
    d = rng.standard_normal(col.shape)
    back = col2im(d, x.shape, (2, 1), (1, 1))
    assert back.shape == x.shape
    assert np.isclose(np.sum(back * x), np.sum(d * col))


def test_conv2d_float32_stays_float32_and_input_grad_is_skipped(rng):
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    conv = nn.Conv2d(1, 4, 3, padding=1, rng=0)
    y = conv(nnparts.Tensor(x))
    assert y.dtype == np.float32
    y.sum().backward()
    assert conv.weight.grad.dtype == np.float32 and conv.bias.grad.dtype == np.float32
    assert conv.weight.grad.shape == (4, 1, 3, 3)
    np.testing.assert_allclose(conv.bias.grad, np.full(4, 2 * 36), rtol=1e-6)


def test_conv2d_detects_a_vertical_edge():
    """Behavior: a Sobel-like kernel answers where the image changes from dark to bright."""
    img = np.zeros((1, 1, 5, 6))
    img[..., 3:] = 1.0  # edge between columns 2 and 3
    kernel = np.array([[-1.0, 0.0, 1.0]] * 3).reshape(1, 1, 3, 3)
    out = F.conv2d(img, kernel).data[0, 0]  # (3, 4): window columns 0..3
    np.testing.assert_array_equal(out, np.tile([0.0, 3.0, 3.0, 0.0], (3, 1)))


def test_conv2d_bad_inputs_name_the_shapes(rng):
    w = rng.standard_normal((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):  # (C, H, W) is unbatched; 2-D is not
        F.conv2d(rng.standard_normal((8, 8)), w)
    with pytest.raises(ValueError, match=r"mismatch.*\(1, 2, 8, 8\).*2 channels.*expects 3"):
        F.conv2d(rng.standard_normal((1, 2, 8, 8)), w)
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) is larger than the padded input \(2, 2"):
        F.conv2d(rng.standard_normal((1, 3, 2, 2)), w)
    with pytest.raises(ValueError, match=r"bias shape \(3,\).*expected \(4,\)"):
        F.conv2d(rng.standard_normal((1, 3, 5, 5)), w, rng.standard_normal(3))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(rng.standard_normal((1, 3, 5, 5)), w, stride=0)
    with pytest.raises(ValueError, match="padding must be an int or a pair"):
        F.conv2d(rng.standard_normal((1, 3, 5, 5)), w, padding=(1, 1, 1))
    with pytest.raises(ValueError, match="in_channels=0"):
        nn.Conv2d(0, 4, 3)


def test_conv2d_module_default_init_and_torch_state(torch, rng):
    """PyTorch's default init U(+-1/sqrt(fan_in)) for weight and bias; the weights load into
    torch.nn.Conv2d unchanged (same layout) and give the same output."""
    conv = nn.Conv2d(3, 8, (3, 2), stride=2, padding=1, rng=0, dtype=np.float64)
    bound = 1 / np.sqrt(3 * 3 * 2)
    assert conv.weight.shape == (8, 3, 3, 2) and conv.bias.shape == (8,)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert conv.weight.data.std() > bound / 3  # not a degenerate draw
    he = nn.Conv2d(3, 8, 3, init="he_normal", rng=0)
    np.testing.assert_array_equal(he.bias.data, 0)
    assert nn.Conv2d(3, 8, 3, bias=False).bias is None
    tconv = torch.nn.Conv2d(3, 8, (3, 2), stride=2, padding=1)
    tconv.load_state_dict({k: torch.tensor(v) for k, v in conv.state_dict().items()})
    x = rng.standard_normal((2, 3, 7, 7))
    np.testing.assert_allclose(conv(x).data, tconv(torch.tensor(x)).detach().numpy(), atol=1e-8)
    assert "kernel_size=(3, 2)" in repr(conv)


def test_scratch_buffers_do_not_leak_between_calls(torch, rng):
    """The padded input and backward scratch arrays are reused across calls: two convolutions
    whose padded inputs have the same shape but different padding must not see each other."""
    w = rng.standard_normal((2, 2, 3, 3))
    for shape, padding in [((2, 2, 5, 4), 1), ((2, 2, 3, 2), 2), ((2, 2, 5, 4), 1)]:
        x = rng.standard_normal(shape)
        X, W = nnparts.Tensor(x, requires_grad=True), nnparts.Tensor(w, requires_grad=True)
        y = F.conv2d(X, W, padding=padding)
        g = rng.standard_normal(y.shape)
        y.backward(g)
        ty, tx, tw, _ = _torch_conv(torch, x, w, None, 1, padding, g)
        np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-8)
        np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-8)
        np.testing.assert_allclose(W.grad, tw.grad.numpy(), atol=1e-8)


@pytest.mark.parametrize(
    "kernel, stride, padding, path",
    [
        (3, 1, 1, "transposed convolution"),  # dx as a convolution of dout with flipped weights
        (3, 2, 1, "col2im"),  # strided: dcol^T = W^T dout^T, then col2im
        (1, 1, 0, "pointwise"),  # 1x1: the GEMMs read the images themselves
        (2, 1, 2, "col2im"),  # padding > kernel - 1: no transposed form
    ],
)
@pytest.mark.parametrize("num_threads", [1, 3])
@pytest.mark.parametrize("input_layout", ["nchw", "channels_last"])
def test_conv2d_in_chunks_of_samples_matches_torch(
    torch, rng, monkeypatch, kernel, stride, padding, path, num_threads, layout, input_layout
):
    """The batch is walked a few samples at a time (chunks of ~CHUNK_BYTES of col^T), on each
    thread: with tiny chunks, 13 samples make chunks of 2 and 3 samples on every path of the
    backward, for either lowering and input layout, and the result still equals PyTorch."""
    from nnparts import threads
    from nnparts.functional import conv

    monkeypatch.setattr(conv, "CHUNK_BYTES", 3 * 4 * 9 * 36 * 8)  # 3 samples of 4ch 3x3 6x6
    threads.set_num_threads(num_threads)
    threads.set_min_work(0)
    try:
        x = rng.standard_normal((13, 4, 6, 6))
        w = rng.standard_normal((5, 4, kernel, kernel))
        b = rng.standard_normal(5)
        x_in = x
        if input_layout == "channels_last":
            x_in = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        X, Wt, B = (nnparts.Tensor(a, requires_grad=True) for a in (x_in, w, b))
        y = F.conv2d(X, Wt, B, stride=stride, padding=padding)
        g = rng.standard_normal(y.shape)
        y.backward(g)
    finally:
        threads.set_min_work(1 << 18)
        threads.set_num_threads(threads._default_threads())
    ty, tx, tw, tb = _torch_conv(torch, x, w, b, stride, padding, g)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(Wt.grad, tw.grad.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(B.grad, tb.grad.numpy(), atol=1e-10, rtol=0)


def test_chunks_of_a_range_are_as_few_and_as_even_as_the_chunk_size_allows(rng):
    """64 samples in chunks of at most 21 are 16+16+16+16, not 21+21+21+1 (a one-sample GEMM);
    the chunks cover the range once, in order. One-sample chunks (CHUNK_BYTES below one sample's
    col) give the same result as the default size."""
    from nnparts.functional import conv

    assert conv._walk(0, 64, 21) == [(0, 16), (16, 16), (32, 16), (48, 16)]
    assert conv._walk(5, 12, 3) == [(5, 2), (7, 2), (9, 3)]
    assert conv._walk(3, 4, 100) == [(3, 1)]
    assert conv._walk(0, 0, 4) == []  # an empty batch
    for s, e, n in [(0, 13, 3), (7, 100, 8), (0, 1, 1)]:
        parts = conv._walk(s, e, n)
        assert [i for a, m in parts for i in range(a, a + m)] == list(range(s, e))
        assert (
            max(m for _, m in parts) <= n
            and max(m for _, m in parts) - min(m for _, m in parts) <= 1
        )
    x = nnparts.Tensor(rng.standard_normal((5, 4, 7, 7)), requires_grad=True)
    w = nnparts.Tensor(rng.standard_normal((6, 4, 3, 3)), requires_grad=True)
    outs = []
    for size in (conv.CHUNK_BYTES, 1):
        old, conv.CHUNK_BYTES = conv.CHUNK_BYTES, size
        try:
            x.grad = w.grad = None
            y = F.conv2d(x, w, padding=1)
            y.backward(np.ones(y.shape))
            outs.append((y.data, x.grad, w.grad))
        finally:
            conv.CHUNK_BYTES = old
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_layout_rule_takes_channels_last_for_long_runs():
    """NHWC when its copied runs (``kw*C`` values) are at least an image row (``OW``): the later,
    many-channel layers; a 1- or 3-channel first layer stays NCHW."""
    from nnparts.functional import conv

    assert not conv._channels_last(1, 3, 28, 1)
    assert not conv._channels_last(3, 3, 32, 1)
    assert conv._channels_last(18, 3, 28, 1)
    assert conv._channels_last(96, 3, 3, 1)
    assert conv._channels_last(32, 3, 7, 2)


def test_channels_last_lowering_is_the_course_col_with_reordered_columns(rng):
    """Row ``(n, i, j)`` of the NHWC lowering holds the receptive field of output ``(i, j)``
    in ``(p, q, c)`` order: the NCHW ``col`` with its columns permuted, nothing else."""
    from nnparts.functional import conv

    x = rng.standard_normal((3, 4, 6, 5))
    nchw = conv._lowered(x, (3, 2), (2, 1), (1, 1), 3, 6, False, x.dtype).copy()  # scratch: copy
    nhwc = conv._lowered(x, (3, 2), (2, 1), (1, 1), 3, 6, True, x.dtype)  # the same scratch buffer
    reordered = nchw.reshape(4, 3, 2, -1).transpose(1, 2, 0, 3).reshape(24, -1)
    np.testing.assert_array_equal(nhwc, reordered)


def test_conv2d_saves_the_input_not_its_im2col(rng):
    """The graph keeps only the input for the backward (col^T is recomputed a chunk at a time),
    so a 3x3 convolution holds no array 9x the size of its input."""
    x = nnparts.Tensor(rng.standard_normal((8, 4, 10, 10)).astype(np.float32))
    w = nnparts.Tensor(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    saved = y._ctx[1].saved
    assert max(a.size for a in saved) == x.data.size
    assert any(a is x.data for a in saved)


def test_chunk_size_follows_the_l2_cache(tmp_path):
    """Chunks of col are four times the L2 cache, within 1-4 MiB; the size is read from sysfs
    (KiB or MiB), None where it cannot be."""
    from nnparts.functional import conv

    assert conv.CHUNK_BYTES == conv.chunk_bytes(conv._l2_bytes())
    assert 1 << 20 <= conv.CHUNK_BYTES <= 4 << 20
    assert conv.chunk_bytes(512 << 10) == 2 << 20  # AMD EPYC (Zen 3)
    assert conv.chunk_bytes(1 << 20) == 4 << 20
    assert conv.chunk_bytes(2 << 20) == 4 << 20  # Intel Xeon: capped
    assert conv.chunk_bytes(128 << 10) == 1 << 20  # small caches: at least 1 MiB
    assert conv.chunk_bytes(None) == 2 << 20  # unknown: as for 512 KiB
    for size, expected in [("2048K", 2 << 20), ("1M", 1 << 20), ("512K", 512 << 10)]:
        cache = tmp_path / size
        for index, level, value in [("index0", "1", "48K"), ("index2", "2", size)]:
            (cache / index).mkdir(parents=True)
            (cache / index / "level").write_text(level + "\n")
            (cache / index / "size").write_text(value + "\n")
        assert conv._l2_bytes(str(cache)) == expected
    assert conv._l2_bytes(str(tmp_path / "missing")) is None


def _inside_taps_brute(out_size, size, k, pad):
    """For each output position of a stride-1 convolution, the taps that read inside the input."""
    return [[p for p in range(k) if 0 <= i - pad + p < size] for i in range(out_size)]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 12), k=st.integers(1, 6), pad=st.integers(0, 5))
def test_tap_runs_are_the_taps_inside_the_input(size, k, pad):
    """``_tap_runs`` covers every output position once, in order, and gives each exactly the
    taps that read inside the input (a brute-force count), as one contiguous range."""
    from nnparts.functional import conv

    out_size = size + 2 * pad - k + 1
    if out_size < 1 or pad >= k:
        return
    runs = conv._tap_runs(out_size, size, k, pad)
    assert runs[0][0] == 0 and runs[-1][1] == out_size
    assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
    brute = _inside_taps_brute(out_size, size, k, pad)
    for o0, o1, t0, t1 in runs:
        assert t0 < t1  # padding < kernel: every output reads at least one tap
        for i in range(o0, o1):
            assert brute[i] == list(range(t0, t1))
    assert conv._tap_runs(6, 6, 3, 1) == [(0, 1, 1, 3), (1, 5, 0, 3), (5, 6, 0, 2)]


def test_tap_regions_tile_the_output_and_skip_exactly_the_padding():
    """A 3x3 kernel with padding 1 cuts a map into nine rectangles (interior, edges, corners)
    that tile the output once; their products are the padded im2col's minus those on zeros:
    18% fewer at 7x7, 21% at 6x6, 40% at 3x3 (``_padding_waste``, checked by brute force)."""
    from nnparts.functional import conv

    for H, W, kernel, padding in [(7, 7, (3, 3), (1, 1)), (6, 5, (3, 3), (1, 1)),
                                  (3, 3, (3, 3), (1, 1)), (5, 8, (5, 3), (2, 1)),
                                  (4, 6, (3, 3), (0, 1))]:  # fmt: skip
        (kh, kw), (ph, pw) = kernel, padding
        OH, OW = H + 2 * ph - kh + 1, W + 2 * pw - kw + 1
        regions = conv._tap_regions(H, W, kernel, padding)
        cover = np.zeros((OH, OW), dtype=int)
        products = 0
        for i0, i1, j0, j1, p0, p1, q0, q1 in regions:
            cover[i0:i1, j0:j1] += 1
            products += (i1 - i0) * (j1 - j0) * (p1 - p0) * (q1 - q0)
        np.testing.assert_array_equal(cover, 1)
        rows = _inside_taps_brute(OH, H, kh, ph)
        cols = _inside_taps_brute(OW, W, kw, pw)
        inside = sum(len(r) * len(c) for r in rows for c in cols)
        assert products == inside
        assert conv._padding_waste(H, W, kernel, padding) == pytest.approx(
            1 - inside / (OH * OW * kh * kw)
        )
    assert len(conv._tap_regions(7, 7, (3, 3), (1, 1))) == 9
    for size, waste in [(7, 0.181), (6, 0.210), (3, 0.395), (14, 0.093)]:
        assert conv._padding_waste(size, size, (3, 3), (1, 1)) == pytest.approx(waste, abs=1e-3)


def test_skip_padding_rule(monkeypatch):
    """Rectangles for stride-1 channels-last convolutions with at least PADDING_WASTE of zeros
    (3x3 with padding 1: 7x7 maps and smaller), or PADDING_WASTE_WIDE with 64 channels or more
    (14x14 too, not 28x28); never for a strided or NCHW-lowered one, none without padding, nor
    where padding >= kernel (outputs reading no tap)."""
    from nnparts.functional import conv

    k3, p1, s1 = (3, 3), (1, 1), (1, 1)
    assert conv._skips_padding(7, 7, 32, k3, s1, p1, True)
    assert conv._skips_padding(3, 3, 8, k3, s1, p1, True)
    assert not conv._skips_padding(14, 14, 32, k3, s1, p1, True)
    assert conv._skips_padding(14, 14, 64, k3, s1, p1, True)
    assert not conv._skips_padding(28, 28, 128, k3, s1, p1, True)
    assert not conv._skips_padding(7, 7, 64, k3, (2, 2), p1, True)
    assert not conv._skips_padding(7, 7, 64, k3, s1, p1, False)
    assert not conv._skips_padding(7, 7, 64, k3, s1, (0, 0), True)
    assert not conv._skips_padding(3, 3, 64, (1, 1), s1, p1, True)
    monkeypatch.setattr(conv, "SKIP_PADDING", "always")
    assert conv._skips_padding(28, 28, 1, k3, s1, p1, True)
    assert not conv._skips_padding(7, 7, 64, k3, (2, 2), p1, True)
    monkeypatch.setattr(conv, "SKIP_PADDING", "never")
    assert not conv._skips_padding(3, 3, 64, k3, s1, p1, True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_skipping_the_padding_gives_the_padded_im2col_result(rng, monkeypatch, dtype):
    """A network-sized layer (channels-last input, 3x3, padding 1, 6x6 maps, chunks of a few
    samples on two threads): forward, input and weight gradients on the rectangles equal the
    padded im2col's to rounding, and the auto rule picks the rectangles here."""
    from nnparts import threads
    from nnparts.functional import conv

    assert conv._skips_padding(6, 6, 16, (3, 3), (1, 1), (1, 1), True)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 5 * 9 * 16 * 36 * 4)
    x = (
        np.ascontiguousarray(rng.standard_normal((23, 6, 6, 16)))
        .astype(dtype)
        .transpose(0, 3, 1, 2)
    )
    w = (rng.standard_normal((24, 16, 3, 3)) * 0.1).astype(dtype)
    b = rng.standard_normal(24).astype(dtype)
    g = rng.standard_normal((23, 24, 6, 6)).astype(dtype)
    results = {}
    threads.set_min_work(0)
    try:
        for mode in ("always", "never"):
            monkeypatch.setattr(conv, "SKIP_PADDING", mode)
            X, Wt, B = (nnparts.Tensor(a, requires_grad=True) for a in (x, w, b))
            y = F.conv2d(X, Wt, B, padding=1)
            y.backward(g)
            results[mode] = (y.data, X.grad, Wt.grad, B.grad)
    finally:
        threads.set_min_work(1 << 18)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for a, c in zip(results["always"], results["never"]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, c, rtol=tol, atol=tol)
