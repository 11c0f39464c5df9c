"""Test helpers for optimizer state: a state_dict saved and loaded as a checkpoint would be."""

import io
import json

import numpy as np


def save_and_load(state_dict):
    """Flatten arrays into an in-memory .npz and the rest into JSON, then rebuild."""
    arrays, meta = {}, {}

    def split(obj, prefix):
        if isinstance(obj, dict):
            return {k: split(v, f"{prefix}/{k}") for k, v in obj.items()}
        if isinstance(obj, np.ndarray):
            arrays[prefix] = obj
            return {"__array__": prefix}
        return obj

    meta = json.loads(json.dumps(split(state_dict, "")))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    loaded = np.load(buf)

    def join(obj):
        if isinstance(obj, dict):
            if set(obj) == {"__array__"}:
                return loaded[obj["__array__"]]
            return {k: join(v) for k, v in obj.items()}
        return obj

    return join(meta)
