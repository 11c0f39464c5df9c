"""Augmentation: shapes/dtypes kept, seeded, and each transform does what it is for."""

from __future__ import annotations

import numpy as np
import pytest

from nnparts import data
from nnparts.data import (
    AUGMENTATIONS,
    AlternatingFlip,
    Compose,
    CutMix,
    Cutout,
    ElasticDeformation,
    GaussianNoise,
    HorizontalFlip,
    LabelSmoothing,
    Mixup,
    RandomCrop,
    RandomErasing,
    RandomRotation,
    RandomShift,
    build_augmentation,
)

IMAGE_TRANSFORMS = [
    lambda: HorizontalFlip(),
    lambda: RandomCrop(padding=2),
    lambda: RandomShift(max_shift=3),
    lambda: RandomRotation(15),
    lambda: GaussianNoise(0.1),
    lambda: ElasticDeformation(alpha=8, sigma=3),
    lambda: Cutout(4),
    lambda: RandomErasing(p=1.0),
]
LABEL_TRANSFORMS = [
    lambda: Mixup(0.4, num_classes=10),
    lambda: CutMix(1.0, num_classes=10),
    lambda: LabelSmoothing(0.1, num_classes=10),
]


@pytest.fixture
def batch(rng):
    x = rng.integers(0, 256, (6, 2, 10, 12), dtype=np.uint8)
    y = rng.integers(0, 10, 6)
    return x, y


@pytest.mark.parametrize("make", IMAGE_TRANSFORMS + LABEL_TRANSFORMS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_shapes_and_dtypes_preserved(batch, make, dtype):
    x, y = batch
    x = x.astype(dtype) / (1 if dtype == np.uint8 else 255)
    t = make()
    x_out, y_out = t(x, y, rng=0)
    assert x_out.shape == x.shape and x_out.dtype == x.dtype
    if isinstance(t, (Mixup, CutMix, LabelSmoothing)):
        assert y_out.shape == (6, 10) and y_out.dtype == np.float32
    else:
        assert y_out is y
        assert t(x, rng=0).shape == x.shape  # images only


@pytest.mark.parametrize("make", IMAGE_TRANSFORMS + LABEL_TRANSFORMS)
def test_deterministic_under_a_seed(batch, make):
    x, y = batch
    a = make()(x, y, rng=np.random.default_rng(3))
    b = make()(x, y, rng=np.random.default_rng(3))
    c = make()(x, y, rng=np.random.default_rng(4))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    if not isinstance(make(), LabelSmoothing):
        assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_seed_at_construction_and_state_dict_resume(batch):
    x, _ = batch
    t1, t2 = RandomErasing(p=1.0, seed=5), RandomErasing(p=1.0, seed=5)
    np.testing.assert_array_equal(t1(x), t2(x))
    state = t1.state_dict()
    after = t1(x)
    t3 = RandomErasing(p=1.0)
    t3.load_state_dict(state)
    np.testing.assert_array_equal(t3(x), after)


def test_flip_twice_is_identity_and_flip_mirrors(batch):
    x, _ = batch
    t = HorizontalFlip(p=1.0)
    np.testing.assert_array_equal(t(x), x[..., ::-1])
    np.testing.assert_array_equal(t(t(x)), x)
    np.testing.assert_array_equal(HorizontalFlip(p=0.0)(x), x)


def test_flip_probability_per_sample(rng):
    x = np.tile(np.arange(4.0), (2000, 1, 1, 1))
    flipped = HorizontalFlip(p=0.3)(x, rng=rng)[:, 0, 0, 0] == 3
    assert abs(flipped.mean() - 0.3) < 0.05


def test_alternating_flip_shows_each_image_once_each_way_in_two_epochs(rng):
    x = np.tile(np.arange(4.0), (1000, 1, 1, 1))  # every image is the row 0 1 2 3
    t = AlternatingFlip(seed=3)
    index = rng.permutation(1000)
    seen = [t(x, index=index, epoch=e)[:, 0, 0, 0] == 3 for e in range(4)]  # mirrored?
    assert 0.45 < seen[0].mean() < 0.55  # epoch 0: a fair coin per image
    for e in range(3):
        np.testing.assert_array_equal(seen[e + 1], ~seen[e])  # the other way next epoch
    # a pure function of (seed, dataset index, epoch): batch order and batch size don't matter
    by_index = np.empty(1000, dtype=bool)
    by_index[index] = seen[1]
    perm = rng.permutation(1000)
    mirrored = AlternatingFlip(seed=3)(x[perm[:7]], index=perm[:7], epoch=1)
    np.testing.assert_array_equal(mirrored[:, 0, 0, 0] == 3, by_index[perm[:7]])
    t2 = AlternatingFlip(seed=3)  # coins drawn for small indices first, then for more
    t2(x[:5], index=np.arange(5), epoch=0)
    out = t2(x, index=index, epoch=0)
    np.testing.assert_array_equal(out[:, 0, 0, 0] == 3, seen[0])
    other = AlternatingFlip(seed=4)(x, index=index, epoch=0)[:, 0, 0, 0] == 3
    assert not np.array_equal(other, seen[0])
    np.testing.assert_array_equal(t(x, index=index, epoch=0)[seen[0]], x[seen[0]][..., ::-1])


def test_alternating_flip_needs_indices_and_epoch(batch):
    x, y = batch
    with pytest.raises(ValueError, match="call it as t.x, y, index=dataset_indices, epoch="):
        AlternatingFlip()(x, y)
    with pytest.raises(ValueError, match="index must be the batch's 6 dataset indices"):
        AlternatingFlip()(x, y, index=np.arange(5), epoch=0)
    with pytest.raises(ValueError, match="dataset indices must be >= 0, got -1"):
        AlternatingFlip()(x, y, index=np.arange(-1, 5), epoch=0)
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        AlternatingFlip()(x, y, index=np.arange(6), epoch=-1)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        AlternatingFlip(seed=-2)
    pipe = build_augmentation([{"name": "alternating_hflip", "seed": 1}, "random_erasing"])
    assert pipe.needs_index and not build_augmentation(["hflip"]).needs_index
    x0, y0 = pipe(x, y, rng=0, index=np.arange(6), epoch=0)
    assert x0.shape == x.shape and y0 is y


def test_random_crop_is_a_shift_within_padding(rng):
    x = rng.random((20, 1, 8, 8)).astype(np.float32) + 1  # no zeros inside the image
    out = RandomCrop(padding=2)(x, rng=0)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(len(x)):  # each output is one of the 25 allowed windows
        windows = [padded[i, :, a : a + 8, b : b + 8] for a in range(5) for b in range(5)]
        assert any(np.array_equal(out[i], w) for w in windows)
    assert RandomCrop(size=5, padding=0)(x, rng=0).shape == (20, 1, 5, 5)
    with pytest.raises(ValueError, match=r"crop size \(12, 12\) is larger than the padded image"):
        RandomCrop(size=12, padding=1)(x)


@pytest.mark.parametrize("mode", ["edge", "reflect", "symmetric"])
def test_random_crop_padding_modes_shift_within_the_padded_image(rng, mode):
    """Shifted images take their new border from the image (as np.pad's mode): on standardized
    data a constant 0 would be the mean grey, while 'edge' keeps a black background black."""
    x = rng.random((20, 1, 8, 8)).astype(np.float32)
    out = RandomShift(max_shift=2, padding_mode=mode)(x, rng=0)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode=mode)
    for i in range(len(x)):
        windows = [padded[i, :, a : a + 8, b : b + 8] for a in range(5) for b in range(5)]
        assert any(np.array_equal(out[i], w) for w in windows)
    background = np.full((50, 1, 6, 6), -0.8, dtype=np.float32)
    background[:, :, 2:4, 2:4] = 2.0  # a centred object on a dark background
    assert RandomCrop(padding=2, padding_mode="edge")(background, rng=0).min() == np.float32(-0.8)
    assert RandomCrop(padding=2)(background, rng=0).max(axis=(1, 2, 3)).min() == 2.0
    assert (RandomCrop(padding=2)(background, rng=0) == 0).any()  # the grey frame of fill=0
    with pytest.raises(ValueError, match="unknown padding_mode 'wrap'; allowed: constant, edge"):
        RandomCrop(padding=2, padding_mode="wrap")
    with pytest.raises(ValueError, match="reflect padding 8 needs images larger than 8"):
        RandomCrop(padding=8, padding_mode="reflect")(x)


def test_rotation_keeps_radius_and_samples_independent():
    h = w = 21
    x = np.zeros((3, 1, h, w))
    x[0, 0, 10, 17] = 1.0  # a dot 7 pixels right of the centre
    x[2, 0, 3, 10] = 1.0  # a dot 7 pixels above the centre
    out = RandomRotation(degrees=60)(x, rng=1)
    assert out[1].max() == 0  # nothing leaks into the blank sample between them
    ii, jj = np.mgrid[:h, :w]
    for k in (0, 2):
        m = out[k, 0]
        ci, cj = (m * ii).sum() / m.sum(), (m * jj).sum() / m.sum()
        assert abs(np.hypot(ci - 10, cj - 10) - 7) < 0.5
        assert not np.allclose(m, x[k, 0])  # it moved
    np.testing.assert_allclose(RandomRotation(0)(x), x, atol=1e-12)


def test_elastic_identity_at_zero_alpha_and_smooth_displacement(rng):
    x = rng.random((4, 1, 16, 16))
    np.testing.assert_allclose(ElasticDeformation(alpha=0.0)(x, rng=0), x, atol=1e-12)
    x[1] = 0
    out = ElasticDeformation(alpha=30, sigma=4)(x, rng=0)
    assert out[1].max() == 0  # no leakage between samples
    diff = np.abs(out - x).mean()
    assert 0.01 < diff < 0.3  # a deformation, not noise: the image is still mostly itself


def test_gaussian_noise_std_and_uint8_clipping(rng):
    x = np.full((50, 1, 20, 20), 0.5, dtype=np.float32)
    out = GaussianNoise(0.1)(x, rng=0)
    assert abs((out - x).std() - 0.1) < 0.005
    x8 = np.full((50, 1, 20, 20), 250, dtype=np.uint8)
    out8 = GaussianNoise(0.1)(x8, rng=0)
    assert out8.max() == 255 and abs(out8.astype(float).std() - 0.1 * 255) < 10


def test_cutout_square_and_random_erasing_area(rng):
    x = np.ones((200, 1, 16, 16), dtype=np.float32)
    out = Cutout(size=6, value=0.0)(x, rng=0)
    erased = (out == 0).sum(axis=(1, 2, 3))
    assert erased.max() == 36 and erased.min() >= 9  # full square, or clipped at a corner
    rows = (out[:, 0] == 0).any(axis=2).sum(1)
    assert rows.max() == 6
    out = RandomErasing(p=1.0, value=-1.0)(x, rng=0)
    frac = (out == -1).mean(axis=(1, 2, 3))
    assert frac.min() > 0 and frac.max() <= 0.33 + 0.05
    np.testing.assert_array_equal(RandomErasing(p=0.0)(x, rng=0), x)


@pytest.mark.parametrize("cls", [Mixup, CutMix])
def test_mixed_labels_sum_to_one_and_equal_pixel_proportions(cls):
    n = 16
    # sample i's image is the indicator of channel i, so the mean of output channel c over
    # pixels is exactly the share of the output that came from sample c
    x = np.zeros((n, n, 8, 8))
    x[np.arange(n), np.arange(n)] = 1.0
    x_out, y_out = cls(alpha=1.0, num_classes=n)(x, np.arange(n), rng=2)
    np.testing.assert_allclose(y_out.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(x_out.mean(axis=(2, 3)), y_out, atol=1e-6)
    assert np.sum((y_out > 0) & (y_out < 1)) > n // 2  # genuinely mixed


def test_cutmix_lambda_is_the_exact_pasted_area():
    x_src = np.arange(8.0)[:, None, None, None] + np.zeros((8, 1, 10, 10))
    x_out, y_out = CutMix(alpha=0.5, num_classes=8)(x_src, np.arange(8), rng=0)
    for i in range(8):
        kept = np.mean(x_out[i] == i)
        assert y_out[i, i] == pytest.approx(kept)
    assert np.any(y_out.max(axis=1) < 1)  # some boxes were pasted


def test_mixup_accepts_label_rows():
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    x = np.random.default_rng(0).random((4, 1, 2, 2))
    _, y_out = Mixup(0.5)(x, y, rng=0)
    np.testing.assert_allclose(y_out.sum(1), 1, rtol=1e-6)


def test_label_smoothing_matches_torch_cross_entropy(torch):
    y = np.array([0, 3, 1, 2])
    logits = np.random.default_rng(0).standard_normal((4, 4))
    _, rows = LabelSmoothing(0.2, num_classes=4)(np.zeros((4, 1, 2, 2)), y)
    np.testing.assert_allclose(rows.sum(1), 1, rtol=1e-6)
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(logits), torch.tensor(y), label_smoothing=0.2
    )
    ours_target = torch.nn.functional.cross_entropy(
        torch.tensor(logits), torch.tensor(rows.astype(np.float64))
    )
    assert float(ours_target) == pytest.approx(float(ref), abs=1e-7)


def test_label_errors(batch):
    x, y = batch
    with pytest.raises(ValueError, match="Mixup mixes labels: call it as t"):
        Mixup(num_classes=10)(x)
    with pytest.raises(ValueError, match="need num_classes"):
        CutMix()(x, y)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        LabelSmoothing(num_classes=3)(x, y + 5)
    with pytest.raises(ValueError, match="alpha .* must be > 0, got 0"):
        Mixup(alpha=0)
    with pytest.raises(ValueError, match=r"expects a batch of images .* got shape \(10, 12\)"):
        HorizontalFlip()(x[0, 0])
    with pytest.raises(ValueError, match=r"p \(probability of applying\) must be in \[0, 1\]"):
        HorizontalFlip(p=2)


def test_compose_and_build_from_config(batch):
    x, y = batch
    config = [
        {"name": "hflip", "p": 0.5},
        {"name": "random_shift", "max_shift": 2},
        "random_erasing",
        {"name": "cutmix", "alpha": 1.0, "num_classes": 10},
    ]
    pipe = build_augmentation(config, seed=0)
    assert isinstance(pipe, Compose) and len(pipe) == 4
    expected = [HorizontalFlip, RandomShift, RandomErasing, CutMix]
    assert [type(t) for t in pipe.transforms] == expected
    x1, y1 = pipe(x, y)
    x2, y2 = build_augmentation(config, seed=0)(x, y)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == (6, 10)
    # a Compose of flips applied with a pipeline-wide p=1 is the identity
    np.testing.assert_array_equal(Compose([HorizontalFlip(1.0), HorizontalFlip(1.0)])(x), x)


def test_build_unknown_name_and_bad_arguments():
    valid = "valid names: alternating_hflip, cutmix, cut"
    with pytest.raises(ValueError, match=f"unknown augmentation 'blur'; {valid}"):
        build_augmentation([{"name": "blur"}])
    with pytest.raises(ValueError, match="bad arguments .* for augmentation 'hflip'"):
        build_augmentation([{"name": "hflip", "prob": 0.5}])
    assert set(AUGMENTATIONS) >= {"hflip", "random_crop", "rotation", "elastic", "mixup"}


def _lines_run(fn):
    """How many lines of Python ``fn()`` executes (all files): a count, not a time."""
    import sys

    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def test_augmentation_is_vectorized_no_python_loop_over_samples():
    # the same number of Python lines runs for a batch of 4 and of 256: no loop over samples
    # or pixels (the one loop allowed is over a pipeline's transforms)
    pipe = build_augmentation(
        ["hflip", "random_shift", "rotation", "elastic", "random_erasing", "cutout"]
    )
    rng = np.random.default_rng(0)
    small, large = rng.random((4, 1, 28, 28)), rng.random((256, 1, 28, 28))
    flips = AlternatingFlip()
    pipe(small, rng=0)  # first calls import what they need (scipy.ndimage)
    assert _lines_run(lambda: pipe(small, rng=0)) == _lines_run(lambda: pipe(large, rng=0))
    assert _lines_run(lambda: flips(small, index=np.arange(4), epoch=1)) == _lines_run(
        lambda: flips(large, index=np.arange(256), epoch=1)
    )
    assert data.augment.Transform  # the module is importable by name
