"""The lab's outputs: PNG figures, ``results.json`` and a self-contained ``index.html``.

The page needs no network and no script: a summary table of claims and verdicts at the top,
then one section per experiment (claim, setup, figures, numbers per seed and their mean, the
verdict with its rule and which checks held, wall time). It knows nothing of any one claim.
"""

from __future__ import annotations

import html
import json
import os
import platform
import sys
import time

import numpy as np

import nnparts
from nnparts.train.metrics import jsonable

VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "no", "mixed": "mixed"}


def versions() -> dict:
    import matplotlib

    return {
        "nnparts": nnparts.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _atomic_write(path: str, text: str):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def save_figures(result, out: str) -> dict[str, str]:
    """Write each matplotlib figure of ``result`` as ``out/figures/<name>-<fig>.png``; returns
    the paths relative to ``out``."""
    folder = os.path.join(out, "figures")
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for fig_name, fig in result.figures.items():
        rel = f"figures/{result.name}-{fig_name}.png"
        tmp = os.path.join(out, rel + f".tmp{os.getpid()}.png")
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, os.path.join(out, rel))
        paths[fig_name] = rel
    result.figure_paths = paths
    return paths


def results_document(results: list, quick: bool, seconds: float, kept=(), order=None) -> dict:
    """The ``results.json`` document. ``kept``: experiment entries (dicts) of an earlier report
    to keep beside the new results (the new ones replace entries of the same name); ``order``
    maps a name to its place on the page."""
    entries = {e["name"]: e for e in kept}
    for r in results:
        entries[r.name] = jsonable(r.as_dict())
    experiments = sorted(entries.values(), key=lambda e: (order or {}).get(e["name"], 1e9))
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": quick,
        "seconds": seconds
        + sum(e["seconds"] for e in kept if e["name"] not in {r.name for r in results}),
        "versions": versions(),
        "summary": {v: sum(e["verdict"] == v for e in experiments) for v in VERDICT_CLASS},
        "experiments": experiments,
    }


def read_kept(out: str, quick: bool) -> list[dict]:
    """The experiment entries of ``out/results.json`` (for ``lab run --update``); refuses a
    report of the other mode (quick vs full), whose numbers are not comparable."""
    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        experiments = list(doc["experiments"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a results.json written by nnparts lab ({e})") from None
    if bool(doc.get("quick")) != bool(quick):
        mode = "quick" if doc.get("quick") else "full"
        raise ValueError(
            f"{path} holds a {mode} run; --update adds to a report of the same mode: "
            f"{'add' if mode == 'quick' else 'drop'} --quick, or choose another --out"
        )
    return experiments


def write(results: list, out: str, quick: bool, seconds: float, kept=(), order=None) -> dict:
    """Write figures, ``results.json`` and ``index.html`` into ``out``; return the document.

    Figures already saved (``result.figure_paths``) are not drawn again.
    """
    os.makedirs(out, exist_ok=True)
    for r in results:
        if r.figures and not r.figure_paths:
            save_figures(r, out)
    doc = results_document(results, quick, seconds, kept, order)
    _atomic_write(os.path.join(out, "results.json"), json.dumps(doc, indent=1) + "\n")
    _atomic_write(os.path.join(out, "index.html"), render_html(doc))
    return doc


# -- the page ------------------------------------------------------------------------------------
CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.7em} h2{margin-top:2.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .55em;
text-align:left;vertical-align:top;font-size:.92em} th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;padding:.1em .5em;border-radius:4px;white-space:nowrap}
.ok{background:#d7f5dd;color:#135d26}.no{background:#fbdcdc;color:#7b1616}
.mixed{background:#fdf0c9;color:#6b4f00}
.hold{color:#135d26}.fail{color:#7b1616}
figure{margin:.8em 0} figure img{max-width:100%;border:1px solid #eee}
.meta{color:#666;font-size:.9em} dt{font-weight:600;margin-top:.4em} dd{margin-left:1.2em}
.rule{background:#f8f8f8;border-left:3px solid #999;padding:.4em .8em}
"""


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        if len(v) > 8:
            return f"[{len(v)} values]"
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _e(text) -> str:
    return html.escape(str(text))


def _numbers_table(per_seed: list, mean: list) -> str:
    keys: list[str] = []
    for row in per_seed:
        for k, v in row.items():
            if k in ("group", "seed") or k in keys:
                continue
            if isinstance(v, (list, dict)) and not (isinstance(v, list) and len(v) <= 8):
                continue
            keys.append(k)
    has_group = any(r.get("group") is not None for r in per_seed)
    head = (["group"] if has_group else []) + ["seed"] + keys
    rows = []
    for r in per_seed:
        cells = ([r.get("group")] if has_group else []) + [r.get("seed")] + [r.get(k) for k in keys]
        rows.append(cells)
    if len({r.get("seed") for r in per_seed}) > 1:
        for m in mean:
            cells = [m.get("group")] if has_group else []
            cells.append("mean ± sd")
            for k in keys:
                if k in m and isinstance(m[k], (int, float)):
                    sd = m.get(k + "_std", 0.0)
                    cells.append(f"{_fmt(m[k])} ± {_fmt(sd)}" if sd else _fmt(m[k]))
                else:
                    cells.append("")
            rows.append(cells)
    return _table(head, rows)


def _table(head, rows) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        tds = []
        for v in row:
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            tds.append(f"<td{cls}>{_e(_fmt(v))}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _verdict(v: str) -> str:
    return f'<span class="verdict {VERDICT_CLASS.get(v, "mixed")}">{_e(v)}</span>'


def _rule_details(rule: dict, details: list) -> str:
    rows = []
    for d in details:
        where = " ".join(
            str(x)
            for x in (d.get("group"), f"seed {d['seed']}" if d["seed"] != "mean" else "mean")
            if x is not None
        )
        checks = "; ".join(
            f'<span class="{"hold" if c["holds"] else "fail"}">{_e(c["text"])}: '
            f"{_e(_fmt(c['left']))} vs {_e(_fmt(c['right']))} "
            f"({'holds' if c['holds'] else 'fails'})</span>"
            for c in d["checks"]
        )
        rows.append(f"<li>{_e(where)}: {checks}</li>")
    return "<ul>" + "\n".join(rows) + "</ul>"


def render_html(doc: dict) -> str:
    exps = doc["experiments"]
    s = doc["summary"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>nnparts lab: the course's claims, reproduced</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>nnparts lab: the course's claims on real data</h1>",
        f"<p class='meta'>{len(exps)} experiments; {s['reproduced']} reproduced, "
        f"{s['not reproduced']} not reproduced, {s['mixed']} mixed. "
        f"{'Quick run (smaller data, fewer epochs). ' if doc['quick'] else ''}"
        f"Total {doc['seconds']:.0f} s on {_e(doc['versions']['processor'])}; "
        f"nnparts {_e(doc['versions']['nnparts'])}, numpy {_e(doc['versions']['numpy'])}, "
        f"generated {_e(doc['generated'])}. Every verdict is computed from the numbers by the "
        "rule shown with it, stated before the run.</p>",
        "<table><tr><th>claims</th><th>experiment</th><th>claim</th><th>verdict</th>"
        "<th>seconds</th></tr>",
    ]
    for e in exps:
        parts.append(
            f"<tr><td>{_e(', '.join(map(str, e['claims'])))}</td>"
            f"<td><a href='#{_e(e['name'])}'>{_e(e['name'])}</a></td><td>{_e(e['claim'])}</td>"
            f"<td>{_verdict(e['verdict'])}</td><td class='num'>{e['seconds']:.1f}</td></tr>"
        )
    parts.append("</table>")
    for e in exps:
        parts.append(
            f"<section id='{_e(e['name'])}'><h2>{_e(e['name'])} "
            f"<span class='meta'>claims {_e(', '.join(map(str, e['claims'])))}, unit "
            f"{_e(e['unit'])}</span></h2>"
        )
        parts.append(
            "<dl>"
            f"<dt>Claim</dt><dd>{_e(e['claim'])} <span class='meta'>[{_e(e['source'])}]</span></dd>"
            f"<dt>Setup</dt><dd>{_e(e['setup'])}</dd>"
            f"<dt>Measured</dt><dd>{_e(e['measures'])}</dd></dl>"
        )
        for path in e["figures"]:
            parts.append(
                f"<figure><img src='{_e(path)}' alt='{_e(e['name'])} figure' loading='lazy'>"
                "</figure>"
            )
        parts.append("<h3>Numbers</h3>")
        parts.append(_numbers_table(e["numbers"]["per_seed"], e["numbers"]["mean"]))
        for name, t in e.get("tables", {}).items():
            parts.append(f"<p class='meta'>{_e(name)}</p>")
            parts.append(_table(t["columns"], t["rows"]))
        for note in e.get("notes", []):
            parts.append(f"<p>{_e(note)}</p>")
        rule = e["rule"]
        parts.append(
            f"<div class='rule'><p>Verdict: {_verdict(e['verdict'])} — reproduced if "
            f"{_e(rule['text'])}; not reproduced if it holds on none; mixed otherwise."
            + (f"<br><span class='meta'>{_e(rule['note'])}</span>" if rule.get("note") else "")
            + "</p>"
            + _rule_details(rule, e["rule_details"])
            + f"<p class='meta'>seeds {_e(_fmt(e['seeds']))}; {e['seconds']:.1f} s</p></div>"
        )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
