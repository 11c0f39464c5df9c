"""The ``nnparts data`` command (info, download), driven through its own parser."""

from __future__ import annotations

import argparse
import io
import os

import numpy as np

from nnparts.data import cli, write_idx
from nnparts.data import download as dl


def _run(argv, **kw):
    parser = argparse.ArgumentParser(prog="nnparts")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    return args.func(args, out=out), out.getvalue()


def test_info_reports_location_shapes_and_class_counts(fashion_dir):
    rc, text = _run(["data", "info", "fashion-mnist", "--data-dir", fashion_dir])
    assert rc == 0
    assert os.path.join(fashion_dir, "train-images-idx3-ubyte.gz") in text
    assert "x uint8 (60000, 1, 28, 28), y int64 (60000,)" in text
    assert "per class: " + " ".join(["1000"] * 10) in text


def test_info_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(dl, "SYSTEM_DIRS", [])
    rc, text = _run(["data", "info", "mnist"])
    assert rc == 0 and "train: not found (nnparts data download mnist)" in text


def test_download_from_a_file_mirror(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    src.mkdir()
    for f in dl.FILES["test"]:
        write_idx(src / f, np.zeros((3, 28, 28) if "images" in f else 3, np.uint8))
    monkeypatch.setitem(dl.MIRRORS, "mnist", [src.as_uri()])
    monkeypatch.setitem(dl.SHA256, "mnist", {f: dl.sha256_file(src / f) for f in dl.FILES["test"]})
    target = tmp_path / "target"
    rc, text = _run(
        ["data", "download", "mnist", "--split", "test", "--data-dir", str(target), "--no-progress"]
    )
    assert rc == 0 and str(target) in text
    assert sorted(os.listdir(target)) == sorted(dl.FILES["test"])
    # a bad hash fails with exit status 1 and leaves nothing
    monkeypatch.setitem(dl.SHA256, "mnist", {f: ("0" * 64,) for f in dl.FILES["test"]})
    other = tmp_path / "other"
    rc, _ = _run(["data", "download", "mnist", "--split", "test", "--data-dir", str(other)])
    assert rc == 1 and os.listdir(other) == []
