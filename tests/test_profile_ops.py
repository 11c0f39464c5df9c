"""benchmarks/profile_ops.py: where a step's time goes, per op, beside PyTorch's."""

from __future__ import annotations

import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

import profile_ops  # noqa: E402


def test_convolutions_by_shape_and_the_torch_twin_beside_them(capsys, torch32):
    profile_ops.main(
        ["--model", "fast", "--batch-size", "16", "--steps", "4", "--shapes", "--torch"]
    )
    out = capsys.readouterr().out
    # the fast network's convolutions keyed by channels and map size, forward and backward
    for key in ("Conv2d(1->8 2x2 @28)", "Conv2d(8->32 3x3 @27)", "Conv2d(32->64 3x3 @13)"):
        assert re.search(re.escape(key) + r"\s+forward\s+\d", out), key
    assert re.search(r"Conv2d\(8->32 3x3 @27\)\s+backward\s+\d", out)
    assert not re.search(r"Conv2d\(1->8 2x2 @28\)\s+backward", out)  # frozen, input needs none
    assert re.search(r"interleaved blocks of 4 steps: nnparts [\d.]+ ms, torch [\d.]+ ms", out)
    assert "aten::convolution_backward" in out
    assert re.search(r"aten::mkldnn_convolution\s+\[\[16, 8, 27, 27\], \[32, 8, 3, 3\]\]", out)


def test_torch_twin_refused_up_front_for_models_without_one(capsys):
    with pytest.raises(SystemExit, match="no PyTorch twin of 'mlp'.*cnn, resnet, fast"):
        profile_ops.main(["--model", "mlp", "--steps", "1", "--torch"])
    assert "ms/step" not in capsys.readouterr().out  # refused before any step ran


def test_strided_and_pointwise_convolutions_have_keys_of_their_own(capsys):
    # the ResNet's downsampling 3x3 and 1x1 convolutions (stride 2) on the same input
    profile_ops.main(["--model", "resnet", "--batch-size", "4", "--steps", "2", "--shapes"])
    out = capsys.readouterr().out
    for key in ("Conv2d(32->64 3x3/2 @28)", "Conv2d(32->64 1x1/2 @28)", "Conv2d(32->32 3x3 @28)"):
        assert re.search(re.escape(key) + r"\s+forward\s+\d", out), key
