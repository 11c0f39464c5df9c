"""The lab's engine: verdict rules, the run, results.json, the report page in a real browser."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnparts import lab
from nnparts.lab.engine import Check, Context, Experiment, LabError, Rule, mean_records
from nnparts.train.metrics import jsonable

ROOT = Path(__file__).resolve().parent.parent


def recs(*rows, group=None):
    return [{"group": group, "seed": i, **r} for i, r in enumerate(rows)]


# -- checks and rules ------------------------------------------------------------------------
def test_check_operators_constants_and_other_numbers():
    n = {"a": 2.0, "b": 1.0}
    assert Check("a", ">", 1.5).evaluate(n)[0]
    assert not Check("a", "<", 1.5).evaluate(n)[0]
    assert Check("a", ">", "b").evaluate(n)[0]
    assert Check("a", ">=", "b", factor=2).evaluate(n)[0]
    assert not Check("a", ">", "b", factor=2).evaluate(n)[0]
    assert Check("a", "<", "b", offset=1.5).evaluate(n)[0]
    assert Check("a", "~", 2.05, tol=0.1).evaluate(n)[0]
    assert not Check("a", "~", 2.2, tol=0.1).evaluate(n)[0]
    assert Check("a", "==", 2).evaluate(n)[0]
    assert not Check("a", ">", 0).evaluate({"a": float("nan")})[0]  # NaN never holds


def test_check_text_shows_the_threshold():
    assert Check("loss_he", "<", "loss_xavier").text() == "loss_he < loss_xavier"
    assert Check("dead", ">", "dead_leaky", factor=2).text() == "dead > 2 * dead_leaky"
    assert Check("acc", ">=", 0.95).text() == "acc >= 0.95"


def test_bad_declarations_are_refused():
    with pytest.raises(LabError, match="unknown check operator"):
        Check("a", "=>", 1)
    with pytest.raises(LabError, match="at least one Check"):
        Rule()
    with pytest.raises(LabError, match="over="):
        Rule(Check("a", ">", 1), over="median")


def test_rule_over_seeds_gives_each_verdict():
    rule = Rule(Check("acc", ">=", 0.9), Check("loss", "<", "loss_base"))
    good = {"acc": 0.95, "loss": 0.1, "loss_base": 0.5}
    bad = {"acc": 0.5, "loss": 0.1, "loss_base": 0.5}
    half = {"acc": 0.95, "loss": 0.9, "loss_base": 0.5}  # one check fails
    assert rule.verdict(recs(good, good, good))[0] == "reproduced"
    assert rule.verdict(recs(bad, half, bad))[0] == "not reproduced"
    verdict, details = rule.verdict(recs(good, half, good))
    assert verdict == "mixed"
    assert [d["holds"] for d in details] == [True, False, True]
    assert details[1]["checks"][1]["holds"] is False


def test_rule_over_mean_uses_each_groups_mean():
    rule = Rule(Check("gain", ">", 0), over="mean")
    a = recs({"gain": 1.0}, {"gain": -0.5}, {"gain": 0.8}, group="fashion-mnist")  # mean > 0
    b = recs({"gain": -1.0}, {"gain": 0.2}, {"gain": -0.1}, group="mnist-5k")  # mean < 0
    assert rule.verdict(a)[0] == "reproduced"
    assert rule.verdict(b)[0] == "not reproduced"
    verdict, details = rule.verdict(a + b)
    assert verdict == "mixed"
    assert [d["group"] for d in details] == ["fashion-mnist", "mnist-5k"]


def test_mean_records_mean_and_sd_per_group():
    m = mean_records(recs({"x": 1.0, "tag": "a"}, {"x": 3.0, "tag": "b"}))
    assert m[0]["x"] == 2.0 and m[0]["x_std"] == pytest.approx(math.sqrt(2))
    assert "tag" not in m[0] and m[0]["n_seeds"] == 2


def test_rule_names_a_missing_number():
    with pytest.raises(LabError, match="'acc'.*did not record"):
        Rule(Check("acc", ">", 0)).verdict(recs({"loss": 1.0}))
    with pytest.raises(LabError, match="no numbers"):
        Rule(Check("acc", ">", 0)).verdict([])


# -- registry and running ----------------------------------------------------------------------
def test_every_experiment_is_declared_completely():
    assert len(lab.REGISTRY) >= 1
    for e in lab.REGISTRY.values():
        assert e.claims and all(1 <= c <= 45 for c in e.claims), e.name
        for field in (e.claim, e.source, e.setup, e.measures):
            assert isinstance(field, str) and len(field) > 10, (e.name, field)
        assert e.seeds >= 1
        assert e.name == e.name.lower() and " " not in e.name
        assert "reproduced if" in e.describe()


def test_unknown_names_suggest_close_ones():
    with pytest.raises(LabError, match="did you mean conv-arithmetic"):
        lab.get("conv-arithmetik")
    with pytest.raises(LabError, match="nnparts lab list"):
        lab.select(["no-such-experiment"])


def test_select_by_unit_and_all_keeps_registry_order():
    everything = lab.select("all")
    assert [e.order for e in everything] == sorted(e.order for e in everything)
    cnn = lab.select("cnn")
    assert cnn and all(e.unit == "cnn" for e in cnn)


def _toy_experiment(fn, rule):
    return Experiment(
        name="toy",
        unit="test",
        claims=[1],
        claim="c" * 20,
        source="s" * 20,
        setup="s" * 20,
        measures="m" * 20,
        rule=rule,
        fn=fn,
        seeds=3,
    )


def test_run_experiment_computes_the_verdict_from_recorded_numbers():
    def fn(ctx):
        for seed in ctx.seeds:
            ctx.record(seed, value=float(seed))  # 0, 1, 2
        fig, ax = ctx.figure("line")
        ax.plot([0, 1])

    exp = _toy_experiment(fn, Rule(Check("value", ">=", 1)))
    result = lab.run_experiment(exp)
    assert result.verdict == "mixed"
    assert [r["value"] for r in result.records] == [0.0, 1.0, 2.0]
    assert set(result.figures) == {"line"}
    assert lab.run_experiment(exp, seeds=1).verdict == "not reproduced"
    with pytest.raises(LabError, match="seeds must be >= 1"):
        lab.run_experiment(exp, seeds=0)


def test_context_pick_and_seeded_streams():
    ctx = Context(_toy_experiment(lambda c: None, Rule(Check("x", ">", 0))), [0, 1], quick=True)
    assert ctx.pick(100, 10) == 10
    a, b = ctx.rng(0).random(3), ctx.rng(0).random(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ctx.rng(0).random(3), ctx.rng(0, stream=1).random(3))
    assert not np.array_equal(ctx.rng(0).random(3), ctx.rng(1).random(3))


def test_python_api_returns_result_without_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = lab.run("conv-arithmetic", quick=True)
    assert isinstance(result, lab.Result)
    assert result.verdict in lab.VERDICTS
    from matplotlib.figure import Figure

    assert all(isinstance(f, Figure) for f in result.figures.values())
    assert list(tmp_path.iterdir()) == []


def test_json_has_no_nan_literals(tmp_path):
    doc = jsonable({"a": float("nan"), "b": [np.float32(1.5), np.int64(2)], "c": np.bool_(1)})
    assert doc == {"a": "nan", "b": [1.5, 2], "c": True}
    json.dumps(doc, allow_nan=False)


# -- the quick run of every experiment, end to end (as CI runs it) -------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    proc = subprocess.run(
        [sys.executable, "-m", "nnparts.cli", "lab", "run", "all", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    return out, proc


def test_quick_run_reports_every_experiment(quick_run):
    out, proc = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    doc = json.loads((out / "results.json").read_text())
    names = [e["name"] for e in doc["experiments"]]
    assert names == [e.name for e in lab.select("all")]
    for e in doc["experiments"]:
        assert e["verdict"] in lab.VERDICTS, e["name"]
        assert isinstance(e["claims"], list) and all(isinstance(c, int) for c in e["claims"])
        assert e["rule"]["text"] and e["numbers"]["per_seed"], e["name"]
        assert e["figures"], f"{e['name']} has no figure"
        for path in e["figures"]:
            assert not os.path.isabs(path)
            assert (out / path).stat().st_size > 1000, path
        assert e["seconds"] >= 0
        # one line per experiment as it finishes: name, verdict, seconds
        assert any(
            line.startswith(e["name"]) and e["verdict"] in line for line in proc.stdout.splitlines()
        )
    assert doc["quick"] is True and doc["versions"]["nnparts"]
    # every claim of LAB.md part 1 that has an experiment appears in the summary
    covered = {c for e in doc["experiments"] for c in e["claims"]}
    html = (out / "index.html").read_text()
    for e in doc["experiments"]:
        assert f"id='{e['name']}'" in html
    assert covered


TIMING = re.compile(r"seconds|exponent|wall|time")  # wall-clock measurements vary by design


def _numbers_without_timing(doc):
    return {
        e["name"]: [
            {k: v for k, v in r.items() if not TIMING.search(k)} for r in e["numbers"]["per_seed"]
        ]
        for e in doc["experiments"]
    }


def test_same_seed_same_numbers(quick_run, tmp_path):
    """A second quick run with the same seeds gives the same numbers (timings aside)."""
    out, proc = quick_run
    assert proc.returncode == 0
    first = json.loads((out / "results.json").read_text())
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnparts.cli",
            "lab",
            "run",
            "all",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((tmp_path / "results.json").read_text())
    a, b = _numbers_without_timing(first), _numbers_without_timing(second)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    for e1, e2 in zip(first["experiments"], second["experiments"]):
        if not any(TIMING.search(c["left"]) for c in e1["rule"]["checks"]):
            assert e1["verdict"] == e2["verdict"], e1["name"]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_page_in_a_headless_browser(quick_run):
    out, proc = quick_run
    assert proc.returncode == 0
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    browser, driver_path = _chromium(), shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip(
            "no chromium + chromedriver on this machine (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={out / 'chrome-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((out / "index.html").as_uri())
        driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading='eager')")
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        images = driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            const imgs = Array.from(document.images);
            Promise.all(imgs.map(i => i.complete ? 0 : new Promise(r => {
                i.onload = r; i.onerror = r; }))).then(() =>
                done(imgs.map(i => [i.getAttribute('src'), i.naturalWidth])));"""
        )
        doc = json.loads((out / "results.json").read_text())
        n_figures = sum(len(e["figures"]) for e in doc["experiments"])
        assert len(images) == n_figures > 0
        assert all(width > 0 for _, width in images), [s for s, w in images if not w]
        summary = driver.execute_script(
            "return Array.from(document.querySelectorAll('table')[0].rows).slice(1)"
            ".map(r => [r.cells[1].innerText, r.cells[3].innerText])"
        )
        assert [name for name, _ in summary] == [e["name"] for e in doc["experiments"]]
        assert all(verdict in lab.VERDICTS for _, verdict in summary)
        sections = driver.execute_script("return document.querySelectorAll('section').length")
        assert sections == len(doc["experiments"])
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_cli_list_show_and_errors():
    def nnparts(*args):
        return subprocess.run(
            [sys.executable, "-m", "nnparts.cli", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    listed = nnparts("lab", "list")
    assert listed.returncode == 0
    for name, e in lab.REGISTRY.items():
        line = next(line for line in listed.stdout.splitlines() if line.startswith(name))
        assert e.unit in line and ",".join(map(str, e.claims)) in line
    shown = nnparts("lab", "show", "conv-arithmetic")
    assert shown.returncode == 0 and "verdict:" in shown.stdout and "claim:" in shown.stdout
    bad = nnparts("lab", "run", "no-such-thing", "--quick")
    assert bad.returncode == 2 and "unknown experiment" in bad.stderr
    assert "Traceback" not in bad.stderr
    seeds = nnparts("lab", "run", "conv-arithmetic", "--seeds", "0")
    assert seeds.returncode == 2 and "--seeds must be >= 1" in seeds.stderr


def test_update_keeps_the_other_experiments(tmp_path):
    def nnparts(*args):
        return subprocess.run(
            [sys.executable, "-m", "nnparts.cli", "lab", "run", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )

    out = str(tmp_path)
    assert nnparts("conv-arithmetic", "--quick", "--out", out).returncode == 0
    first = json.loads((tmp_path / "results.json").read_text())
    done = nnparts("softmax-overflow", "--quick", "--update", "--out", out)
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    names = [e["name"] for e in doc["experiments"]]
    assert sorted(names) == ["conv-arithmetic", "softmax-overflow"]
    assert names == [e.name for e in lab.select(names)]  # registry order
    kept = next(e for e in doc["experiments"] if e["name"] == "conv-arithmetic")
    assert kept == first["experiments"][0]
    assert (tmp_path / kept["figures"][0]).exists()
    # without --update the report holds only what ran
    assert nnparts("softmax-overflow", "--quick", "--out", out).returncode == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [e["name"] for e in doc["experiments"]] == ["softmax-overflow"]
    mixed = nnparts("softmax-overflow", "--update", "--out", out)  # a full run into a quick one
    assert mixed.returncode == 2 and "holds a quick run" in mixed.stderr
