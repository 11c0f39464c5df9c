"""IDX reader: round trips on files the tests write, and clear errors on bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnparts.data import read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, rng, dtype, suffix):
    x = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = tmp_path / f"a-idx3-ubyte{suffix}"
    write_idx(path, x)
    y = read_idx(path)
    assert y.dtype == np.dtype(dtype).newbyteorder("=")
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, x)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4))
def test_round_trip_any_shape(tmp_path_factory, shape):
    x = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape) - 7
    path = tmp_path_factory.mktemp("idx") / "x.idx"
    write_idx(path, x)
    np.testing.assert_array_equal(read_idx(path, cache=False), x)


def test_header_is_big_endian_as_the_format_says(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([3, 1, 4], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 3, 1, 4])
    path = tmp_path / "f-idx1"
    write_idx(path, np.array([1.5], dtype=np.float32))
    assert path.read_bytes()[8:] == np.array([1.5], dtype=">f4").tobytes()


def test_gzip_detected_from_content_not_name(tmp_path):
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "no-suffix"
    write_idx(path, x, compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(path), x)


def _write_raw(path, payload, gz=False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data_names_file_and_sizes(tmp_path, gz):
    good = tmp_path / "good"
    write_idx(good, np.zeros((10, 28, 28), np.uint8))
    path = _write_raw(tmp_path / "train-images-idx3-ubyte", good.read_bytes()[:-100], gz)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated.*\(10, 28, 28\)"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = _write_raw(tmp_path / "h", bytes([0, 0, 8, 3, 0, 0, 0, 10]))
    with pytest.raises(ValueError, match=r"h: truncated IDX header: 3 dimensions need 16"):
        read_idx(path)


def test_too_short_for_a_header(tmp_path):
    path = _write_raw(tmp_path / "tiny", b"\x00\x00")
    with pytest.raises(ValueError, match="tiny: not an IDX file: 2 bytes"):
        read_idx(path)


def test_wrong_magic(tmp_path):
    path = _write_raw(tmp_path / "bad-magic", b"PK\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match=r"bad-magic.*magic.*0x50 0x4b.*expected 0x00 0x00"):
        read_idx(path)


def test_unknown_dtype_code(tmp_path):
    path = _write_raw(tmp_path / "code", bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(ValueError, match=r"code: unknown IDX dtype code 0x07.*0x08"):
        read_idx(path)


def test_wrong_count_trailing_bytes(tmp_path):
    # header says 3 labels, the file holds 5
    path = _write_raw(tmp_path / "labels", bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match=r"labels: IDX data has trailing bytes.*\(3,\).*5 bytes"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    good = tmp_path / "x.gz"
    write_idx(good, np.zeros((50, 50), np.uint8))
    path = _write_raw(tmp_path / "cut.gz", good.read_bytes()[:-8])
    with pytest.raises(ValueError, match=r"cut.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_write_rejects_int64(tmp_path):
    with pytest.raises(ValueError, match="int64.*uint8"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


def test_cache_returns_fresh_writable_copies_and_sees_rewrites(tmp_path):
    path = tmp_path / "c"
    write_idx(path, np.arange(6, dtype=np.uint8))
    a = read_idx(path)
    a[0] = 99  # a caller modifying its copy ...
    np.testing.assert_array_equal(read_idx(path), np.arange(6))  # ... does not touch the cache
    write_idx(path, np.arange(7, dtype=np.uint8))  # a rewritten file is read again
    assert read_idx(path).shape == (7,)
