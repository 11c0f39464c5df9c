"""nnparts tune: search space, k-fold, samplers, coarse-to-fine, pruning, workers, results.

Real training throughout, kept tiny (a few hundred Fashion-MNIST images, a 16-unit MLP, 1-3
epochs) so a trial takes a fraction of a second. CLI-level behaviour runs ``python -m
nnparts.cli`` in a subprocess and checks the exit code and the message.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from nnparts.tune import SearchSpace, narrow, stratified_kfold
from nnparts.tune.search import Options, build_sampler
from nnparts.tune.storage import mask_url, normalize_url

optuna = pytest.importorskip(
    "optuna", reason="nnparts tune needs optuna: pip install 'nnparts[tune]'"
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search_config(tmp_path, fashion_dir, search, name="search.yaml", tune=None, **sections):
    cfg = {
        "seed": 1,
        "data": {
            "data_dir": fashion_dir,
            "download": False,
            "train_subset": 800,
            "val_size": 200,
            "test_subset": 200,
        },
        "model": {"hidden": [16], "dropout": 0.0, "norm": "none"},
        "train": {"epochs": 2, "batch_size": 100},
        "scheduler": {"name": "none"},
        "search": search,
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    if tune:
        cfg["tune"] = tune
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def cli(*args, env=None, timeout=240):
    full_env = dict(os.environ, NNPARTS_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "nnparts.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full_env,
        timeout=timeout,
    )


def load_study(out, name="search"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db")


def study_started(out) -> bool:
    """Whether a worker has created ``out/study.db``'s tables and its first trial, checked on a
    read-only connection: a ``load_study`` while the worker is still creating the schema would
    run optuna's own table creation against it, and one of the two could fail."""
    import sqlite3
    from contextlib import closing

    path = out / "study.db"
    if not path.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as conn:
            return conn.execute("SELECT count(*) FROM trials").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def states(study):
    counts = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


GRID = {
    "optimizer.lr": {"type": "float", "low": 0.001, "high": 0.01, "grid": [0.001, 0.003, 0.01]},
    "model.hidden": {"type": "categorical", "choices": [[16], [8, 8]]},
}
GRID_POINTS = {(lr, json.dumps(h)) for lr in (0.001, 0.003, 0.01) for h in ([16], [8, 8])}


# -- k-fold ---------------------------------------------------------------------------------------
def test_stratified_kfold_folds_are_disjoint_cover_and_keep_class_proportions():
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=403, p=[0.4, 0.3, 0.2, 0.1])
    folds = stratified_kfold(y, 5, seed=3)
    assert len(folds) == 5
    vals = [v for _, v in folds]
    allv = np.concatenate(vals)
    assert len(allv) == len(y) and len(np.unique(allv)) == len(y)  # disjoint and covering
    for train, val in folds:
        assert len(np.intersect1d(train, val)) == 0
        assert len(train) + len(val) == len(y)
        for c in range(4):  # each fold holds floor or ceil of count/k of every class
            count = int((y == c).sum())
            assert (y[val] == c).sum() in (count // 5, -(-count // 5))
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    again = stratified_kfold(y, 5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = stratified_kfold(y, 5, seed=4)
    assert not all(np.array_equal(np.sort(a[1]), np.sort(b[1])) for a, b in zip(folds, other))


def test_stratified_kfold_rejects_bad_k():
    with pytest.raises(ValueError, match="cv must be an integer >= 2"):
        stratified_kfold(np.zeros(10, int), 1)
    with pytest.raises(ValueError, match="need at least 11 samples"):
        stratified_kfold(np.zeros(10, int), 11)


# -- search space ---------------------------------------------------------------------------------
def test_space_suggests_decodes_lists_and_validates_every_reachable_value():
    space = SearchSpace.parse(
        {
            "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "train.batch_size": {"type": "int", "low": 32, "high": 256, "step": 32},
            "model.hidden": {"type": "categorical", "choices": [[100], [200, 100]]},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = space.suggest(trial)
    assert 1e-4 <= values["optimizer.lr"] <= 1e-1
    assert values["train.batch_size"] % 32 == 0
    assert values["model.hidden"] in ([100], [200, 100])
    assert space.decode(trial.params) == values
    assert space.reachable_values("train.batch_size") == [32, 256]


@pytest.mark.parametrize(
    "search, message",
    [
        (
            {"optimizer.learning_rate": {"type": "float", "low": 0.1, "high": 1}},
            "unknown config key",
        ),
        ({"optimizer.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "is inverted"),
        ({"optimizer.lr": {"type": "float", "low": 0.1, "high": 0.1}}, "is empty"),
        (
            {"optimizer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
            "a log range needs bounds > 0",
        ),
        (
            {"model.activation": {"type": "categorical", "choices": ["relu", "sigmoidd"]}},
            "choice 'sigmoidd' is rejected by the training config: model.activation",
        ),
        (
            {"model.dropout": {"type": "float", "low": 0.0, "high": 1.0}},
            "value 1.0 is rejected by the training config: model.dropout",
        ),
        ({"optimizer.lr": {"type": "categorical", "choices": []}}, "non-empty list"),
    ],
    ids=["unknown-key", "inverted", "empty", "log-le-0", "bad-choice", "bad-bound", "no-choices"],
)
def test_bad_search_space_is_a_one_line_error_from_the_cli(
    tmp_path, fashion_dir, capsys, search, message
):
    # in-process (nnparts.cli.main, the entry point itself): a subprocess per case costs seconds
    from nnparts import cli as nnparts_cli

    config = search_config(tmp_path, fashion_dir, search)
    code = nnparts_cli.main(["tune", "--config", config, "--out", str(tmp_path / "out")])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "out" / "study.db").exists()  # nothing ran


def test_unreachable_storage_is_named_without_its_password(tmp_path, fashion_dir):
    config = search_config(tmp_path, fashion_dir, GRID)
    url = "postgresql://alice:s3cretpw@127.0.0.1:1/optuna"
    result = cli("tune", "--config", config, "--out", str(tmp_path / "o"), "--storage", url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach storage "), result.stderr
    assert "s3cretpw" not in result.stderr + result.stdout
    assert "postgresql+psycopg://alice:***@127.0.0.1:1/optuna" in lines[0]


def test_url_helpers():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert mask_url("postgresql+psycopg://u:pw@h:5/db") == "postgresql+psycopg://u:***@h:5/db"


# -- samplers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "tpe"])
def test_seeded_samplers_suggest_the_same_points_twice(name):
    space = SearchSpace.parse(
        {
            "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "model.hidden": {"type": "categorical", "choices": [[16], [32, 16], [64]]},
            "train.batch_size": {"type": "int", "low": 16, "high": 128, "step": 16},
        }
    )

    def suggestions(seed):
        study = optuna.create_study(
            direction="maximize", sampler=build_sampler(name, space, seed, startup_trials=3)
        )
        out = []
        for _ in range(8):
            trial = study.ask()
            values = space.suggest(trial)
            out.append(values)
            score = -abs(np.log10(values["optimizer.lr"]) + 2.5) - values["train.batch_size"] / 1e3
            study.tell(trial, score)
        return out

    assert suggestions(7) == suggestions(7)
    assert suggestions(7) != suggestions(8)


def test_gp_sampler_without_torch_says_how_to_install_it(monkeypatch):
    from nnparts.train.config import ConfigError

    space = SearchSpace.parse({"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1}})
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ConfigError, match=r"needs PyTorch.*nnparts\[gp\]"):
        build_sampler("gp", space, 0)


def test_grid_sampler_needs_values_for_every_range():
    from nnparts.train.config import ConfigError

    space = SearchSpace.parse({"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1}})
    with pytest.raises(ConfigError, match="the grid sampler needs the values"):
        build_sampler("grid", space, 0)


# -- coarse-to-fine -------------------------------------------------------------------------------
def test_narrow_follows_the_formula():
    space = SearchSpace.parse(
        {
            "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-0, "log": True},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.8},
            "train.batch_size": {"type": "int", "low": 16, "high": 256, "step": 16},
            "model.activation": {"type": "categorical", "choices": ["relu", "tanh", "elu"]},
        }
    )
    top = [
        {
            "optimizer.lr": 1e-3,
            "model.dropout": 0.2,
            "train.batch_size": 64,
            "model.activation": "elu",
        },
        {
            "optimizer.lr": 1e-2,
            "model.dropout": 0.3,
            "train.batch_size": 96,
            "model.activation": "relu",
        },
    ]
    new = narrow(space, top, margin=0.1).entries
    # log range: width 4 decades, margin 0.4 decade around [1e-3, 1e-2]
    assert new["optimizer.lr"]["low"] == pytest.approx(10**-3.4)
    assert new["optimizer.lr"]["high"] == pytest.approx(10**-1.6)
    # linear: width 0.8, margin 0.08 around [0.2, 0.3]
    assert new["model.dropout"]["low"] == pytest.approx(0.12)
    assert new["model.dropout"]["high"] == pytest.approx(0.38)
    # int with step 16: [64 - 24, 96 + 24] = [40, 120] widened to whole steps [32, 128]
    assert (new["train.batch_size"]["low"], new["train.batch_size"]["high"]) == (32, 128)
    assert new["model.activation"]["choices"] == ["relu", "elu"]  # original order
    # clipped at the original bounds
    edge = narrow(space, [dict(top[0], **{"model.dropout": 0.79})], margin=0.5).entries
    assert edge["model.dropout"]["high"] == 0.8  # 0.79 + 0.4 clipped
    assert edge["model.dropout"]["low"] == pytest.approx(0.39)


# -- searches that train --------------------------------------------------------------------------
def test_search_never_reads_the_test_split_and_cv_reports_mean_and_sd(
    tmp_path, fashion_dir, monkeypatch
):
    from nnparts import data
    from nnparts.tune import objective
    from nnparts.tune.run import tune

    real_load = data.load
    seen = []

    def guarded_load(name, split="train", *args, **kwargs):
        seen.append(split)
        if split != "train":
            raise AssertionError(f"the search read the {split} split")
        return real_load(name, split, *args, **kwargs)

    monkeypatch.setattr(data, "load", guarded_load)
    monkeypatch.setattr(data.datasets, "load", guarded_load)  # what load_split calls
    monkeypatch.setattr(objective, "_DATA_CACHE", {})
    search = {"optimizer.lr": {"type": "categorical", "choices": [0.003, 0.01]}}
    for cv in (None, 3):
        out = tmp_path / f"cv{cv}"
        config = search_config(tmp_path, fashion_dir, search, tune={"figures": False})
        flags = {"sampler": "grid", "out": str(out), "cv": cv, "heartbeat_interval": 1,
                 "grace_period": 5}  # fmt: skip
        assert tune(config, [], flags, log=lambda m: None) == 0
        trials = load_study(out).get_trials()
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
        if cv:
            for t in trials:
                scores = t.user_attrs["cv_scores"]
                assert len(scores) == 3
                assert t.value == pytest.approx(np.mean(scores))
                assert t.user_attrs["cv_sd"] == pytest.approx(np.std(scores, ddof=1))
    assert seen and set(seen) == {"train"}


def test_pruning_marks_a_bad_config_pruned_before_its_last_epoch(tmp_path, fashion_dir):
    from nnparts.tune.run import tune

    # two good learning rates first, then a hopeless one: a seed whose grid order ends with it
    search = {"optimizer.lr": {"type": "categorical", "choices": [0.01, 0.005, 1.0e-7]}}
    space = SearchSpace.parse(search)
    seed = next(s for s in range(100) if build_sampler("grid", space, s)._all_grids[-1] == (1e-7,))
    config = search_config(
        tmp_path,
        fashion_dir,
        search,
        tune={"pruner": "median", "startup_trials": 2, "figures": False},
        train={"epochs": 3},
    )
    out = tmp_path / "out"
    flags = {"sampler": "grid", "out": str(out), "seed": seed, "heartbeat_interval": 1,
             "grace_period": 5}  # fmt: skip
    assert tune(config, [], flags, log=lambda m: None) == 0
    trials = {t.params["optimizer.lr"]: t for t in load_study(out).get_trials()}
    assert trials[0.01].state.name == "COMPLETE" and trials[0.005].state.name == "COMPLETE"
    bad = trials[1.0e-7]
    assert bad.state.name == "PRUNED"  # not FAIL
    assert len(bad.user_attrs["val_accuracy_curve"]) < 3
    assert max(bad.intermediate_values) < 3


def run_cli_in_process(capsys, *args):
    """``nnparts ...`` through its entry point in this process (one-thread numerics, like the
    workers); returns (exit code, stdout, stderr)."""
    from threadpoolctl import threadpool_limits

    import nnparts
    from nnparts import cli as nnparts_cli

    before = nnparts.get_num_threads()
    capsys.readouterr()
    try:
        with threadpool_limits(1):
            nnparts.set_num_threads(1)
            code = nnparts_cli.main(list(args))
    finally:
        nnparts.set_num_threads(before)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_grid_two_workers_each_point_once_and_best_yaml_round_trips(tmp_path, fashion_dir, capfd):
    from nnparts.tune.run import tune

    config = search_config(tmp_path, fashion_dir, GRID)
    out = tmp_path / "grid2"
    lines = []
    flags = {"sampler": "grid", "workers": 2, "out": str(out), "seed": 5}
    assert tune(config, [], flags, log=lines.append) == 0  # this process starts 2 workers
    worker_lines = capfd.readouterr().out.splitlines()
    study = load_study(out)
    trials = study.get_trials()
    points = [(t.params["optimizer.lr"], t.params["model.hidden"]) for t in trials]
    assert sorted(points) == sorted(GRID_POINTS)  # every point, exactly once
    assert states(study) == {"COMPLETE": 6}
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both workers ran trials
    # one progress line per trial, from the worker that ran it
    assert sum(" COMPLETE " in line for line in worker_lines) == 6, worker_lines
    assert any(line.startswith("best: trial") for line in lines)
    assert any("optuna-dashboard sqlite:///" in line for line in lines)
    for name in ("best.yaml", "trials.csv", "metrics.json", "history.png", "curves.png",
                 "top2.png", "importance.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 6 and {r["state"] for r in rows} == {"COMPLETE"}

    # best.yaml runs as is with `nnparts train --config` and trains that very trial
    best = study.best_trial
    cfg = yaml.safe_load((out / "best.yaml").read_text())
    assert cfg["optimizer"]["lr"] == best.params["optimizer.lr"]
    assert json.dumps(cfg["model"]["hidden"]) == best.params["model.hidden"]
    train_out = tmp_path / "retrained"
    code, _, err = run_cli_in_process(
        capfd, "train", "--config", str(out / "best.yaml"), "--out", str(train_out), "--quiet"
    )
    assert code == 0, err
    metrics = json.loads((train_out / "metrics.json").read_text())
    assert [h["val_accuracy"] for h in metrics["history"]] == best.user_attrs["val_accuracy_curve"]
    assert metrics["history"][-1]["val_accuracy"] == best.value


def test_grid_one_worker_each_point_once_then_a_study_with_another_space_is_refused(
    tmp_path, fashion_dir, capsys
):
    from nnparts.tune.run import tune

    config = search_config(tmp_path, fashion_dir, GRID, tune={"figures": False})
    out = tmp_path / "grid1"
    flags = {"sampler": "grid", "out": str(out), "heartbeat_interval": 1, "grace_period": 5}
    assert tune(config, [], flags, log=lambda m: None) == 0
    trials = load_study(out).get_trials()
    assert sorted((t.params["optimizer.lr"], t.params["model.hidden"]) for t in trials) == sorted(
        GRID_POINTS
    )
    assert states(load_study(out)) == {"COMPLETE": 6}
    # without --resume an existing study is not silently extended
    code, _, err = run_cli_in_process(capsys, "tune", "--config", config, "--out", str(out))
    assert code == 2 and "pass --resume to continue it" in err
    # resuming a finished grid runs nothing more
    code, _, err = run_cli_in_process(
        capsys, "tune", "--config", config, "--sampler", "grid", "--out", str(out), "--resume"
    )
    assert code == 0, err
    assert len(load_study(out).get_trials()) == 6
    # the same study name with another search space: a one-line error
    other = dict(GRID, **{"model.hidden": {"type": "categorical", "choices": [[16], [32]]}})
    config2 = search_config(tmp_path, fashion_dir, other, name="other.yaml")
    code, _, err = run_cli_in_process(
        capsys, "tune", "--config", config2, "--sampler", "grid", "--out", str(out), "--resume"
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "already exists with another search space (differs in: model.hidden)" in lines[0]


def test_coarse_to_fine_second_round_searches_the_narrowed_space(tmp_path, fashion_dir):
    from nnparts.tune.run import tune

    search = {
        "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    }
    config = search_config(
        tmp_path, fashion_dir, search,
        tune={"refine": {"top_k": 2, "margin": 0.1, "trials": 3}, "figures": False},
    )  # fmt: skip
    out = tmp_path / "c2f"
    lines = []
    flags = {"sampler": "random", "trials": 5, "out": str(out), "heartbeat_interval": 1,
             "grace_period": 5}  # fmt: skip
    assert tune(config, [], flags, log=lines.append) == 0
    round1 = load_study(out)
    top = sorted((t for t in round1.get_trials() if t.value is not None),
                 key=lambda t: (-t.value, t.number))[:2]  # fmt: skip
    lrs = [np.log10(t.params["optimizer.lr"]) for t in top]
    drops = [t.params["model.dropout"] for t in top]
    saved = yaml.safe_load((out / "round2_space.yaml").read_text())
    assert saved["optimizer.lr"]["low"] == pytest.approx(10 ** max(-4, min(lrs) - 0.3))
    assert saved["optimizer.lr"]["high"] == pytest.approx(10 ** min(-1, max(lrs) + 0.3))
    assert saved["model.dropout"]["low"] == pytest.approx(max(0.0, min(drops) - 0.05))
    assert saved["model.dropout"]["high"] == pytest.approx(min(0.5, max(drops) + 0.05))
    assert any("round 2" in line for line in lines)  # the narrowed space is printed
    round2 = load_study(out, "search.round2").get_trials()
    assert len(round2) == 3 and all(t.state.name == "COMPLETE" for t in round2)
    for t in round2:
        assert (
            saved["optimizer.lr"]["low"]
            <= t.params["optimizer.lr"]
            <= saved["optimizer.lr"]["high"]
        )
        assert (
            saved["model.dropout"]["low"]
            <= t.params["model.dropout"]
            <= saved["model.dropout"]["high"]
        )
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["round"] for r in rows] == ["1"] * 5 + ["2"] * 3


# -- a killed worker ------------------------------------------------------------------------------
def kill_config(tmp_path, fashion_dir, epochs=48):
    # trials of a second or more: 4-epoch ones took 0.1-0.4 s on an AVX-512 machine, so a trial
    # seen running could finish before the SIGKILL reached its worker
    search = {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    return search_config(
        tmp_path,
        fashion_dir,
        search,
        tune={"figures": False},
        data={"train_subset": 2500, "val_size": 300},
        model={"hidden": [48]},
        train={"epochs": epochs, "batch_size": 50},
    )


def running_trial_of(study, pids, min_seconds=0.3):
    """A RUNNING trial whose worker is one of ``pids`` and that has run for ``min_seconds``."""
    import datetime

    for t in study.get_trials(deepcopy=False):
        worker = t.user_attrs.get("worker", "")
        pid = int(worker.rsplit(":", 1)[1]) if ":" in worker else None
        if t.state.name == "RUNNING" and pid in pids and t.datetime_start is not None:
            age = (datetime.datetime.now() - t.datetime_start).total_seconds()
            if age >= min_seconds:
                return t, pid
    return None, None


def check_after_kill(study, requested, killed_number):
    trials = study.get_trials()
    counts = states(study)
    assert counts.get("COMPLETE") == requested, counts  # none lost, none counted twice
    assert counts.get("RUNNING", 0) == 0 and counts.get("WAITING", 0) == 0, counts
    killed = trials[killed_number]
    assert killed.state.name == "FAIL"  # failed by the heartbeat check, not left RUNNING
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == killed.params  # the same point, run again
    assert counts.get("FAIL") == 1


def test_embedded_two_workers_survive_a_sigkilled_worker(tmp_path, fashion_dir, capfd):
    import threading

    from nnparts.tune.run import tune

    config = kill_config(tmp_path, fashion_dir)
    out = tmp_path / "kill"
    requested = 5
    lines, codes = [], []
    flags = {"sampler": "random", "trials": requested, "workers": 2, "out": str(out),
             "heartbeat_interval": 1, "grace_period": 3}  # fmt: skip
    parent = threading.Thread(
        target=lambda: codes.append(tune(config, [], flags, log=lines.append))
    )
    parent.start()  # this process is the parent; it starts two worker processes
    victim = number = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and parent.is_alive():
        time.sleep(0.2)
        if not study_started(out):
            continue
        try:
            t, pid = running_trial_of(load_study(out), set(_children(os.getpid())))
        except Exception:  # the study is being created
            continue
        if t is not None:
            victim, number = pid, t.number
    assert victim is not None, "no running trial seen"
    os.kill(victim, signal.SIGKILL)  # in the middle of its trial
    parent.join(timeout=180)
    assert not parent.is_alive()
    assert codes == [0], lines
    assert any(f"pid {victim}) ended with signal 9" in line for line in lines), lines
    check_after_kill(load_study(out), requested, number)


def _children(pid):
    """Child processes of ``pid``, started from any of its threads."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return out


def test_options_round_trip_through_json():
    opts = Options(out="x", trials=3, sampler="grid", refine=True, margin=0.5)
    assert Options.from_json(opts.to_json()) == opts


# -- PostgreSQL: many workers on one study --------------------------------------------------------
PG_BIN = "/usr/lib/postgresql/15/bin"


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A PostgreSQL server: $NNPARTS_TEST_POSTGRES_URL (.ci/run starts one), else one started
    here from Debian's binaries (as the postgres user when run as root), else skip."""
    url = os.environ.get("NNPARTS_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import shutil

    bindir = next(
        (d for d in (PG_BIN, os.path.dirname(shutil.which("initdb") or "")) if d and
         os.path.exists(os.path.join(d, "initdb"))),
        None,
    )  # fmt: skip
    if bindir is None:
        pytest.skip("no PostgreSQL: set NNPARTS_TEST_POSTGRES_URL or apt-get install postgresql")
    import tempfile

    root = tempfile.mkdtemp(prefix="nnparts-pg-")  # not under pytest's root-only folder
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = os.path.join(root, "data")
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True)
    init = run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[:200]}")
    ctl = os.path.join(bindir, "pg_ctl")
    start = run(ctl, "-D", data, "-o", f"-h 127.0.0.1 -p {port} -k {root}", "-l",
                os.path.join(root, "log"), "-w", "-t", "30", "start")  # fmt: skip
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[:200]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_database(postgres_url):
    """A new, empty database on the server (Optuna's schema not yet created)."""
    import uuid

    psycopg = pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]'")
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url)
    name = f"nnparts_tune_{uuid.uuid4().hex[:10]}"
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL at {mask_url(postgres_url)} not usable: {e}")
    yield base.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgres_two_workers_at_the_same_instant_one_sigkilled(
    tmp_path, fashion_dir, fresh_database
):
    from nnparts.tune.run import START_AT_ENV, tune

    config = kill_config(tmp_path, fashion_dir)
    requested = 5
    # both workers open the fresh database at one instant: the schema race
    env = dict(os.environ, NNPARTS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", **{START_AT_ENV: str(time.time() + 6)})  # fmt: skip
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nnparts.tune.cli",
                "tune",
                "--config",
                config,
                "--storage",
                fresh_database,
                "--study",
                "dist",
                "--trials",
                str(requested),
                "--sampler",
                "random",
                "--worker",
                "--worker-index",
                str(i),
                "--heartbeat-interval",
                "1",
                "--grace-period",
                "3",
                "--out",
                str(tmp_path / f"w{i}"),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        victim, survivor = procs
        number = None
        deadline = time.time() + 120
        while number is None and time.time() < deadline and victim.poll() is None:
            time.sleep(0.2)
            try:
                study = optuna.load_study(study_name="dist", storage=fresh_database)
            except Exception:  # schema or study not created yet
                continue
            t, _ = running_trial_of(study, {victim.pid})
            if t is not None:
                number = t.number
        assert number is not None, victim.communicate()[1]
        victim.kill()  # SIGKILL in the middle of a trial
        victim.wait()
        out, err = survivor.communicate(timeout=180)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert survivor.returncode == 0, err  # no crash on CREATE TYPE, and it finished the study
    assert "Traceback" not in err
    study = optuna.load_study(study_name="dist", storage=fresh_database)
    check_after_kill(study, requested, number)
    # collect the results from the shared study (no new trials: it is complete)
    lines = []
    flags = {"storage": fresh_database, "study": "dist", "resume": True, "out": str(tmp_path / "r"),
             "sampler": "random"}  # fmt: skip
    assert tune(config, [], flags, log=lines.append) == 0
    assert len(study.get_trials()) == requested + 1
    assert (tmp_path / "r" / "best.yaml").exists()
    assert any(line.startswith("optuna-dashboard") or "optuna-dashboard postgresql+psycopg://"
               in line for line in lines)  # fmt: skip


def _sigint_default():
    # pytest-xdist's workers ignore SIGINT, and an ignored signal stays ignored across exec:
    # the child would never see the Ctrl-C (its study ran to the end and it exited with 0 in
    # CI), as a job started in the background of a shell script; a terminal's Ctrl-C is default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_a_trial(config, out, requested):
    """Start ``nnparts tune``, send Ctrl-C while a trial other than the last runs; return the
    finished process, its output and the number of the trial seen running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnparts.tune.cli", "tune", "--config", config, "--sampler",
         "random", "--trials", str(requested), "--out", str(out)],
        cwd=REPO, env=dict(os.environ, NNPARTS_NUM_THREADS="1"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default,
    )  # fmt: skip
    try:
        number = None
        deadline = time.time() + 120
        while number is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if not study_started(out):
                continue
            try:
                t, _ = running_trial_of(load_study(out), {proc.pid})
            except Exception:
                continue
            if t is not None and t.number < requested - 1:
                # not the last trial: had it ended before the Ctrl-C, the study would have
                # finished and the worker exited with 0; an earlier one that ends first leaves
                # the next one to be interrupted (the failed trial is found below)
                number = t.number
        if number is None:  # say why: a worker that exited left its error on stderr
            stderr = proc.communicate(timeout=60)[1] if proc.poll() is not None else ""
            raise AssertionError(
                f"no running trial seen (worker exit code {proc.poll()}; a finished study means "
                f"the trials ran faster than the polling); the worker's stderr: {stderr[-3000:]}"
            )
        proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of a trial
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, stdout, stderr, number


def test_ctrl_c_stops_cleanly_and_resume_finishes_the_study(tmp_path, fashion_dir):
    from nnparts.tune.run import tune

    # trials of a few seconds: on a fast, idle machine 4-epoch trials could end between the
    # moment one is seen running and the Ctrl-C, and the last one then exits with 0; 16-epoch
    # trials (under a second each on an AVX2 machine) could all end between two polls of the
    # study, so none was ever seen running
    config = kill_config(tmp_path, fashion_dir)
    requested = 4
    out = tmp_path / "interrupt"
    proc, stdout, stderr, number = _interrupt_a_trial(config, out, requested)
    assert proc.returncode == 130, stderr
    assert "interrupted: every finished trial is kept" in stdout
    trials = load_study(out).get_trials()
    failed = [t.number for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0] >= number, (failed, number)
    number = failed[0]
    queued = [t for t in trials if t.state.name == "WAITING"]
    assert len(queued) == 1 and queued[0].params == trials[number].params
    done_before = {t.number for t in trials if t.state.name == "COMPLETE"}
    flags = {"resume": True, "out": str(out), "sampler": "random"}
    assert tune(config, [], flags, log=lambda m: None) == 0
    study = load_study(out)
    assert states(study) == {"COMPLETE": requested, "FAIL": 1}
    assert done_before <= {t.number for t in study.get_trials() if t.state.name == "COMPLETE"}
    assert study.get_trials()[queued[0].number].state.name == "COMPLETE"  # the retry ran


@pytest.mark.parametrize("recipe", ["search-mlp", "search-grid", "search-cv"])
def test_example_search_configs_are_valid(recipe):
    from nnparts.train import config as configs
    from nnparts.tune.run import make_options, split_config
    from nnparts.tune.search import check_options

    base, search, tune_section = split_config(os.path.join(REPO, "recipes", f"{recipe}.yaml"))
    space = SearchSpace.parse(search, base, {})
    opts = make_options(tune_section, {}, configs.resolve(base)["seed"])
    check_options(opts)
    build_sampler(opts.sampler, space, 0)


def test_a_trial_that_learns_slowly_completes_and_is_not_called_diverged(tmp_path, fashion_dir):
    from nnparts.tune.run import tune

    # lr 1e-7 barely moves in 300 steps: the divergence guard's accuracy-at-chance rule (after
    # 200 steps) would stop it, but a slow trial is a result of the search, not a divergence
    search = {"optimizer.lr": {"type": "categorical", "choices": [1e-7]}}
    config = search_config(tmp_path, fashion_dir, search, tune={"figures": False},
                           train={"epochs": 3, "batch_size": 8})  # fmt: skip
    out = tmp_path / "slow"
    flags = {"sampler": "grid", "out": str(out)}
    assert tune(config, [], flags, log=lambda m: None) == 0
    (trial,) = load_study(out).get_trials()
    assert trial.state.name == "COMPLETE" and "diverged" not in trial.user_attrs
    assert trial.value < 0.3  # chance-level, reported as the trial's value
