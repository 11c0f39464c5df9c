"""Export to safetensors: the torch twin of the default MLP and of recipes/cnn.yaml loads the
file with load_state_dict (strict) and gives the same logits."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import TINY, assert_error, nnparts, snapshot

from nnparts.train import checkpoint as ckpt
from nnparts.train import config as configs
from nnparts.train.models import build_model
from nnparts.train.trainer import load_model_state, predict

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def read_safetensors(path):
    """An independent reader of the format: u64 LE header length, JSON header, raw bytes."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0  # the header is padded to 8 bytes
    header = json.loads(raw[8 : 8 + n])
    metadata = header.pop("__metadata__")
    kinds = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    tensors = {}
    end_of_data = 0
    for name, info in header.items():
        begin, end = info["data_offsets"]
        end_of_data = max(end_of_data, end)
        tensors[name] = np.frombuffer(raw[8 + n + begin : 8 + n + end], kinds[info["dtype"]])
        tensors[name] = tensors[name].reshape(info["shape"])
    assert 8 + n + end_of_data == len(raw)
    return tensors, metadata


def torch_twin(torch, model_cfg):
    """The same architecture in torch.nn, layer for layer (so the Sequential indices match)."""
    tnn = torch.nn
    layers = [tnn.Flatten()] if model_cfg["name"] == "mlp" else []
    if model_cfg["name"] == "mlp":
        width = 784
        for hidden in model_cfg["hidden"]:
            layers += [tnn.Linear(width, hidden), tnn.BatchNorm1d(hidden), tnn.ReLU()]
            layers.append(tnn.Dropout(model_cfg["dropout"]))
            width = hidden
        layers.append(tnn.Linear(width, 10))
    else:
        channels, size = 1, 28
        for out in model_cfg["channels"]:
            layers += [tnn.Conv2d(channels, out, 3, padding=1, bias=False), tnn.BatchNorm2d(out)]
            layers += [tnn.ReLU(), tnn.MaxPool2d(2)]
            channels, size = out, size // 2
        layers += [
            tnn.Flatten(),
            tnn.Linear(channels * size * size, model_cfg["dense"]),
            tnn.ReLU(),
        ]
        layers += [tnn.Dropout(model_cfg["dropout"]), tnn.Linear(model_cfg["dense"], 10)]
    return tnn.Sequential(*layers)


@pytest.mark.parametrize("recipe", [None, "cnn.yaml"])
def test_torch_twin_loads_the_export_and_gives_the_same_logits(
    torch, fashion_dir, tmp_path, recipe
):
    config = ["--config", RECIPES / recipe] if recipe else []
    train = nnparts(
        "train", *config, *TINY, "--model.hidden", "[512, 256]", "--data.data_dir", fashion_dir,
        "--out", "run", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    result = nnparts(
        "export", "--checkpoint", "run/final.npz", "--out", "model.safetensors", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "wrote model.safetensors" in result.stdout

    tensors, metadata = read_safetensors(tmp_path / "model.safetensors")
    cfg = configs.resolve({"model": json.loads(metadata["nnparts_model"])})
    assert cfg["model"]["name"] == ("cnn" if recipe else "mlp")
    twin = torch_twin(torch, cfg["model"]).float()
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    twin.load_state_dict(state, strict=True)  # every key, every shape, nothing left over
    bn = "1" if recipe else "2"
    assert int(state[f"{bn}.num_batches_tracked"]) == 2  # two training steps (150 images)
    assert not np.allclose(tensors[f"{bn}.running_var"], 1)  # real statistics, not the init

    model_state, _, meta = ckpt.load(tmp_path / "run" / "final.npz")
    ours = build_model(cfg["model"])
    load_model_state(ours, model_state)
    x = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    expected = predict(ours, x)
    twin.eval()
    with torch.no_grad():
        got = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert json.loads(metadata["nnparts_normalization"]) == meta["normalization"]


def test_export_refuses_to_overwrite_and_names_the_fix(fashion_dir, tmp_path):
    train = nnparts("train", *TINY, "--data.data_dir", fashion_dir, "--out", "run", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    (tmp_path / "model.safetensors").write_bytes(b"mine")
    before = snapshot(tmp_path)
    base = ["export", "--checkpoint", "run/final.npz", "--out"]
    result = nnparts(*base, "model.safetensors", cwd=tmp_path)
    assert_error(result, 2, "--out model.safetensors already exists", "--overwrite")
    result = nnparts(*base, "run", cwd=tmp_path)
    assert_error(result, 2, "--out run is a directory", "run/model.safetensors")
    result = nnparts(*base, "nowhere/model.safetensors", cwd=tmp_path)
    assert_error(result, 2, "nowhere does not exist", "create it")
    result = nnparts("export", "--checkpoint", "run/nope.npz", "--out", "m.st", cwd=tmp_path)
    assert_error(result, 2, "checkpoint run/nope.npz does not exist")
    assert snapshot(tmp_path) == before
    result = nnparts(*base, "model.safetensors", "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_safetensors(tmp_path / "model.safetensors")[0]["1.weight"].shape == (16, 784)
