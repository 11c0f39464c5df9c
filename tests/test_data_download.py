"""Finding and downloading dataset files: lookup order, mirrors, SHA-256, atomic writes.

Downloads come from a local HTTP server on 127.0.0.1 (or a file:// URL) serving small IDX
files the test writes; nothing here touches the internet.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from nnparts.data import DatasetNotFoundError, load, write_idx
from nnparts.data import download as dl

FILES = dl.FILES["train"] + dl.FILES["test"]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(tmp_path):
    """Small fake MNIST files served over HTTP on 127.0.0.1; yields (base_url, dir, hashes)."""
    root = tmp_path / "server" / "mnist"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        images, labels = dl.FILES[split]
        write_idx(root / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / labels, (np.arange(n) % 10).astype(np.uint8))
    hashes = {f: (_sha(root / f),) for f in FILES}
    handler = functools.partial(
        type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
        directory=str(tmp_path / "server"),
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/mnist/", root, hashes
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty user cache and no system directories: only downloads can find data."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("NNPARTS_DATA", raising=False)
    monkeypatch.setattr(dl, "SYSTEM_DIRS", [str(tmp_path / "system" / "{name}")])
    return cache / "nnparts"


def test_download_verifies_and_loads(served, isolated, monkeypatch):
    url, root, hashes = served
    monkeypatch.setitem(dl.MIRRORS, "mnist", [url])
    monkeypatch.setitem(dl.SHA256, "mnist", hashes)
    x, y = load("mnist", "test")
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    cached = isolated / "mnist"
    assert sorted(os.listdir(cached)) == sorted(dl.FILES["test"])  # only the split asked for
    assert (cached / "t10k-images-idx3-ubyte.gz").read_bytes() == (
        root / "t10k-images-idx3-ubyte.gz"
    ).read_bytes()


def test_sha_mismatch_leaves_nothing_in_the_cache(served, isolated, monkeypatch):
    url, _, hashes = served
    bad = dict(hashes, **{"train-images-idx3-ubyte.gz": ("0" * 64,)})
    monkeypatch.setitem(dl.MIRRORS, "mnist", [url])
    monkeypatch.setitem(dl.SHA256, "mnist", bad)
    with pytest.raises(DatasetNotFoundError, match=r"SHA-256 mismatch: got [0-9a-f]{64}") as err:
        load("mnist", "train")
    assert "could not download train-images-idx3-ubyte.gz" in str(err.value)
    cached = isolated / "mnist"
    assert not (cached / "train-images-idx3-ubyte.gz").exists()
    assert [f for f in os.listdir(cached) if f.startswith(".")] == []  # no temporary file


def test_download_file_mismatch_then_next_mirror(served, tmp_path):
    url, root, hashes = served
    good = hashes["train-labels-idx1-ubyte.gz"]
    dest = tmp_path / "out" / "train-labels-idx1-ubyte.gz"
    urls = [
        url.replace("/mnist/", "/missing/") + dest.name,  # 404
        url + "train-images-idx3-ubyte.gz",  # answers, wrong bytes
        url + dest.name,  # right
    ]
    dl.download_file(urls, str(dest), good, progress=False)
    assert dest.read_bytes() == (root / dest.name).read_bytes()
    assert os.listdir(dest.parent) == [dest.name]


def test_all_mirrors_fail_lists_each(served, tmp_path):
    url, _, _ = served
    dest = tmp_path / "x.gz"
    with pytest.raises(OSError) as err:
        dl.download_file(
            [url + "nope.gz", url + "train-labels-idx1-ubyte.gz"],
            str(dest),
            "ab" * 32,
            progress=False,
        )
    msg = str(err.value)
    assert "nope.gz" in msg and "404" in msg and "SHA-256 mismatch" in msg
    assert os.listdir(tmp_path) == ["server"]


def test_file_url_mirror(served, tmp_path):
    _, root, hashes = served
    target = tmp_path / "data"
    dl.download_dataset(
        "mnist",
        splits="train",
        data_dir=target,
        mirrors=[root.as_uri()],
        hashes=hashes,
        progress=False,
    )
    assert sorted(os.listdir(target)) == sorted(dl.FILES["train"])
    x, y = load("mnist", "train", data_dir=target, download=False)
    assert x.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(y, np.arange(20) % 10)


def test_interrupted_download_leaves_nothing(served, tmp_path, monkeypatch):
    url, _, hashes = served

    class Interrupting:
        headers = {"Content-Length": "100"}

        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return b"x" * 10

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda *a, **k: Interrupting())
    dest = tmp_path / "d" / "f.gz"
    with pytest.raises(KeyboardInterrupt):
        dl.download_file([url + "f.gz"], str(dest), None, progress=False)
    assert os.listdir(dest.parent) == []


def test_offline_error_says_how_to_get_the_files(isolated, monkeypatch):
    monkeypatch.setitem(dl.MIRRORS, "fashion-mnist", ["http://127.0.0.1:9/"])  # refused
    with pytest.raises(DatasetNotFoundError) as err:
        load("fashion-mnist", "test")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and str(isolated / "fashion-mnist") in msg
    assert "127.0.0.1:9" in msg  # why the download failed


def test_download_false_does_not_download(isolated, monkeypatch):
    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("downloaded")

    monkeypatch.setattr(dl, "download_file", boom)
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load("mnist", "train", download=False)


def test_lookup_order_explicit_then_env_then_cache_then_system(tmp_path, monkeypatch, isolated):
    def make(d, n):
        d.mkdir(parents=True)
        write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8))
        write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(n, np.uint8))

    make(tmp_path / "system" / "mnist", 1)
    assert load("mnist", "test")[0].shape[0] == 1
    make(isolated / "mnist", 2)
    assert load("mnist", "test")[0].shape[0] == 2
    make(tmp_path / "env", 3)
    monkeypatch.setenv("NNPARTS_DATA", str(tmp_path / "env"))
    assert load("mnist", "test")[0].shape[0] == 3
    make(tmp_path / "explicit" / "mnist", 4)  # a <name>/ subdirectory also counts
    assert load("mnist", "test", data_dir=tmp_path / "explicit")[0].shape[0] == 4


def test_hash_table_covers_every_file():
    for name in ("fashion-mnist", "mnist"):
        assert set(dl.SHA256[name]) == set(FILES)
        for digests in dl.SHA256[name].values():
            assert all(len(h) == 64 and int(h, 16) >= 0 for h in digests)


def test_debian_fashion_files_match_the_hash_table(fashion_dir):
    for f in FILES:
        assert dl.sha256_file(os.path.join(fashion_dir, f)) in dl.SHA256["fashion-mnist"][f]
