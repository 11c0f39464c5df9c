"""Preprocessing: statistics from the training split only, whitening, PCA, state dicts."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from nnparts import data
from nnparts.data import (
    PCA,
    MinMaxScale,
    PCAWhitening,
    Standardize,
    ZCAWhitening,
    ZeroCenter,
    preprocessor_from_state,
)


@pytest.fixture
def images(rng):
    """Correlated 'images' (N, C, H, W) with different channel means and scales."""
    base = rng.standard_normal((300, 3, 4, 4))
    x = base + 0.5 * np.roll(base, 1, axis=-1)
    return x * np.array([1.0, 3.0, 0.5])[:, None, None] + np.array([2.0, -1.0, 5.0])[:, None, None]


def _cov(z):
    z = z.reshape(len(z), -1)
    zc = z - z.mean(0)
    return zc.T @ zc / len(z)


def test_to_float():
    x = np.array([0, 51, 255], dtype=np.uint8)
    out = data.to_float(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0], rtol=1e-7)
    assert data.to_float(x, np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="uint8 .* got dtype float32"):
        data.to_float(out)


@pytest.mark.parametrize(
    "mode, axes", [("feature", (0,)), ("channel", (0, 2, 3)), ("global", (0, 1, 2, 3))]
)
def test_zero_center_modes(images, mode, axes):
    out = ZeroCenter(mode).fit_transform(images)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-5)
    assert out.dtype == np.float64
    assert ZeroCenter(mode).fit_transform(images.astype(np.float32)).dtype == np.float32


def test_standardize_matches_sklearn(images):
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    flat = images.reshape(len(images), -1)
    ref = preprocessing.StandardScaler().fit(flat[:200])
    ours = Standardize(eps=0.0).fit(images[:200])
    np.testing.assert_allclose(
        ours.transform(images[200:]).reshape(100, -1), ref.transform(flat[200:]), atol=1e-10
    )
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(images)), images, atol=1e-10)


def test_standardize_per_channel(images):
    out = Standardize("channel").fit_transform(images)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-6)
    assert Standardize("channel").fit(images).mean.shape == (1, 3, 1, 1)


def test_min_max_matches_sklearn(images):
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    flat = images.reshape(len(images), -1)
    ref = preprocessing.MinMaxScaler((-1, 1)).fit(flat[:200])
    ours = MinMaxScale(feature_range=(-1, 1)).fit(images[:200])
    np.testing.assert_allclose(
        ours.transform(images[200:]).reshape(100, -1), ref.transform(flat[200:]), atol=1e-10
    )
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(images)), images, atol=1e-10)


def test_statistics_come_from_the_training_split_only(images):
    train, val = images[:200], images[200:] + 10.0  # a shifted validation split
    flat_mean = train.reshape(200, -1).mean(0)
    for pre in (ZeroCenter(), Standardize(), MinMaxScale(), PCA(5), ZCAWhitening()):
        pre.fit(train)
        fitted = {k: np.copy(v) for k, v in pre.state_dict().items() if isinstance(v, np.ndarray)}
        out_val = pre.transform(val)
        for k, v in pre.state_dict().items():  # transforming another split changes nothing
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(v, fitted[k])
        if isinstance(pre, MinMaxScale):
            np.testing.assert_array_equal(pre.min.reshape(-1), train.reshape(200, -1).min(0))
        else:
            np.testing.assert_allclose(pre.mean.reshape(-1), flat_mean, atol=1e-12)
        # the validation split keeps its shift: it is not re-centred on its own statistics
        assert abs(float(np.mean(out_val)) - float(np.mean(pre.transform(train)))) > 1.0


def test_zero_center_applies_train_mean_to_val(images):
    train, val = images[:200], images[200:]
    out = ZeroCenter().fit(train).transform(val)
    np.testing.assert_allclose(out, val - train.mean(axis=0, keepdims=True), atol=1e-12)


def test_pca_reconstruction_error_equals_discarded_variance(images):
    x = images.reshape(len(images), -1)
    pca = PCA(n_components=10).fit(x)
    recon = pca.inverse_transform(pca.transform(x))
    error = np.mean(np.sum((x - recon) ** 2, axis=1))
    np.testing.assert_allclose(error, pca.all_variances[10:].sum(), rtol=1e-10)
    # and the kept variance: the variance of the codes are the top eigenvalues
    np.testing.assert_allclose(pca.transform(x).var(axis=0), pca.explained_variance, rtol=1e-10)


def test_pca_matches_sklearn(images):
    decomposition = pytest.importorskip("sklearn.decomposition")
    x = images.reshape(len(images), -1)
    ref = decomposition.PCA(n_components=6, svd_solver="full").fit(x)
    ours = PCA(6).fit(x)
    signs = np.sign(np.sum(ours.components * ref.components_.T, axis=0))
    np.testing.assert_allclose(ours.components * signs, ref.components_.T, atol=1e-8)
    n = len(x)  # sklearn divides by N - 1, the course's covariance by N
    np.testing.assert_allclose(ours.explained_variance, ref.explained_variance_ * (n - 1) / n)
    np.testing.assert_allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_)


def test_pca_variance_kept(images):
    pca = PCA(n_components=0.9).fit(images)
    k = pca.components.shape[1]
    ratio = np.cumsum(pca.all_variances) / pca.all_variances.sum()
    assert ratio[k - 1] >= 0.9 > ratio[k - 2]
    assert pca.transform(images).shape == (300, k)


@pytest.mark.parametrize("cls", [PCAWhitening, ZCAWhitening])
def test_whitening_covariance_is_identity(images, cls):
    pre = cls(eps=1e-8).fit(images)
    out = pre.transform(images)
    cov = _cov(out)
    assert np.abs(cov - np.eye(cov.shape[0])).max() < 1e-3
    assert np.abs(_cov(images) - np.eye(cov.shape[0])).max() > 0.5  # it was far from it


def test_zca_keeps_shape_and_is_closest_to_the_input(images):
    zca = ZCAWhitening(eps=1e-8).fit(images)
    pcaw = PCAWhitening(eps=1e-8).fit(images)
    out = zca.transform(images)
    assert out.shape == images.shape
    np.testing.assert_allclose(zca.matrix, zca.matrix.T, atol=1e-10)  # symmetric
    np.testing.assert_allclose(zca.inverse_transform(out), images, atol=1e-8)
    centred = (images - images.mean(0)).reshape(300, -1)
    assert np.sum((out.reshape(300, -1) - centred) ** 2) < np.sum(
        (pcaw.transform(images) - centred) ** 2
    )


def test_whitening_output_float32_for_uint8(rng):
    x = rng.integers(0, 256, (200, 1, 3, 3), dtype=np.uint8)
    assert ZCAWhitening().fit_transform(x).dtype == np.float32
    assert PCA(2).fit_transform(x).dtype == np.float32


@pytest.mark.parametrize(
    "make",
    [
        lambda: ZeroCenter("channel"),
        lambda: Standardize("global"),
        lambda: MinMaxScale(feature_range=(-1, 1)),
        lambda: PCA(0.95),
        lambda: PCAWhitening(4),
        lambda: ZCAWhitening(eps=1e-3),
    ],
)
def test_state_dict_saves_without_pickle(images, make):
    pre = make().fit(images[:200])
    state = pre.state_dict()
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    config = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    loaded.update(json.loads(json.dumps(config)))
    restored = preprocessor_from_state(loaded)
    assert type(restored) is type(pre)
    np.testing.assert_array_equal(restored.transform(images[200:]), pre.transform(images[200:]))


def test_errors(images):
    with pytest.raises(ValueError, match="not fitted: call fit"):
        Standardize().transform(images)
    with pytest.raises(ValueError, match="mode must be one of"):
        ZeroCenter("pixel")
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(3, 4, 4\)"):
        ZeroCenter().fit(images).transform(images[:, :2])
    with pytest.raises(ValueError, match="fitted on 3 channels"):
        ZeroCenter("channel").fit(images).transform(images[:, :2])
    with pytest.raises(ValueError, match="n_components=100 is more than the 48 features"):
        PCA(100).fit(images)
    with pytest.raises(ValueError, match=r"variance kept and must be in \(0, 1\), got 1.5"):
        PCA(1.5)
    with pytest.raises(ValueError, match="fitted on 48 features, got 32"):
        PCA(3).fit(images).transform(images[:, :2])
    with pytest.raises(ValueError, match="state is for PCA"):
        ZCAWhitening().load_state_dict(PCA(2).fit(images).state_dict())
    with pytest.raises(ValueError, match=r"feature_range must be \(a, b\) with a < b"):
        MinMaxScale(feature_range=(1, 0))
