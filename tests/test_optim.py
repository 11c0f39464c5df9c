"""First-order optimizers: PyTorch trajectories, Lookahead, convergence table, state, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import save_and_load

import nnparts
import nnparts.functional as F
from nnparts import optim
from nnparts.nn import Parameter
from nnparts.optim import lr_scheduler

# ---------------------------------------------------------------------------------------------
# a small float64 MLP whose gradients come from nnparts' autograd


def make_mlp(seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(4, 8), (8,), (8, 3), (3,)]
    return [Parameter(rng.normal(0, 0.5, s)) for s in shapes]


def make_data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(16, 4)), rng.normal(size=(16, 3))


def mlp_loss(params, x, y):
    w1, b1, w2, b2 = params
    h = F.linear(nnparts.Tensor(x), w1, b1)
    h = F.log(F.exp(h) + 1.0)  # softplus
    out = F.linear(h, w2, b2)
    return F.mean((out - y) ** 2)


def compute_grads(params, x, y):
    for p in params:
        p.grad = None
    mlp_loss(params, x, y).backward()


TORCH_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, weight_decay=0.01, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01, weight_decay=0.01)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
]


def run_against_torch(torch, name, kwargs, steps=100, schedule=None):
    x, y = make_data()
    ours = make_mlp()
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt = getattr(optim, name)(ours, **kwargs)
    ref = getattr(torch.optim, name)(theirs, **kwargs)
    sched = ref_sched = None
    if schedule is not None:
        sched = schedule(lr_scheduler, opt)
        ref_sched = schedule(torch.optim.lr_scheduler, ref)
    for _ in range(steps):
        compute_grads(ours, x, y)
        for p, q in zip(ours, theirs):
            q.grad = torch.tensor(p.grad.copy())
        opt.step()
        ref.step()
        if sched is not None:
            sched.step()
            ref_sched.step()
    return ours, theirs, opt, ref


@pytest.mark.parametrize(("name", "kwargs"), TORCH_CASES, ids=lambda v: str(v))
def test_trajectory_equals_torch(torch, name, kwargs):
    ours, theirs, opt, _ = run_against_torch(torch, name, kwargs)
    for p, q in zip(ours, theirs):
        assert p.data.dtype == np.float64
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=0, atol=1e-10)
    # the parameters moved (the comparison is not vacuous)
    assert not np.allclose(ours[0].data, make_mlp()[0].data, atol=1e-3)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_trajectory_with_scheduler_mid_way(torch, name):
    kwargs = dict(lr=0.05, momentum=0.9) if name != "Adam" else dict(lr=0.02)

    def schedule(module, opt):
        return module.StepLR(opt, step_size=30, gamma=0.5)

    ours, theirs, opt, ref = run_against_torch(torch, name, kwargs, schedule=schedule)
    assert opt.param_groups[0]["lr"] == pytest.approx(kwargs["lr"] * 0.5**3)
    assert opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=0, atol=1e-10)


def test_param_groups_with_own_lr_equal_torch(torch):
    x, y = make_data()
    ours = make_mlp()
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt = optim.Adam([{"params": ours[:2], "lr": 0.05}, {"params": ours[2:]}], lr=0.01)
    ref = torch.optim.Adam([{"params": theirs[:2], "lr": 0.05}, {"params": theirs[2:]}], lr=0.01)
    for step in range(40):
        if step == 20:  # lr is mutable
            opt.param_groups[1]["lr"] = ref.param_groups[1]["lr"] = 0.001
        compute_grads(ours, x, y)
        for p, q in zip(ours, theirs):
            q.grad = torch.tensor(p.grad.copy())
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=0, atol=1e-10)


def test_params_without_grad_are_skipped_like_torch(torch):
    ours = make_mlp()
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt, ref = optim.Adam(ours, lr=0.1), torch.optim.Adam(theirs, lr=0.1)
    x, y = make_data()
    for step in range(6):
        compute_grads(ours, x, y)
        if step % 2:
            ours[1].grad = None
        for p, q in zip(ours, theirs):
            q.grad = None if p.grad is None else torch.tensor(p.grad.copy())
        opt.step()
        ref.step()
    assert opt.state[id(ours[1])]["step"] == 3
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# behavior


def test_update_is_in_place_and_float32_stays_float32():
    p = Parameter(np.ones((3, 2), dtype=np.float32))
    data = p.data
    opt = optim.Adam([p], lr=0.1)
    for _ in range(3):
        p.grad = np.full((3, 2), 0.5, dtype=np.float32)
        opt.step()
    assert p.data is data and p.data.dtype == np.float32
    assert opt.state[id(p)]["exp_avg"].dtype == np.float32
    np.testing.assert_allclose(p.data, 1 - 0.3, rtol=1e-5)  # Adam steps ~lr for constant g
    grad = p.grad.copy()
    opt.step()
    np.testing.assert_array_equal(p.grad, grad)  # gradients are not modified


def test_zero_grad_sets_none():
    params = make_mlp()
    compute_grads(params, *make_data())
    opt = optim.SGD(params, lr=0.1)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_adagrad_step_shrinks():
    """AdaGrad's per-weight step lr * g / sqrt(sum g^2) decays like 1/sqrt(t) for constant g."""
    p = Parameter(np.zeros(1))
    opt = optim.Adagrad([p], lr=1.0)
    steps = []
    for _ in range(16):
        before = p.data.copy()
        p.grad = np.ones(1)
        opt.step()
        steps.append(float(before[0] - p.data[0]))
    np.testing.assert_allclose(steps, 1 / np.sqrt(np.arange(1, 17)), rtol=1e-8)


def test_adamw_decay_is_decoupled_from_adaptive_scaling():
    """With zero gradient, Adam's L2 term is rescaled by 1/sqrt(v) (a big step), AdamW's is not."""
    a, b = Parameter(np.full(2, 10.0)), Parameter(np.full(2, 10.0))
    adam = optim.Adam([a], lr=0.01, weight_decay=0.1)
    adamw = optim.AdamW([b], lr=0.01, weight_decay=0.1)
    a.grad, b.grad = np.zeros(2), np.zeros(2)
    adam.step()
    adamw.step()
    np.testing.assert_allclose(b.data, 10.0 * (1 - 0.01 * 0.1))
    np.testing.assert_allclose(a.data, 10.0 - 0.01, rtol=1e-6)  # Adam: a step of ~lr


def test_radam_threshold_switches_rectification():
    p, q = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    strict = optim.RAdam([p], lr=0.1, rho_threshold=1e9)  # never rectified: SGD with momentum
    default = optim.RAdam([q], lr=0.1)
    for _ in range(10):
        p.grad, q.grad = np.full(1, 2.0), np.full(1, 2.0)
        strict.step()
        default.step()
    np.testing.assert_allclose(p.data, -0.1 * 2.0 * 10)  # m_hat = g exactly for constant g
    assert not np.allclose(p.data, q.data)


# ---------------------------------------------------------------------------------------------
# Lookahead against the paper's Algorithm 1 (with torch's SGD as the inner optimizer A)


@pytest.mark.parametrize(("k", "alpha", "steps"), [(5, 0.5, 50), (3, 0.8, 23)])
def test_lookahead_equals_paper_algorithm(torch, k, alpha, steps):
    x, y = make_data()
    ours = make_mlp()
    opt = optim.Lookahead(optim.SGD(ours, lr=0.05, momentum=0.9), k=k, alpha=alpha)

    theta = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    inner = torch.optim.SGD(theta, lr=0.05, momentum=0.9)
    phi = [t.detach().clone() for t in theta]
    ref_params = [Parameter(p.data.copy()) for p in ours]  # to compute gradients at theta
    done = 0
    while done < steps:  # Algorithm 1
        with torch.no_grad():
            for t, s in zip(theta, phi):
                t.copy_(s)  # theta <- phi (keeps the inner optimizer's state)
        for _ in range(min(k, steps - done)):
            for rp, t in zip(ref_params, theta):
                rp.data[...] = t.detach().numpy()
            compute_grads(ref_params, x, y)
            for rp, t in zip(ref_params, theta):
                t.grad = torch.tensor(rp.grad.copy())
            inner.step()
            done += 1
        if done % k == 0:
            phi = [s + alpha * (t.detach() - s) for s, t in zip(phi, theta)]

    for _ in range(steps):
        compute_grads(ours, x, y)
        opt.step()
    expected = phi if steps % k == 0 else [t.detach() for t in theta]
    for p, e in zip(ours, expected):
        np.testing.assert_allclose(p.data, e.numpy(), rtol=0, atol=1e-10)
    for s, e in zip(opt.slow_weights, phi):
        np.testing.assert_allclose(s, e.numpy(), rtol=0, atol=1e-10)
    assert opt.param_groups is opt.optimizer.param_groups


# ---------------------------------------------------------------------------------------------
# one table: every optimizer converges on a parabola and on Rosenbrock


def parabola(x):
    scale = np.array([1.0, 4.0])
    target = np.array([1.0, -2.0])
    return float(np.sum(scale * (x - target) ** 2)), 2 * scale * (x - target), target


def rosenbrock(x):
    a, b = x
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    return float(f), g, np.array([1.0, 1.0])


CONVERGENCE = [
    # name, kwargs for parabola, kwargs for Rosenbrock, steps
    ("SGD", dict(lr=0.1), dict(lr=1e-3, momentum=0.9), 3000),
    ("Adagrad", dict(lr=1.0), dict(lr=0.3), 10000),
    ("Adadelta", dict(lr=50.0), dict(lr=1.0, rho=0.9999), 20000),
    ("RMSprop", dict(lr=0.01), dict(lr=1e-3, momentum=0.9), 3000),
    ("Adam", dict(lr=0.1), dict(lr=0.02), 3000),
    ("AdamW", dict(lr=0.1, weight_decay=0.0), dict(lr=0.02, weight_decay=0.0), 3000),
    ("NAdam", dict(lr=0.1), dict(lr=0.02), 3000),
    ("RAdam", dict(lr=0.1), dict(lr=3e-3, betas=(0.9, 0.99)), 3000),
]


@pytest.mark.parametrize(
    ("name", "parabola_kwargs", "rosen_kwargs", "steps"),
    CONVERGENCE,
    ids=[c[0] for c in CONVERGENCE],
)
@pytest.mark.parametrize("problem", ["parabola", "rosenbrock"])
def test_converges(name, parabola_kwargs, rosen_kwargs, steps, problem):
    fn, kwargs = (
        (parabola, parabola_kwargs) if problem == "parabola" else (rosenbrock, rosen_kwargs)
    )
    p = Parameter(np.array([-1.0, 1.5]) if problem == "rosenbrock" else np.zeros(2))
    opt = getattr(optim, name)([p], **kwargs)
    for _ in range(steps):
        _, p.grad, target = fn(p.data)
        opt.step()
    np.testing.assert_allclose(p.data, target, atol=2e-2)


def test_lookahead_converges_on_rosenbrock():
    p = Parameter(np.array([-1.0, 1.5]))
    opt = optim.Lookahead(optim.Adam([p], lr=0.05), k=5, alpha=0.5)
    for _ in range(3000):
        _, p.grad, target = rosenbrock(p.data)
        opt.step()
    np.testing.assert_allclose(p.data, target, atol=2e-2)


# ---------------------------------------------------------------------------------------------
# state_dict round trip: save mid-run (through .npz + JSON), restore, continue bit-identically


def make_opt(name, params):
    kwargs = dict(TORCH_CASES)[name] if name in dict(TORCH_CASES) else {}
    if name == "Lookahead":
        return optim.Lookahead(optim.Adam(params, lr=0.01, amsgrad=True), k=3)
    return getattr(optim, name)(params, **kwargs)


@pytest.mark.parametrize(
    "name",
    ["SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "NAdam", "RAdam", "Lookahead"],
)
def test_state_dict_round_trip_continues_identically(name):
    x, y = make_data()
    a = make_mlp()
    opt_a = make_opt(name, a)
    if name == "SGD":
        opt_a = optim.SGD(a, lr=0.05, momentum=0.9, nesterov=True)
    if name == "RMSprop":
        opt_a = optim.RMSprop(a, lr=0.01, centered=True, momentum=0.5)
    for _ in range(7):
        compute_grads(a, x, y)
        opt_a.step()
    saved = save_and_load(opt_a.state_dict())
    b = [Parameter(p.data.copy()) for p in a]
    opt_b = make_opt(name, b)
    if name == "SGD":
        opt_b = optim.SGD(b, lr=1.0)  # hyperparameters come from the state_dict
        opt_b.param_groups[0].update(momentum=0.9, nesterov=True)
    if name == "RMSprop":
        opt_b = optim.RMSprop(b, lr=0.01, centered=True, momentum=0.5)
    opt_b.load_state_dict(saved)
    for _ in range(7):
        compute_grads(a, x, y)
        compute_grads(b, x, y)
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)
    # the state_dict is a copy: stepping does not change a saved one
    sd = opt_a.state_dict()
    key = "optimizer" if name == "Lookahead" else None
    inner = sd[key] if key else sd
    before = {k: {n: np.copy(v) for n, v in s.items()} for k, s in inner["state"].items()}
    compute_grads(a, x, y)
    opt_a.step()
    for k, s in inner["state"].items():
        for n, v in s.items():
            np.testing.assert_array_equal(v, before[k][n])


def test_load_state_dict_rejects_mismatch():
    a = make_mlp()
    opt = optim.Adam(a, lr=0.1)
    compute_grads(a, *make_data())
    opt.step()
    other = optim.Adam(a[:2], lr=0.1)
    with pytest.raises(ValueError, match="parameters"):
        other.load_state_dict(opt.state_dict())


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda p: optim.SGD(p, lr=-0.1), "lr"),
        (lambda p: optim.Adam(p, lr=-1e-3), "lr"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "betas"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "betas"),
        (lambda p: optim.AdamW(p, betas=(0.9,)), "betas"),
        (lambda p: optim.NAdam(p, betas=(0.9, 1.5)), "betas"),
        (lambda p: optim.RAdam(p, betas=(1.1, 0.9)), "betas"),
        (lambda p: optim.Adam(p, eps=0.0), "eps"),
        (lambda p: optim.Adagrad(p, eps=-1e-10), "eps"),
        (lambda p: optim.RMSprop(p, eps=0), "eps"),
        (lambda p: optim.Adadelta(p, eps=0), "eps"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "nesterov"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), "nesterov"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "momentum"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "weight_decay"),
        (lambda p: optim.RMSprop(p, alpha=1.5), "alpha"),
        (lambda p: optim.Adadelta(p, rho=2.0), "rho"),
        (lambda p: optim.RAdam(p, rho_threshold=2.0), "rho_threshold"),
        (lambda p: optim.Lookahead(optim.SGD(p, lr=0.1), k=0), "k"),
        (lambda p: optim.Lookahead(optim.SGD(p, lr=0.1), alpha=1.5), "alpha"),
        (lambda p: optim.SGD([{"params": p, "lr": -1.0}], lr=0.1), "lr"),
        (lambda p: optim.SGD([{"params": p, "momentun": 0.9}], lr=0.1), "momentun"),
    ],
)
def test_bad_hyperparameters_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory(make_mlp())


@pytest.mark.parametrize(
    "name",
    [
        "SGD",
        "Adagrad",
        "Adadelta",
        "RMSprop",
        "Adam",
        "AdamW",
        "NAdam",
        "RAdam",
        "LBFGS",
        "ConjugateGradient",
        "Newton",
    ],
)
def test_empty_parameter_list_raises(name):
    with pytest.raises(ValueError, match="params"):
        getattr(optim, name)([], lr=0.1)


def test_bad_params_raise():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="params"):
        optim.SGD(p, lr=0.1)  # a bare tensor instead of a list
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="params"):
        optim.SGD([np.zeros(2)], lr=0.1)


def test_build_by_name():
    params = make_mlp()
    opt = optim.build("AdamW", params, lr=0.01)
    assert isinstance(opt, optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.01
    la = optim.build("sgd", make_mlp(), lr=0.1, lookahead=dict(k=4))
    assert isinstance(la, optim.Lookahead) and la.k == 4
    with pytest.raises(ValueError, match="valid names.*adam"):
        optim.build("adamm", params)


@pytest.mark.parametrize(
    ("name", "kwargs"), TORCH_CASES + [("Lookahead", {})], ids=lambda v: str(v)
)
def test_step_allocates_nothing_proportional_to_model_size(name, kwargs):
    """After the first step (state, scratch buffers), a step works in place: tracemalloc sees
    far less than one parameter-sized array (400 kB here) allocated at the peak."""
    import tracemalloc

    params = [Parameter(np.ones((250, 200), dtype=np.float32)), Parameter(np.ones(200, np.float32))]
    for p in params:
        p.grad = np.full(p.shape, 0.1, dtype=np.float32)
    if name == "Lookahead":
        opt = optim.Lookahead(optim.Adam(params, lr=0.01, amsgrad=True), k=2)
    else:
        opt = getattr(optim, name)(params, **kwargs)
    for _ in range(3):
        opt.step()
    tracemalloc.start()
    try:
        for _ in range(4):
            opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40_000, f"{name} allocated {peak} bytes in a step"


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @settings(max_examples=15, deadline=None)
    @given(
        name=st.sampled_from(["Adam", "AdamW", "NAdam", "RAdam"]),
        lr=st.floats(1e-4, 0.1),
        beta1=st.floats(0.0, 0.99),
        beta2=st.floats(0.5, 0.9999),
        eps=st.floats(1e-10, 1e-2),
        weight_decay=st.floats(0.0, 0.1),
    )
    def test_adam_family_equals_torch_for_any_hyperparameters(
        torch, name, lr, beta1, beta2, eps, weight_decay
    ):
        kwargs = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
        ours, theirs, _, _ = run_against_torch(torch, name, kwargs, steps=15)
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=0, atol=1e-10)
