"""Checkpoints: one ``.npz`` file, no pickle, written atomically.

Layout of the file (a zip of ``.npy`` arrays, read with ``allow_pickle=False``):

* ``model/<name>`` — every parameter and buffer of the model's ``state_dict()``;
* ``state/<path>`` — the array leaves of the other states (optimizer, scheduler, data loader,
  random generators), flattened with ``/``-joined paths;
* ``__metadata__`` — UTF-8 JSON (as a uint8 array): format version, config, epoch, library
  versions, the non-array leaves of those states, and a SHA-256 of every array so a tampered
  file is detected.

The file is written to a temporary name in the same folder and renamed over the target, so an
interruption never leaves a half-written checkpoint and never destroys the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "nnparts-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, tampered with or from another model."""


def _flatten(obj, prefix, arrays, scalars):
    """Split a nested state into array leaves (for the npz) and JSON leaves."""
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                out_key = f"__int__{k}" if isinstance(k, (int, np.integer)) else str(k)
            else:
                out_key = k
            out[out_key] = _flatten(v, f"{prefix}/{out_key}", arrays, scalars)
        return out
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}/{i}", arrays, scalars) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(_unflatten(v, arrays) for v in obj["__tuple__"])
        return {
            (int(k[len("__int__") :]) if k.startswith("__int__") else k): _unflatten(v, arrays)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write_bytes(path, writer):
    """Call ``writer(file_object)`` on a temp file beside ``path``, then rename it over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path, model_state: dict, states: dict | None = None, metadata: dict | None = None):
    """Write a checkpoint atomically. ``states`` maps names to nested dicts of arrays/numbers."""
    arrays = {f"model/{k}": np.asarray(v) for k, v in model_state.items()}
    state_arrays: dict = {}
    json_states = _flatten(states or {}, "state", state_arrays, None)
    arrays.update(state_arrays)
    meta = dict(metadata or {})
    meta["format"] = FORMAT
    meta["states"] = json_states
    meta["model_keys"] = list(model_state)
    meta["sha256"] = _digest(arrays)
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    def writer(f):
        np.savez(f, __metadata__=blob, **arrays)

    atomic_write_bytes(path, writer)


def load(path) -> tuple[dict, dict, dict]:
    """Read a checkpoint -> ``(model_state, states, metadata)``; clear errors on bad files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if "__metadata__" not in names:
                raise CheckpointError(
                    f"{path} is not an nnparts checkpoint (no __metadata__ entry)"
                )
            arrays = {n: npz[n] for n in names}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e}); "
            "use another checkpoint (e.g. last.npz / best.npz) or retrain"
        ) from None
    try:
        meta = json.loads(arrays.pop("__metadata__").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata: {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {meta.get('format')!r}, expected {FORMAT!r}"
        )
    if _digest(arrays) != meta.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} failed its SHA-256 check: the arrays were modified after saving"
        )
    model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    states = _unflatten(meta.pop("states"), arrays)
    return model_state, states, meta
