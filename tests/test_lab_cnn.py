"""Claim 42's experiment: its rule, and its independent full-convolution gradient."""

import numpy as np
import pytest

from nnparts import lab
from nnparts.lab.cnn import full_convolution_grad


def test_rule_outcomes():
    rule = lab.get("conv-arithmetic").rule
    ok = {"max_size_error": 0, "max_backward_diff": 1e-15}
    size_off = {"max_size_error": 1, "max_backward_diff": 1e-15}
    grad_off = {"max_size_error": 0, "max_backward_diff": 1e-3}
    as_records = lambda *rows: [{"group": None, "seed": i, **r} for i, r in enumerate(rows)]
    assert rule.verdict(as_records(ok, ok, ok))[0] == "reproduced"
    assert rule.verdict(as_records(size_off, grad_off, size_off))[0] == "not reproduced"
    assert rule.verdict(as_records(ok, grad_off, ok))[0] == "mixed"


def test_full_convolution_grad_is_the_finite_difference_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    for padding in (0, 1):
        xt = torch.tensor(x, requires_grad=True)
        y = torch.nn.functional.conv2d(xt, torch.tensor(w), padding=padding)
        dy = rng.standard_normal(tuple(y.shape))
        y.backward(torch.tensor(dy))
        np.testing.assert_allclose(
            full_convolution_grad(dy, w, padding, 6), xt.grad.numpy(), atol=1e-12
        )


def test_densenet_rule_and_recipe_models_match_the_recipes():
    import yaml

    from nnparts.lab.cnn import RECIPE_MODELS

    rule = lab.get("densenet-vs-resnet").rule
    rec = lambda **kw: [{"group": None, "seed": 0, **kw}]  # noqa: E731
    assert (
        rule.verdict(
            rec(params_densenet=1e5, params_resnet=3e5, acc_densenet=0.9, acc_resnet=0.905)
        )[0]
        == "reproduced"
    )
    assert (
        rule.verdict(
            rec(params_densenet=1e5, params_resnet=3e5, acc_densenet=0.85, acc_resnet=0.9)
        )[0]
        == "not reproduced"
    )
    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "recipes"
    for name, section in RECIPE_MODELS.items():
        recipe = yaml.safe_load((root / f"{name}.yaml").read_text())["model"]
        assert recipe == section, name
