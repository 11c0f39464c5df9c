"""PatchWhitening: input gradient by finite differences, PyTorch's conv2d on the same filters,
whitened output covariance, the PCA/ZCA algebra, buffers (not parameters) in the state_dict."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts
from nnparts import Tensor, nn


def correlated_images(rng, n=64, channels=3, size=8):
    """Images whose channels and neighbouring pixels are strongly correlated (smoothed noise
    mixed across channels, plus an offset), so whitening has real work to do."""
    noise = rng.standard_normal((n, channels, size + 1, size + 1))
    smooth = (noise[:, :, 1:, 1:] + noise[:, :, :-1, 1:] + noise[:, :, 1:, :-1]) / 3
    mix = rng.standard_normal((channels, channels)) + 2 * np.eye(channels)
    return np.einsum("dc,nchw->ndhw", mix, smooth) + 0.5


def test_input_gradient_matches_finite_differences(rng):
    layer = nn.PatchWhitening(2, kernel_size=2, stride=(1, 2), padding=1, dtype=np.float64)
    layer.fit(rng.standard_normal((4, 2, 6, 6)))
    x = Tensor(rng.standard_normal((2, 2, 5, 4)), requires_grad=True)
    assert nnparts.gradcheck(layer, [x])
    assert layer.parameters() == []  # the filters are frozen


@pytest.mark.parametrize("negate, kernel, stride, padding", [(True, 2, 1, 0), (False, 3, 2, 1)])
def test_output_equals_torch_conv2d(torch, rng, negate, kernel, stride, padding):
    x = correlated_images(rng, n=8)
    layer = nn.PatchWhitening.from_data(
        x, kernel_size=kernel, negate=negate, stride=stride, padding=padding, dtype=np.float64
    )
    d = 3 * kernel * kernel
    assert layer.out_channels == (2 * d if negate else d)
    assert layer.weight.shape == (layer.out_channels, 3, kernel, kernel)
    ours = layer(Tensor(x)).data
    ref = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(layer.weight), stride=stride, padding=padding
    )
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-10, atol=1e-10)


def test_float32_by_default(rng):
    layer = nn.PatchWhitening.from_data(correlated_images(rng, n=4).astype(np.float32))
    assert layer.weight.dtype == np.float32
    assert layer(Tensor(np.zeros((1, 3, 4, 4), np.float32))).dtype == np.float32


@pytest.mark.parametrize("center", [True, False])
def test_output_channels_are_whitened(rng, center):
    """Over every position of the fitting images, the first d output channels have covariance
    (center=True) or second moment (center=False) diag(lambda / (lambda + eps)) ~ I."""
    x = correlated_images(rng)
    raw = np.cov(x.transpose(1, 0, 2, 3).reshape(3, -1))
    assert np.abs(raw - np.diag(np.diag(raw))).max() > 0.5  # the input really is correlated
    eps = 1e-9
    layer = nn.PatchWhitening.from_data(x, kernel_size=2, eps=eps, center=center, dtype=np.float64)
    out = layer(Tensor(x)).data
    d = layer.patch_size
    np.testing.assert_allclose(out[:, d:], -out[:, :d])  # negate=True: the mirrored half
    flat = out[:, :d].transpose(1, 0, 2, 3).reshape(d, -1)
    moment = np.cov(flat) if center else flat @ flat.T / flat.shape[1]
    lam = layer.eigenvalues
    np.testing.assert_allclose(moment, np.diag(lam / (lam + eps)), atol=1e-6)
    np.testing.assert_allclose(moment, np.eye(d), atol=1e-4)
    assert np.all(np.diff(lam) <= 0)  # principal directions first


def test_pca_and_zca_algebra(rng):
    """W = diag(1/sqrt(lambda+eps)) U^T: W^T W = (Sigma + eps I)^-1, the rows are orthogonal,
    and the ZCA matrix U W is symmetric positive definite (the whitening closest to identity)."""
    x = correlated_images(rng, n=32)
    eps = 5e-4
    layer = nn.PatchWhitening.from_data(x, kernel_size=2, eps=eps, negate=False, dtype=np.float64)
    d = layer.patch_size
    w = layer.weight.reshape(d, d)
    patches = layer._patch_matrix(x)
    sigma = np.cov(patches, rowvar=False)
    np.testing.assert_allclose(w.T @ w, np.linalg.inv(sigma + eps * np.eye(d)), rtol=1e-8)
    gram = w @ w.T
    np.testing.assert_allclose(gram, np.diag(np.diag(gram)), atol=1e-8)
    u = w.T * np.sqrt(layer.eigenvalues + eps)  # the eigenvectors, as columns
    zca = u @ w
    np.testing.assert_allclose(zca, zca.T, atol=1e-8)
    assert np.linalg.eigvalsh(zca).min() > 0


def test_forward_before_fit_raises():
    layer = nn.PatchWhitening(3)
    with pytest.raises(RuntimeError, match=r"call fit\(x\)"):
        layer(Tensor(np.zeros((1, 3, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        layer.fit(np.zeros((2, 4, 5, 5)))


def test_state_dict_round_trip_restores_filters(rng):
    x = correlated_images(rng, n=8).astype(np.float32)
    fitted = nn.PatchWhitening.from_data(x, kernel_size=2)
    model = nn.Sequential(fitted, nn.ReLU())
    state = model.state_dict()
    assert {"0.weight", "0.eigenvalues", "0.fitted"} <= set(state)
    assert model.parameters() == []
    fresh = nn.Sequential(nn.PatchWhitening(3, kernel_size=2), nn.ReLU())
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh[0].weight, fitted.weight)
    np.testing.assert_array_equal(fresh(Tensor(x)).data, model(Tensor(x)).data)
