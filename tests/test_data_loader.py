"""DataLoader: every index once per epoch, reshuffled, reproducible, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnparts
from nnparts.data import Compose, DataLoader, HorizontalFlip


def _indices(loader):
    return np.concatenate([yb for _, yb in loader])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 50), batch_size=st.integers(1, 20), drop_last=st.booleans())
def test_each_index_exactly_once_per_epoch(n, batch_size, drop_last):
    if drop_last and batch_size > n:
        return
    loader = DataLoader(np.arange(n) * 2, np.arange(n), batch_size, drop_last=drop_last, seed=0)
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        seen = np.concatenate([yb for _, yb in batches])
        for xb, yb in batches:
            np.testing.assert_array_equal(xb, yb * 2)  # x and y stay paired
        if drop_last:
            assert all(len(yb) == batch_size for _, yb in batches)
            assert len(seen) == (n // batch_size) * batch_size
            assert len(np.unique(seen)) == len(seen)  # without replacement
        else:
            np.testing.assert_array_equal(np.sort(seen), np.arange(n))


def test_batch_sizes_without_drop_last():
    loader = DataLoader(np.zeros((10, 3)), np.arange(10), batch_size=4, shuffle=False)
    assert len(loader) == 3
    assert [len(xb) for xb, _ in loader] == [4, 4, 2]
    assert [xb.shape for xb, _ in loader][0] == (4, 3)
    assert len(DataLoader(np.zeros(10), None, 4, drop_last=True)) == 2


def test_same_seed_same_order_different_epochs_differ():
    a = DataLoader(np.arange(100), np.arange(100), 10, seed=7)
    b = DataLoader(np.arange(100), np.arange(100), 10, seed=7)
    c = DataLoader(np.arange(100), np.arange(100), 10, seed=8)
    e0, e1 = _indices(a), _indices(a)
    np.testing.assert_array_equal(e0, _indices(b))
    np.testing.assert_array_equal(e1, _indices(b))
    assert not np.array_equal(e0, e1)
    assert not np.array_equal(e0, _indices(c))


def test_no_shuffle_is_the_natural_order():
    loader = DataLoader(np.arange(7), np.arange(7), 3, shuffle=False)
    np.testing.assert_array_equal(_indices(loader), np.arange(7))
    np.testing.assert_array_equal(_indices(loader), np.arange(7))


def test_seed_none_follows_manual_seed():
    nnparts.manual_seed(5)
    a = _indices(DataLoader(np.arange(50), np.arange(50), 8))
    nnparts.manual_seed(5)
    b = _indices(DataLoader(np.arange(50), np.arange(50), 8))
    np.testing.assert_array_equal(a, b)


def test_resume_mid_epoch_is_bit_identical():
    x = np.arange(50)
    ref = DataLoader(x, x, 8, seed=3)
    full = [yb for _ in range(3) for _, yb in ref]

    run = DataLoader(x, x, 8, seed=3)
    got = [yb for _, yb in run]  # epoch 0
    for i, (_, yb) in enumerate(run):  # epoch 1, stop after 3 batches
        got.append(yb)
        if i == 2:
            break
    state = json.loads(json.dumps(run.state_dict()))  # JSON-able
    assert state == {"seed": 3, "epoch": 1, "position": 3}

    resumed = DataLoader(x, x, 8, seed=999)
    resumed.load_state_dict(state)
    got += [yb for _, yb in resumed]  # rest of epoch 1
    got += [yb for _, yb in resumed]  # epoch 2
    assert len(got) == len(full)
    for a, b in zip(got, full):
        np.testing.assert_array_equal(a, b)


def test_state_between_epochs_and_new_iteration_after_break():
    loader = DataLoader(np.arange(20), np.arange(20), 5, seed=1)
    list(loader)
    assert loader.state_dict() == {"seed": 1, "epoch": 1, "position": 0}
    for _ in loader:
        break  # abandoning an epoch: the next iter() starts a new epoch, as in PyTorch
    np.testing.assert_array_equal(_indices(loader), loader.order(2))


def test_transform_is_applied_per_batch():
    x = np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3)
    loader = DataLoader(x, np.arange(2), 2, shuffle=False, transform=HorizontalFlip(p=1.0))
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(xb, x[..., ::-1])
    only_x = DataLoader(x, None, 2, shuffle=False, transform=Compose([HorizontalFlip(p=1.0)]))
    xb, yb = next(iter(only_x))
    assert yb is None
    np.testing.assert_array_equal(xb, x[..., ::-1])


def test_loader_gives_indexed_transforms_the_batch_indices_and_epoch():
    from nnparts.data import AlternatingFlip

    x = np.tile(np.arange(3.0), (50, 1, 1, 1))
    loader = DataLoader(x, None, 8, seed=2, transform=AlternatingFlip(seed=0))
    assert loader.current_batch is None
    coins = AlternatingFlip(seed=0).coins(np.arange(50))
    for epoch in range(3):
        for b, (xb, _) in enumerate(loader):
            got_epoch, index = loader.current_batch
            assert got_epoch == epoch
            np.testing.assert_array_equal(index, loader.order(epoch)[b * 8 : (b + 1) * 8])
            np.testing.assert_array_equal(xb[:, 0, 0, 0] == 2, coins[index] ^ bool(epoch % 2))


def test_batches_are_gathers_not_views_of_a_copied_dataset():
    x = np.arange(1000, dtype=np.float32).reshape(100, 10)
    loader = DataLoader(x, None, 10, seed=0)
    assert loader.x is x  # no copy of the dataset is kept


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.zeros(5), np.zeros(4), 2), {}, r"x has 5 samples but y has shape \(4,\)"),
        ((np.zeros(5), None, 0), {}, "batch_size must be a positive int, got 0"),
        ((np.zeros(5), None, 2.5), {}, "batch_size must be a positive int, got 2.5"),
        ((np.zeros(5), None, 8), {"drop_last": True}, "batch_size=8 with drop_last=True"),
        ((np.zeros(5), None, 2), {"seed": -1}, "seed must be a non-negative int"),
    ],
)
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(*args, **kwargs)


def test_bad_state():
    loader = DataLoader(np.zeros(10), None, 5)
    with pytest.raises(ValueError, match="missing keys"):
        loader.load_state_dict({"seed": 1})
    with pytest.raises(ValueError, match=r"position 7 is outside \[0, 2\]"):
        loader.load_state_dict({"seed": 1, "epoch": 0, "position": 7})
