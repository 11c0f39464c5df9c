"""What a search leaves in its folder: best.yaml, trials.csv, metrics.json and four figures.

- ``best.yaml``: the best trial's complete training config (``nnparts train --config best.yaml``
  trains that trial again, same seed, same validation split).
- ``trials.csv``: one row per trial of every round (state, value, seconds, parameters).
- ``history.png``: validation accuracy per trial and the best so far.
- ``importance.png``: Optuna's parameter importances (fANOVA) of the first round.
- ``top2.png``: validation accuracy over the two most important parameters.
- ``curves.png``: the course's grid of learning curves (validation accuracy per epoch) of the
  top-N trials.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import yaml

from nnparts.train import config as configs
from nnparts.train.plots import _pyplot, _save


def write_text(path: str, text: str):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _finished(rounds):
    from optuna.trial import TrialState

    return [
        (r, t)
        for r, (study, _) in enumerate(rounds, start=1)
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
    ]


def best_of(rounds):
    done = _finished(rounds)
    if not done:
        return None
    return max(done, key=lambda rt: (rt[1].value, -rt[0], -rt[1].number))


def trials_csv(rounds) -> str:
    keys = []
    for _, space in rounds:
        keys += [k for k in space.entries if k not in keys]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["round", "number", "state", "value", "cv_sd", "seconds", "epochs", "worker", "retry_of"]
        + keys
    )
    for r, (study, space) in enumerate(rounds, start=1):
        for t in study.get_trials(deepcopy=False):
            values = space.decode(t.params) if t.params else {}
            w.writerow(
                [
                    r,
                    t.number,
                    t.state.name,
                    "" if t.value is None else repr(t.value),
                    t.user_attrs.get("cv_sd", ""),
                    f"{t.user_attrs['seconds']:.3f}" if "seconds" in t.user_attrs else "",
                    len(t.user_attrs.get("val_accuracy_curve", [])),
                    t.user_attrs.get("worker", ""),
                    t.system_attrs.get("failed_trial", ""),
                ]
                + [json.dumps(values[k]) if k in values else "" for k in keys]
            )
    return buf.getvalue()


def _label(values: dict) -> str:
    return ", ".join(
        f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
        for k, v in values.items()
    )


def plot_history(rounds, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    x0 = 0
    best, xs_best, ys_best = -np.inf, [], []
    for r, (study, _) in enumerate(rounds, start=1):
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        xs = [x0 + t.number for t in trials if t.value is not None]
        ys = [t.value for t in trials if t.value is not None]
        ax.scatter(xs, ys, s=18, label=f"round {r} trials" if len(rounds) > 1 else "trials")
        for x, y in zip(xs, ys):
            best = max(best, y)
            xs_best.append(x)
            ys_best.append(best)
        x0 += len(trials)
    ax.step(xs_best, ys_best, where="post", color="k", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("optimization history")
    ax.legend(loc="lower right")
    _save(fig, path)
    plt.close(fig)


def importances(study) -> dict:
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():  # "too few trials": the figure says what it can
            warnings.simplefilter("ignore", UserWarning)
            return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def plot_importance(imp: dict, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * max(1, len(imp))))
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names])
    ax.set_xlabel("importance (fANOVA, first round)")
    ax.set_title("parameter importances")
    _save(fig, path)
    plt.close(fig)


def _axis_values(values):
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=float), None
    labels = []
    for v in values:
        text = json.dumps(v)
        if text not in labels:
            labels.append(text)
    return np.asarray([labels.index(json.dumps(v)) for v in values], float), labels


def plot_top2(rounds, imp: dict, path):
    plt = _pyplot()
    done = _finished(rounds)
    keys = list(imp)[:2] or list(rounds[0][1].entries)[:2]
    fig, ax = plt.subplots(figsize=(6, 5))
    decoded = [rounds[r - 1][1].decode(t.params) for r, t in done]
    acc = [t.value for _, t in done]
    xs, xlabels = _axis_values([d.get(keys[0]) for d in decoded])
    if len(keys) > 1:
        ys, ylabels = _axis_values([d.get(keys[1]) for d in decoded])
    else:
        ys, ylabels = np.asarray(acc), None
    sc = ax.scatter(xs, ys, c=acc, cmap="viridis", s=40, edgecolors="k")
    fig.colorbar(sc, ax=ax, label="validation accuracy")
    ax.set_xlabel(keys[0])
    ax.set_ylabel(keys[1] if len(keys) > 1 else "validation accuracy")
    for axis, labels, key in ((ax.xaxis, xlabels, keys[0]), (ax.yaxis, ylabels, keys[-1])):
        if labels is not None:
            axis.set_ticks(range(len(labels)))
            axis.set_ticklabels(labels)
        elif rounds[0][1].entries.get(key, {}).get("log"):
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    ax.set_title("validation accuracy over the two most important parameters")
    _save(fig, path)
    plt.close(fig)


def plot_top_curves(rounds, n: int, path):
    plt = _pyplot()
    done = sorted(_finished(rounds), key=lambda rt: -rt[1].value)[:n]
    cols = min(4, max(1, len(done)))
    rows = max(1, -(-len(done) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for ax, (r, t) in zip(axes.ravel(), done):
        ax.set_visible(True)
        curve = t.user_attrs.get("val_accuracy_curve", [])
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3)
        values = rounds[r - 1][1].decode(t.params)
        ax.set_title(f"#{t.number} val {t.value:.3f}\n{_label(values)}", fontsize=7)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"validation accuracy per epoch, top {len(done)} trials")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def write_all(out, rounds, best_cfg, summary, top_n=12, log=print, figures=True) -> dict:
    """Write every result file; a figure that cannot be drawn is named in a warning."""
    os.makedirs(out, exist_ok=True)
    write_text(os.path.join(out, "trials.csv"), trials_csv(rounds))
    if len(rounds) > 1:
        write_text(
            os.path.join(out, "round2_space.yaml"),
            yaml.safe_dump(rounds[1][1].to_dict(), sort_keys=False),
        )
    written = ["trials.csv"]
    if best_cfg is not None:
        header = (
            f"# best trial of `nnparts tune`: round {summary['best']['round']}, trial "
            f"{summary['best']['number']}, validation accuracy {summary['best']['value']:.4f}\n"
            f"# train it again: nnparts train --config best.yaml\n"
        )
        write_text(os.path.join(out, "best.yaml"), header + configs.dump(best_cfg))
        written.append("best.yaml")
    if best_cfg is not None and figures:
        imp = importances(rounds[0][0])
        summary["importances"] = imp
        plots = [
            ("history.png", lambda p: plot_history(rounds, p)),
            ("importance.png", lambda p: plot_importance(imp, p) if imp else None),
            ("top2.png", lambda p: plot_top2(rounds, imp, p)),
            ("curves.png", lambda p: plot_top_curves(rounds, top_n, p)),
        ]
        for name, draw in plots:
            try:
                if name == "importance.png" and not imp:
                    continue
                draw(os.path.join(out, name))
                written.append(name)
            except Exception as e:  # a figure never costs the results
                log(f"warning: could not draw {name}: {e}")
    from nnparts.train.run import write_json

    write_json(os.path.join(out, "metrics.json"), summary)
    written.append("metrics.json")
    return {"written": written}
