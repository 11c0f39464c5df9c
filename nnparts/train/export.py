"""Export a checkpoint's weights for PyTorch as a ``.safetensors`` file.

The models of :mod:`nnparts.train.models` are ``Sequential`` stacks whose layers have PyTorch's
names (``1.weight``, ``2.running_mean``, ``2.num_batches_tracked``, ...), so the equivalent
``torch.nn.Sequential`` loads the file with ``load_state_dict`` and gives the same outputs. One
layout differs and is converted: ``Linear.weight`` is ``(in, out)`` here (``x @ W``) and
``(out, in)`` in PyTorch (``x @ W.T``), so it is transposed. Conv weights are already
``(out, in, kh, kw)``; BatchNorm's running statistics and ``num_batches_tracked`` (int64, 0-d)
are written as they are.

The safetensors format, written here by hand (https://github.com/huggingface/safetensors)::

    8 bytes     N, the header's length, unsigned little-endian
    N bytes     JSON: {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
                       "__metadata__": {str: str}}, padded with spaces to a multiple of 8
    rest        the tensors' bytes, little-endian, C order, at their offsets

Usage::

    nnparts export --checkpoint runs/cnn/final.npz --out runs/cnn/model.safetensors

    # in PyTorch
    from safetensors.torch import load_file
    torch_model.load_state_dict(load_file("runs/cnn/model.safetensors"))
"""

from __future__ import annotations

import json
import os

import numpy as np

from nnparts import nn
from nnparts.train import checkpoint as ckpt
from nnparts.train import config as configs
from nnparts.train.models import build_model
from nnparts.train.trainer import load_model_state

__all__ = ["export_checkpoint", "load_safetensors", "save_safetensors", "torch_state_dict"]

#: NumPy dtype -> safetensors dtype name.
DTYPES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}
_NUMPY = {name: dtype for dtype, name in DTYPES.items()}


def torch_state_dict(model) -> dict[str, np.ndarray]:
    """``model.state_dict()`` with PyTorch's layouts: every ``Linear`` weight transposed to
    ``(out_features, in_features)``; everything else as it is (C-contiguous copies)."""
    state = model.state_dict()
    linear = {
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }
    out = {}
    for key, value in state.items():
        value = np.asarray(value)
        if key in linear:
            value = value.T
        out[key] = np.ascontiguousarray(value)
    return out


def _encode(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None) -> bytes:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name, array in tensors.items():
        array = np.asarray(array)
        if array.dtype not in DTYPES:
            raise ValueError(f"cannot write {name} of dtype {array.dtype} to safetensors")
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": DTYPES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def save_safetensors(path, tensors: dict[str, np.ndarray], metadata=None) -> None:
    """Write ``tensors`` (name -> array) as a safetensors file, atomically (temp file + rename)."""
    blob = _encode(tensors, metadata)
    ckpt.atomic_write_bytes(path, lambda f: f.write(blob))


def load_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file -> ``(tensors, metadata)``; ValueError naming what is wrong."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file ({len(raw)} bytes)")
    n = int.from_bytes(raw[:8], "little")
    if 8 + n > len(raw):
        raise ValueError(f"{path}: truncated safetensors header ({n} bytes announced)")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt safetensors header: {e}") from None
    metadata = header.pop("__metadata__", {})
    data = memoryview(raw)[8 + n :]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = _NUMPY[info["dtype"]].newbyteorder("<")
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"])
        tensors[name] = array.astype(dtype.newbyteorder("="))
    return tensors, metadata


def export_checkpoint(checkpoint, out, overwrite: bool = False) -> dict:
    """Write the weights of ``checkpoint`` (a ``.npz`` from ``nnparts train --out``) to ``out``
    as safetensors with PyTorch's names and layouts; returns a summary (tensors, parameters,
    model). The model is rebuilt from the checkpoint's config, so a checkpoint that does not fit
    its config is refused, not exported."""
    out = os.fspath(out)
    if os.path.isdir(out):
        raise ckpt.CheckpointError(
            f"--out {out} is a directory; give a file name, e.g. --out {out}/model.safetensors"
        )
    if os.path.exists(out) and not overwrite:
        raise ckpt.CheckpointError(
            f"--out {out} already exists; choose another file name or add --overwrite"
        )
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ckpt.CheckpointError(
            f"--out {out}: the folder {parent} does not exist; create it or choose another path"
        )
    model_state, _, meta = ckpt.load(checkpoint)
    if not meta.get("config"):
        raise ckpt.CheckpointError(f"checkpoint {checkpoint} has no config in its metadata")
    cfg = configs.resolve(meta["config"])
    model = build_model(cfg["model"], (1, 28, 28), 10)
    load_model_state(model, model_state, checkpoint)
    tensors = torch_state_dict(model)
    metadata = {
        "format": "pt",
        "nnparts_model": json.dumps(cfg["model"]),
        "nnparts_normalization": json.dumps(meta.get("normalization")),
        "nnparts_checkpoint": os.path.basename(os.fspath(checkpoint)),
    }
    try:
        save_safetensors(out, tensors, metadata)
    except OSError as e:
        raise ckpt.CheckpointError(
            f"--out {out} cannot be written ({e.strerror or e}); choose a writable path"
        ) from None
    return {
        "tensors": len(tensors),
        "parameters": model.num_parameters(),
        "model": cfg["model"]["name"],
    }
