"""Newton, nonlinear conjugate gradient and L-BFGS (full batch, float64)."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts
import nnparts.functional as F
from nnparts import optim
from nnparts.nn import Parameter


def quadratic(n=6, seed=0):
    """f(x) = 1/2 x.A.x - b.x with a random SPD A (condition ~ 50)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.linspace(1.0, 50.0, n)) @ q.T
    b = rng.normal(size=n)
    x = Parameter(rng.normal(size=n))

    def closure():
        x.grad = None
        xt = x.reshape(1, n)
        loss = 0.5 * (xt @ nnparts.Tensor(a) @ x).sum() - (x * b).sum()
        loss.backward()
        return loss

    return x, closure, np.linalg.solve(a, b)


@pytest.mark.parametrize("hessian", ["cg", "dense"])
def test_newton_solves_quadratic_in_one_step(hessian):
    x, closure, solution = quadratic()
    opt = optim.Newton([x], hessian=hessian)
    assert not np.allclose(x.data, solution, atol=1e-3)
    opt.step(closure)
    np.testing.assert_allclose(x.data, solution, rtol=0, atol=1e-8)
    assert opt.state[id(x)]["n_iter"] == 1


def test_newton_does_not_climb_to_a_maximum():
    """f = x^4/4 - x^2/2 + 0.1 x near x=0 has H < 0: the raw Newton step would go uphill."""
    x = Parameter(np.array([0.05]))

    def closure():
        x.grad = None
        loss = (x**4 * 0.25 - x**2 * 0.5 + x * 0.1).sum()
        loss.backward()
        return loss

    for hessian in ("cg", "dense"):
        x.data[...] = 0.05
        opt = optim.Newton([x], hessian=hessian, max_iter=30)
        opt.step(closure)
        # the stationary points: roots of x^3 - x + 0.1; minima near -1.05 and 0.95
        assert x.data[0] == pytest.approx(-1.0466805318046005, abs=1e-7) or x.data[
            0
        ] == pytest.approx(0.9456492739235915, abs=1e-7)


def test_newton_on_rosenbrock_converges():
    x = Parameter(np.array([-1.2, 1.0]))

    def closure():
        x.grad = None
        a, b = x[0], x[1]
        loss = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        loss.backward()
        return loss

    opt = optim.Newton([x], max_iter=50)
    opt.step(closure)
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-6)


def test_conjugate_gradient_solves_quadratic_in_n_steps():
    n = 6
    x, closure, solution = quadratic(n, seed=3)
    opt = optim.ConjugateGradient([x], max_iter=1, line_search_fn="exact")
    for k in range(n):
        opt.step(closure)
        if k == n - 2:  # generic A: not yet there after n - 1 steps
            assert np.linalg.norm(x.data - solution) > 1e-6
    assert opt.state[id(x)]["n_iter"] == n
    np.testing.assert_allclose(x.data, solution, rtol=0, atol=1e-8)


def test_conjugate_gradient_strong_wolfe_on_rosenbrock():
    x = Parameter(np.array([-1.2, 1.0]))

    def closure():
        x.grad = None
        a, b = x[0], x[1]
        loss = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        loss.backward()
        return loss

    opt = optim.ConjugateGradient([x], max_iter=500, tolerance_grad=1e-9)
    opt.step(closure)
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-5)


def logistic_problem(seed=0):
    rng = np.random.default_rng(seed)
    n, d = 200, 5
    X = rng.normal(size=(n, d))  # noqa: N806
    w_true = rng.normal(size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w_true + 0.3)))).astype(np.float64)
    return X, y


def logistic_loss_numpy(theta, X, y, lam):  # noqa: N803
    w, b = theta[:-1], theta[-1]
    z = X @ w + b
    loss = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * lam * w @ w
    s = 1 / (1 + np.exp(-z))
    grad = np.concatenate([X.T @ (s - y) / len(y) + lam * w, [np.mean(s - y)]])
    return loss, grad


def logistic_closure(X, y, lam):  # noqa: N803
    w = Parameter(np.zeros((X.shape[1], 1)))
    b = Parameter(np.zeros(1))

    def closure():
        w.grad = b.grad = None
        z = F.linear(nnparts.Tensor(X), w, b).reshape(-1)
        # log(1 + e^z) - y z, written with basic ops
        loss = F.mean(F.log(F.exp(z) + 1.0) - z * y) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    return [w, b], closure


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_logistic_regression_matches_scipy(line_search_fn):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    X, y = logistic_problem()  # noqa: N806
    lam = 1e-3
    ref = scipy_optimize.minimize(
        logistic_loss_numpy,
        np.zeros(6),
        args=(X, y, lam),
        jac=True,
        method="L-BFGS-B",
        options=dict(gtol=1e-12, ftol=1e-15),
    )
    params, closure = logistic_closure(X, y, lam)
    lr = 1.0 if line_search_fn else 0.5
    opt = optim.LBFGS(
        params,
        lr=lr,
        max_iter=200,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        line_search_fn=line_search_fn,
    )
    start = float(closure().data)
    opt.step(closure)
    final = float(closure().data)
    assert final < start - 0.05
    assert abs(final - ref.fun) / abs(ref.fun) <= 1e-6
    np.testing.assert_allclose(np.concatenate([p.data.ravel() for p in params]), ref.x, atol=1e-4)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_equals_torch(torch, line_search_fn):
    X, y = logistic_problem(seed=1)  # noqa: N806
    lam = 1e-2
    params, closure = logistic_closure(X, y, lam)
    tw = torch.zeros((5, 1), requires_grad=True)
    tb = torch.zeros(1, requires_grad=True)
    tX, ty = torch.tensor(X), torch.tensor(y)  # noqa: N806
    kwargs = dict(lr=0.8, max_iter=15, history_size=4, line_search_fn=line_search_fn)
    ref = torch.optim.LBFGS([tw, tb], **kwargs)

    def torch_closure():
        ref.zero_grad()
        z = (tX @ tw + tb).reshape(-1)
        loss = torch.mean(torch.log(torch.exp(z) + 1.0) - z * ty) + 0.5 * lam * (tw * tw).sum()
        loss.backward()
        return loss

    opt = optim.LBFGS(params, **kwargs)
    for _ in range(2):
        opt.step(closure)
        ref.step(torch_closure)
    np.testing.assert_allclose(params[0].data, tw.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(params[1].data, tb.detach().numpy(), rtol=0, atol=1e-10)
    ours_state, ref_state = opt.state[id(params[0])], ref.state[ref._params[0]]
    assert ours_state["func_evals"] == ref_state["func_evals"]
    assert ours_state["n_iter"] == ref_state["n_iter"]


@pytest.mark.parametrize("name", ["LBFGS", "ConjugateGradient", "Newton"])
def test_state_dict_round_trip(name):
    X, y = logistic_problem(seed=2)  # noqa: N806
    kwargs = dict(max_iter=3)
    if name == "LBFGS":
        kwargs["line_search_fn"] = "strong_wolfe"
    pa, ca = logistic_closure(X, y, 1e-2)
    opt_a = getattr(optim, name)(pa, **kwargs)
    opt_a.step(ca)
    saved = opt_a.state_dict()
    pb, cb = logistic_closure(X, y, 1e-2)
    for p, q in zip(pa, pb):
        q.data[...] = p.data
    opt_b = getattr(optim, name)(pb, **kwargs)
    opt_b.load_state_dict(saved)
    for _ in range(2):
        opt_a.step(ca)
        opt_b.step(cb)
    for p, q in zip(pa, pb):
        np.testing.assert_array_equal(p.data, q.data)
    for v in saved["state"]["0"].values():  # npz/JSON-friendly
        assert isinstance(v, (np.ndarray, int, float, bool))


def test_bad_input():
    x = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="closure"):
        optim.LBFGS([x]).step()
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.LBFGS([x], line_search_fn="armijo")
    with pytest.raises(ValueError, match="history_size"):
        optim.LBFGS([x], history_size=0)
    with pytest.raises(ValueError, match="lr"):
        optim.Newton([x], lr=-1.0)
    with pytest.raises(ValueError, match="hessian"):
        optim.Newton([x], hessian="exact")
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.ConjugateGradient([x], line_search_fn=None)
    with pytest.raises(ValueError, match="single parameter group"):
        optim.ConjugateGradient([{"params": [x]}, {"params": [Parameter(np.zeros(1))]}])


def test_newton_dense_damps_only_an_indefinite_hessian():
    x, closure, _ = quadratic()
    opt = optim.Newton([x], hessian="dense")
    opt.step(closure)
    assert opt.state[id(x)]["last_damping"] == 0.0  # positive definite: no damping

    y = Parameter(np.array([0.05, 0.3]))

    def saddle():
        y.grad = None
        loss = (y[0] ** 4 * 0.25 - y[0] ** 2 * 0.5 + y[0] * 0.1) + y[1] ** 2
        loss.backward()
        return loss

    opt = optim.Newton([y], hessian="dense")
    before = float(saddle().data)
    opt.step(saddle)
    assert opt.state[id(y)]["last_damping"] > 0
    assert float(saddle().data) < before
