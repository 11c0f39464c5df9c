"""conv2d options against PyTorch: dilation, groups (depthwise), padding='same'/'valid',
unbatched (C, H, W) inputs; finite differences, module versions, behaviour, messages."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts
import nnparts.functional as F
from nnparts import gradcheck, nn
from nnparts.functional.conv import Conv2d as FastConv2d
from nnparts.functional.conv import Conv2dGeneral

# PyTorch's own OpInfo samples for conv2d (common_methods_invocations.sample_inputs_conv2d):
# input, weight, bias shapes and (stride, padding, groups, dilation); each batched and unbatched
OPINFO_CASES = [
    ((1, 3, 4, 4), (3, 3, 3, 3), (3,), dict(stride=(2, 2), padding=2, groups=1)),
    (
        (2, 4, 8, 8),
        (2, 2, 3, 3),
        (2,),
        dict(stride=(3, 2), padding=(2, 1), groups=2, dilation=(4, 4)),
    ),
    ((1, 4, 5, 5), (1, 4, 2, 3), (1,), dict(stride=2, padding=1, groups=1, dilation=(2, 3))),
    ((1, 2, 4, 3), (4, 2, 3, 4), None, dict(stride=2, padding=1, groups=1)),
    ((1, 4, 5, 5), (1, 4, 2, 3), (1,), dict(stride=2, padding="valid")),
    ((1, 4, 5, 5), (1, 4, 2, 3), (1,), dict(stride=1, padding="same", dilation=3)),
    ((2, 4, 6, 6), (4, 1, 3, 3), (4,), dict(groups=4)),
    ((2, 4, 6, 6), (8, 1, 3, 3), (8,), dict(groups=4)),
    ((2, 4, 6, 6), (8, 1, 3, 3), None, dict(groups=4)),
    ((2, 4, 6, 6), (4, 1, 3, 3), (4,), dict(groups=4, stride=(3, 2))),
    ((2, 4, 6, 6), (4, 1, 3, 3), (4,), dict(groups=4, padding=(1, 1))),
    ((2, 4, 5, 5), (4, 1, 2, 2), (4,), dict(groups=4, dilation=(2, 2))),
    ((2, 4, 6, 5), (6, 2, 3, 2), (6,), dict(groups=2)),
    ((1, 4, 5, 5), (3, 4, 3, 3), None, dict()),
    # and more of "same": even kernels (the extra zero goes bottom/right), dilation, groups
    ((2, 3, 7, 6), (4, 3, 4, 2), (4,), dict(padding="same")),
    ((2, 4, 7, 6), (4, 2, 2, 3), None, dict(padding="same", groups=2, dilation=(3, 2))),
]


def _both(torch, x, w, b, kwargs, rng):
    X = nnparts.Tensor(x, requires_grad=True)
    Wt = nnparts.Tensor(w, requires_grad=True)
    B = None if b is None else nnparts.Tensor(b, requires_grad=True)
    y = F.conv2d(X, Wt, B, **kwargs)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-12, rtol=0)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-12, rtol=0)
    np.testing.assert_allclose(Wt.grad, tw.grad.numpy(), atol=1e-12, rtol=0)
    if b is not None:
        np.testing.assert_allclose(B.grad, tb.grad.numpy(), atol=1e-12, rtol=0)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("case", OPINFO_CASES, ids=str)
def test_conv2d_options_equal_torch(torch, rng, case, unbatched):
    x_shape, w_shape, b_shape, kwargs = case
    if unbatched:
        x_shape = x_shape[1:]
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = None if b_shape is None else rng.standard_normal(b_shape)
    _both(torch, x, w, b, kwargs, rng)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dilation=2, padding=1),
        dict(groups=2, stride=2),
        dict(groups=4),
        dict(padding="same", dilation=(1, 2)),
        dict(padding="same"),
    ],
    ids=str,
)
def test_conv2d_options_gradcheck(rng, kwargs):
    c_out = 4
    w = rng.standard_normal((c_out, 4 // kwargs.get("groups", 1), 2, 3))
    x = rng.standard_normal((2, 4, 6, 5))
    b = rng.standard_normal(c_out)
    assert gradcheck(
        lambda a, k, c: F.conv2d(a, k, c, **kwargs),
        [
            nnparts.Tensor(x, requires_grad=True),
            nnparts.Tensor(w, requires_grad=True),
            nnparts.Tensor(b, requires_grad=True),
        ],
    )
    assert gradcheck(
        lambda a: F.conv2d(a, w, b, **kwargs), [nnparts.Tensor(x[0], requires_grad=True)]
    )


def test_default_options_take_the_tuned_path(rng):
    x = nnparts.Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32), requires_grad=True)
    w = nnparts.Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    assert F.conv2d(x, w, padding=1)._ctx[0] is FastConv2d
    assert F.conv2d(x, w, padding=1, dilation=(1, 1), groups=1)._ctx[0] is FastConv2d
    assert F.conv2d(x, w, padding="same")._ctx[0] is FastConv2d  # odd kernel: plain padding 1
    assert F.conv2d(x, w, dilation=2)._ctx[0] is Conv2dGeneral
    y = F.conv2d(x, w, dilation=2, padding="same")
    assert y.dtype == np.float32 and y.shape == (2, 4, 6, 6)


def test_dilation_equals_a_kernel_with_zeros_between_its_taps(rng):
    x = rng.standard_normal((1, 2, 9, 9))
    w = rng.standard_normal((3, 2, 3, 3))
    stuffed = np.zeros((3, 2, 5, 5))
    stuffed[:, :, ::2, ::2] = w
    np.testing.assert_allclose(
        F.conv2d(x, w, dilation=2).data, F.conv2d(x, stuffed).data, atol=1e-12
    )


def test_groups_are_independent_convolutions_and_depthwise_mixes_no_channels(rng):
    x = rng.standard_normal((2, 6, 5, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    grouped = F.conv2d(x, w, groups=2).data
    first = F.conv2d(x[:, :3], w[:2]).data
    second = F.conv2d(x[:, 3:], w[2:]).data
    np.testing.assert_allclose(grouped, np.concatenate([first, second], axis=1), atol=1e-12)
    # depthwise: output channel c reads input channel c only
    X = nnparts.Tensor(x, requires_grad=True)
    dw = F.conv2d(X, rng.standard_normal((6, 1, 3, 3)), padding=1, groups=6)
    dw[:, 2].sum().backward()
    touched = np.abs(X.grad).sum(axis=(0, 2, 3)) > 0
    assert touched.tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, (2, 5)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_padding_keeps_the_size(rng, kernel, dilation):
    x = rng.standard_normal((1, 2, 7, 8))
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    y = F.conv2d(x, rng.standard_normal((3, 2, *k)), padding="same", dilation=dilation)
    assert y.shape == (1, 3, 7, 8)
    assert F.conv2d(x, rng.standard_normal((3, 2, *k)), padding="valid").shape[2:] == (
        8 - k[0],
        9 - k[1],
    )


def test_unbatched_input_is_the_batched_result_without_its_batch_axis(rng):
    x = rng.standard_normal((3, 6, 6))
    w = rng.standard_normal((2, 3, 3, 3))
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (2, 6, 6)
    np.testing.assert_array_equal(y.data, F.conv2d(x[None], w, padding=1).data[0])


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dilation=2, padding=2),
        dict(groups=2),
        dict(groups=4, padding="same"),
        dict(padding="same", kernel_size=4),
        dict(padding="valid", stride=2),
    ],
    ids=str,
)
def test_conv2d_module_options_equal_torch(torch, rng, kwargs):
    kwargs = dict(kwargs)
    k = kwargs.pop("kernel_size", 3)
    ours = nn.Conv2d(4, 8, k, rng=rng, dtype=np.float64, **kwargs)
    ref = torch.nn.Conv2d(4, 8, k, **kwargs)
    assert ours.weight.shape == tuple(ref.weight.shape)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(ours.weight.data))
        ref.bias.copy_(torch.tensor(ours.bias.data))
    for shape in ((2, 4, 9, 8), (4, 9, 8)):
        x = rng.standard_normal(shape)
        np.testing.assert_allclose(
            ours(nnparts.Tensor(x)).data, ref(torch.tensor(x)).detach().numpy(), atol=1e-12
        )
    # PyTorch's default init bound: U(+-1/sqrt(fan_in)), fan_in = in/groups * kh * kw
    fan_in = 4 // kwargs.get("groups", 1) * k * k
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(ours.weight.data).max() <= bound and np.abs(ours.weight.data).max() > bound / 2
    assert "groups" in repr(ours) or kwargs.get("groups", 1) == 1


def test_image_shapes_that_do_not_fit_say_how_to_fix_them(rng):
    layer = nn.Conv2d(1, 8, 3)
    with pytest.raises(
        ValueError, match=r"batch of 64 single-channel 28x28.*x\.reshape\(64, 1, 28, 28\)"
    ):
        layer(nnparts.Tensor(np.zeros((64, 28, 28), dtype=np.float32)))
    with pytest.raises(
        ValueError, match=r"channels-last \(N, H, W, C\).*x\.transpose\(0, 3, 1, 2\)"
    ):
        layer(nnparts.Tensor(np.zeros((4, 28, 28, 1), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\(64, 784\).*x\.reshape\(64, 1, 28, 28\)"):
        layer(nnparts.Tensor(np.zeros((64, 784), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"channels-last \(H, W, C\).*x\.transpose\(2, 0, 1\)"):
        nn.Conv2d(3, 8, 3)(nnparts.Tensor(np.zeros((28, 28, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"groups=3 must divide.*\(4\)"):
        F.conv2d(np.zeros((1, 4, 5, 5)), np.zeros((6, 1, 3, 3)), groups=3)
    with pytest.raises(ValueError, match=r"groups=2 expects 4.*\(out, in/groups"):
        F.conv2d(np.zeros((1, 6, 5, 5)), np.zeros((4, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        F.conv2d(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), padding="same", stride=2)
    with pytest.raises(ValueError, match=r"padding must be an int, a pair, 'same' or 'valid'"):
        F.conv2d(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), padding="full")
    with pytest.raises(ValueError, match=r"dilation \(3, 3\) spans \(7, 7\).*\(5, 5\)"):
        F.conv2d(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), dilation=3)
    with pytest.raises(
        ValueError, match=r"groups=3 must be an int >= 1 that divides in_channels=4"
    ):
        nn.Conv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1"):
        nn.Conv2d(4, 6, 3, padding="same", stride=2)
