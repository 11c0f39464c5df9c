"""Checkpoint files: round trip, atomic writes, truncated / tampered / wrong-architecture files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nnparts import nn
from nnparts.train import checkpoint as ckpt
from nnparts.train.trainer import load_model_state


def _model(hidden=8, seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(4, hidden, rng=rng), nn.Linear(hidden, 3, rng=rng))


def test_round_trip_keeps_arrays_and_nested_state(tmp_path):
    model = _model()
    states = {
        "optimizer": {"state": {0: {"exp_avg": np.arange(3.0)}}, "param_groups": [{"lr": 0.1}]},
        "rng": np.random.default_rng(5).bit_generator.state,
        "pair": (1, 2.5, None, "x"),
    }
    path = tmp_path / "c.npz"
    ckpt.save(path, model.state_dict(), states, {"epoch": 3, "config": {"a": [1, 2]}})
    model_state, loaded, meta = ckpt.load(path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(model_state[key], value)
    np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["exp_avg"], np.arange(3.0))
    assert loaded["optimizer"]["param_groups"] == [{"lr": 0.1}]
    assert loaded["rng"] == states["rng"]
    assert loaded["pair"] == (1, 2.5, None, "x")
    assert meta["epoch"] == 3 and meta["config"] == {"a": [1, 2]}


def test_file_is_not_a_pickle_and_loads_with_allow_pickle_false(tmp_path):
    path = tmp_path / "c.npz"
    ckpt.save(path, _model().state_dict(), {}, {})
    with np.load(path, allow_pickle=False) as npz:
        assert "__metadata__" in npz.files
        assert all(npz[name].dtype != object for name in npz.files)


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    ckpt.save(path, _model().state_dict(), {}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load(path)


def test_tampered_array_is_detected(tmp_path):
    path = tmp_path / "c.npz"
    model = _model()
    ckpt.save(path, model.state_dict(), {}, {})
    # rewrite one array, keep the metadata (and its SHA-256) as it was
    with np.load(path, allow_pickle=False) as npz:
        arrays = {n: npz[n] for n in npz.files}
    arrays["model/0.weight"] = arrays["model/0.weight"] + 1
    np.savez(path, **arrays)
    with pytest.raises(ckpt.CheckpointError, match="SHA-256"):
        ckpt.load(path)


def test_missing_file_and_foreign_npz(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ckpt.CheckpointError, match="not an nnparts checkpoint"):
        ckpt.load(tmp_path / "other.npz")


def test_checkpoint_from_another_architecture_names_the_key_and_shapes(tmp_path):
    path = tmp_path / "c.npz"
    ckpt.save(path, _model(hidden=8).state_dict(), {}, {})
    model_state, _, _ = ckpt.load(path)
    other = _model(hidden=16)
    with pytest.raises(ckpt.CheckpointError, match=r"0\.weight.*\(4, 8\).*\(4, 16\)"):
        load_model_state(other, model_state, path)
    deeper = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3), nn.Linear(3, 3))
    with pytest.raises(ckpt.CheckpointError, match="missing keys"):
        load_model_state(deeper, model_state, path)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "c.npz"
    ckpt.save(path, _model().state_dict(), {}, {"epoch": 1})
    before = path.read_bytes()

    class Unstorable:
        pass

    with pytest.raises(TypeError):
        ckpt.save(path, _model().state_dict(), {"bad": Unstorable()}, {"epoch": 2})

    def failing_writer(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.atomic_write_bytes(path, failing_writer)
    assert path.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []
