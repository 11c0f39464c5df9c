"""Residual, PreActBlock, DenseLayer/DenseBlock, Transition."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts
from nnparts import nn


def _float64(module):
    """Cast a module's parameters and floating buffers to float64 (for 1e-8 comparisons)."""
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    for m in module.modules():
        for k, v in list(m._buffers.items()):
            if v is not None and v.dtype.kind == "f":
                m._buffers[k] = v.astype(np.float64)
    return module


def _torch_params(torch, module):
    return {k: torch.tensor(p.data, requires_grad=True) for k, p in module.named_parameters()}


def _compare(torch, module, torch_forward, x, rng):
    """Forward and backward (input and every parameter) of module vs a torch re-implementation."""
    X = nnparts.Tensor(x, requires_grad=True)
    y = module(X)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    tp = _torch_params(torch, module)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_forward(tx, tp)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-8, rtol=0)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad, tp[name].grad.numpy(), atol=1e-8, rtol=0, err_msg=name)
    return y


def _t_bn_relu(torch, x, tp, prefix):
    f = torch.nn.functional
    return f.relu(f.batch_norm(x, None, None, tp[f"{prefix}.weight"], tp[f"{prefix}.bias"],
                               training=True, eps=1e-5))  # fmt: skip


def test_residual_gradient_is_block_gradient_plus_identity(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    conv = nn.Conv2d(3, 3, 3, padding=1, rng=0, dtype=np.float64)
    g = rng.standard_normal((2, 3, 5, 5))
    X1 = nnparts.Tensor(x, requires_grad=True)
    conv(X1).backward(g)
    block_grad = X1.grad.copy()
    conv.zero_grad()
    X2 = nnparts.Tensor(x, requires_grad=True)
    y = nn.Residual(conv)(X2)
    np.testing.assert_allclose(y.data, conv(x).data + x)
    y.backward(g)
    np.testing.assert_allclose(X2.grad, block_grad + g, atol=1e-12)
    assert nnparts.gradcheck(lambda t: nn.Residual(conv)(t), [X2])


def test_residual_with_projection_shortcut_matches_torch(torch, rng):
    block = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, rng=0), nn.ReLU())
    res = _float64(nn.Residual(block, nn.Conv2d(2, 4, 1, stride=2, rng=1)))
    f = torch.nn.functional

    def ref(x, tp):
        main = f.relu(f.conv2d(x, tp["block.0.weight"], tp["block.0.bias"], stride=2, padding=1))
        return main + f.conv2d(x, tp["shortcut.weight"], tp["shortcut.bias"], stride=2)

    y = _compare(torch, res, ref, rng.standard_normal((2, 2, 7, 7)), rng)
    assert y.shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match=r"block output shape \(2, 4, 4, 4\).*\(2, 2, 7, 7\)"):
        nn.Residual(block)(rng.standard_normal((2, 2, 7, 7)))
    zero = nn.Conv2d(2, 2, 3, padding=1, init="zeros", rng=0)  # F(x) = 0: the identity map
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(nn.Residual(zero)(x).data, x)


@pytest.mark.parametrize("in_c, out_c, stride", [(4, 4, 1), (3, 6, 2)])
def test_preact_block_matches_torch(torch, rng, in_c, out_c, stride):
    block = _float64(nn.PreActBlock(in_c, out_c, stride, rng=0))
    assert (block.shortcut is None) == (in_c == out_c and stride == 1)
    f = torch.nn.functional

    def ref(x, tp):
        pre = _t_bn_relu(torch, x, tp, "bn1")
        skip = (
            x
            if "shortcut.weight" not in tp
            else f.conv2d(pre, tp["shortcut.weight"], stride=stride)
        )
        out = f.conv2d(pre, tp["conv1.weight"], stride=stride, padding=1)
        out = f.conv2d(_t_bn_relu(torch, out, tp, "bn2"), tp["conv2.weight"], padding=1)
        return out + skip

    y = _compare(torch, block, ref, rng.standard_normal((3, in_c, 6, 6)), rng)
    assert y.shape == (3, out_c, 6 // stride, 6 // stride)


def test_preact_block_gradcheck(rng):
    block = _float64(nn.PreActBlock(2, 3, 2, rng=0))
    x = nnparts.Tensor(rng.standard_normal((2, 2, 4, 4)), requires_grad=True)
    assert nnparts.gradcheck(block, [x], atol=1e-5)


@pytest.mark.parametrize("bottleneck", [False, True])
def test_dense_block_matches_torch_and_grows_by_k(torch, rng, bottleneck):
    L, c_in, k = 3, 4, 2
    block = _float64(nn.DenseBlock(L, c_in, k, bottleneck=bottleneck, bn_size=2, rng=0))
    assert block.out_channels == c_in + L * k
    f = torch.nn.functional

    def ref(x, tp):
        feats = [x]
        for i in range(1, L + 1):
            h = torch.cat(feats, 1)
            if bottleneck:
                h = f.conv2d(
                    _t_bn_relu(torch, h, tp, f"layer{i}.bn0"), tp[f"layer{i}.conv0.weight"]
                )
            h = _t_bn_relu(torch, h, tp, f"layer{i}.bn")
            feats.append(f.conv2d(h, tp[f"layer{i}.conv.weight"], padding=1))
        return torch.cat(feats, 1)

    x = rng.standard_normal((2, c_in, 5, 5))
    y = _compare(torch, block, ref, x, rng)
    assert y.shape == (2, c_in + L * k, 5, 5)
    np.testing.assert_array_equal(y.data[:, :c_in], x)  # earlier maps are passed on unchanged


def test_dense_block_gradcheck_and_channel_count():
    rng = np.random.default_rng(0)
    block = _float64(nn.DenseBlock(2, 2, 3, bottleneck=True, bn_size=1, rng=0))
    x = nnparts.Tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    assert nnparts.gradcheck(block, [x], atol=1e-5)
    for L, c, k in [(1, 1, 1), (4, 16, 12), (6, 24, 32)]:
        assert nn.DenseBlock(L, c, k, rng=0).out_channels == c + L * k
        assert (
            nn.DenseBlock(L, c, k, rng=0)(np.zeros((1, c, 4, 4), np.float32)).shape[1] == c + L * k
        )


def test_dense_layer_dropout_is_active_only_in_training():
    layer = nn.DenseLayer(3, 4, drop_rate=0.5, rng=0)
    x = np.random.default_rng(1).standard_normal((4, 3, 6, 6)).astype(np.float32)
    train_out = layer(x).data
    assert (train_out == 0).mean() > 0.3
    layer.eval()
    eval_out = layer(x).data
    assert (eval_out == 0).mean() < 0.01  # nothing dropped
    np.testing.assert_array_equal(layer(x).data, eval_out)  # deterministic in eval


def test_transition_halves_spatial_size_and_matches_torch(torch, rng):
    t = _float64(nn.Transition(6, 3, rng=0))
    f = torch.nn.functional

    def ref(x, tp):
        return f.avg_pool2d(f.conv2d(_t_bn_relu(torch, x, tp, "bn"), tp["conv.weight"]), 2)

    y = _compare(torch, t, ref, rng.standard_normal((2, 6, 8, 8)), rng)
    assert y.shape == (2, 3, 4, 4)
    assert nn.Transition(6, 3)(np.zeros((1, 6, 7, 7), np.float32)).shape == (1, 3, 3, 3)
    assert nn.Transition.compressed(25, 0.5).out_channels == 12  # floor(theta * in)


def test_blocks_bad_arguments():
    with pytest.raises(ValueError, match="growth_rate, got 0"):
        nn.DenseBlock(2, 4, 0)
    with pytest.raises(ValueError, match="drop_rate must be in"):
        nn.DenseLayer(4, 2, drop_rate=1.0)
    with pytest.raises(ValueError, match="theta must be in"):
        nn.Transition.compressed(8, 1.5)
    with pytest.raises(ValueError, match="stride, got -1"):
        nn.PreActBlock(2, 2, -1)
    with pytest.raises(TypeError, match="must be a Module"):
        nn.Residual(lambda x: x)
