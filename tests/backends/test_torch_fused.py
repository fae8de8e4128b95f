"""CPropSGD / CPropAdam against the wrapper and the core; the foreach kernel against the core."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import array_api_compat  # noqa: E402
from cprop_core.backends.torch import (  # noqa: E402
    CProp,
    CPropAdam,
    CPropSGD,
    _foreach_cprop_step,
)

import cprop_core  # noqa: E402
from cprop_core.moments import update_moments  # noqa: E402
from cprop_core.scale import cprop_scale  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


def _params(dtype=F64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (3,), (), (0, 2)]
    return [torch.nn.Parameter(torch.randn(s, generator=generator, dtype=dtype)) for s in shapes]


def _run(make, steps=8, dtype=F64, grad_seed=1, none_at=None):
    params = _params(dtype)
    opt = make(params)
    generator = torch.Generator().manual_seed(grad_seed)
    for step in range(steps):
        for index, p in enumerate(params):
            drift = 0.4 if index % 2 else -0.2
            g = drift + torch.randn(p.shape, generator=generator, dtype=F64)
            p.grad = None if (none_at == (step, index)) else g.to(dtype)
        opt.step()
    return params, opt


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True},
    {"lr": 0.05, "momentum": 0.5, "dampening": 0.3},
]


@pytest.mark.parametrize("kwargs", SGD_CASES)
@pytest.mark.parametrize("foreach", [False, True])
def test_cprop_sgd_equals_the_wrapper(kwargs, foreach):
    cprop = {"cprop_beta": 0.9, "cprop_c": 1.5}
    fused, fused_opt = _run(
        lambda p: CPropSGD(p, foreach=foreach, **kwargs, **cprop), none_at=(3, 1)
    )
    wrapped, wrapped_opt = _run(
        lambda p: CProp(torch.optim.SGD(p, **kwargs), beta=0.9, c=1.5), none_at=(3, 1)
    )
    for a, b in zip(fused, wrapped):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert fused_opt.state[fused[1]]["cprop_count"] == 7


ADAM_CASES = [
    ({"lr": 0.01}, {}),
    ({"lr": 0.01, "weight_decay": 0.1}, {"weight_decay": 0.1}),
    ({"lr": 0.01, "weight_decay": 0.1, "decoupled": True}, {"weight_decay": 0.1, "adamw": True}),
    (
        {"lr": 0.02, "betas": (0.8, 0.99), "maximize": True},
        {"betas": (0.8, 0.99), "maximize": True},
    ),
]


@pytest.mark.parametrize(("fused_kwargs", "torch_kwargs"), ADAM_CASES)
@pytest.mark.parametrize("foreach", [False, True])
def test_cprop_adam_equals_the_wrapper(fused_kwargs, torch_kwargs, foreach):
    """cprop_beta differs from betas[1]: CProp keeps its own d, as the wrapper does."""
    torch_kwargs = dict(torch_kwargs)
    cls = torch.optim.AdamW if torch_kwargs.pop("adamw", False) else torch.optim.Adam
    torch_kwargs.setdefault("lr", fused_kwargs["lr"])
    fused, opt = _run(
        lambda p: CPropAdam(p, foreach=foreach, cprop_beta=0.95, **fused_kwargs), none_at=(2, 0)
    )
    wrapped, _ = _run(lambda p: CProp(cls(p, **torch_kwargs), beta=0.95), none_at=(2, 0))
    for a, b in zip(fused, wrapped):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert "cprop_var" in opt.state[fused[0]] and "cprop_shared" not in opt.state[fused[0]]


@pytest.mark.parametrize("foreach", [False, True])
def test_cprop_adam_shared_second_moment_float64(foreach):
    shared, opt = _run(lambda p: CPropAdam(p, lr=0.01, foreach=foreach), steps=12)
    assert "cprop_var" not in opt.state[shared[0]] and opt.state[shared[0]]["cprop_shared"]
    wrapped, _ = _run(lambda p: CProp(torch.optim.Adam(p, lr=0.01)), steps=12)
    for a, b in zip(shared, wrapped):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_shared_second_moment_scale_meets_the_float32_budget():
    """SPEC §6: |s_shared - s_core| <= 1e-5·c over 300 steps, and 2e-6 at t = 1."""
    generator = torch.Generator().manual_seed(7)
    shape = (2000,)
    drift = torch.linspace(-0.3, 0.3, shape[0], dtype=F64)
    param = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float32))
    opt = CPropAdam([param], lr=0.0)  # lr = 0: θ stays, only the statistics move
    state = cprop_core.init_state(torch.zeros(shape, dtype=F64))
    worst = 0.0
    for step in range(300):
        scale_of_g = 10.0 ** float(torch.empty(()).uniform_(-3, 2, generator=generator))
        g = scale_of_g * (drift + torch.randn(shape, generator=generator, dtype=F64))
        g32 = g.to(torch.float32)
        param.grad = g32.clone()
        opt.step()
        state, reference = cprop_core.cprop_step(state, g32.to(F64))
        error = float((opt.last_scales()[0][0].to(F64) - reference).abs().max())
        assert step > 0 or error <= 2e-6
        worst = max(worst, error)
    assert worst <= 1e-5, worst


@pytest.mark.parametrize("foreach", [False, True])
def test_cprop_adam_unshares_when_its_betas_change(foreach):
    params, opt = _run(lambda p: CPropAdam(p, lr=0.01, foreach=foreach), steps=3)
    assert opt.state[params[0]].get("cprop_shared")
    opt.param_groups[0]["betas"] = (0.9, 0.99)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    state = opt.state[params[0]]
    assert "cprop_shared" not in state and state["cprop_var"].shape == (4, 3)
    assert state["cprop_count"] == 4


@pytest.mark.parametrize("cls", [CPropSGD, CPropAdam])
def test_fused_foreach_and_for_loop_are_identical(cls):
    loop, loop_opt = _run(lambda p: cls(p, lr=0.01, foreach=False), steps=7, none_at=(4, 2))
    fused, fused_opt = _run(lambda p: cls(p, lr=0.01, foreach=True), steps=7, none_at=(4, 2))
    for a, b in zip(loop, fused):
        assert torch.equal(a, b)
    assert loop_opt.state[loop[2]]["cprop_count"] == 6


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (CPropSGD, {"lr": -1.0}, "lr"),
        (CPropSGD, {"cprop_beta": 1.0}, "cprop_beta"),
        (CPropSGD, {"cprop_c": -2.0}, "cprop_c"),
        (CPropAdam, {"betas": (0.9, 1.0)}, "betas"),
        (CPropAdam, {"eps": -1.0}, "eps"),
        (CPropAdam, {"cprop_eps": -1.0}, "cprop_eps"),
        (CPropAdam, {"cprop_cdf": "x"}, "cprop_cdf"),
        (CPropAdam, {"cprop_rule": "x"}, "cprop_rule"),
    ],
)
def test_fused_bad_hyperparameters(cls, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        cls(_params(), **kwargs)


def test_fused_sparse_gradient_refused_before_any_change():
    params = _params()
    opt = CPropAdam(params, lr=0.1)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    params[1].grad = torch.ones(3, dtype=F64).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    assert all(opt.state[p]["cprop_count"] == 1 for p in params)
    assert int(opt.state[params[0]]["step"]) == 1


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize(
    "hyper",
    [
        {"beta": 0.999, "c": 1.0, "eps": 1e-8, "cdf": "normal"},
        {"beta": 0.9, "c": 3.0, "eps": 1e-6, "cdf": "normal"},
        {"beta": 0.5, "c": 1.0, "eps": 0.0, "cdf": "normal"},
        {"beta": 0.9, "c": 1.0, "eps": 1e-8, "cdf": "bft"},
        {"beta": 0.0, "c": 1.0, "eps": 1e-8, "cdf": "normal"},
    ],
)
def test_foreach_kernel_equals_the_core_bitwise(dtype, hyper):
    """_foreach_cprop_step == update_moments + cprop_scale, tensor by tensor, every step."""
    xp = array_api_compat.array_namespace(torch.zeros(1))
    generator = torch.Generator().manual_seed(3)
    shapes = [(5,), (2, 3), (), (0,)]
    means = [torch.zeros(s, dtype=dtype) for s in shapes]
    variances = [torch.zeros(s, dtype=dtype) for s in shapes]
    core = [(m.clone(), v.clone()) for m, v in zip(means, variances)]
    for t in range(1, 12):
        grads = [(0.2 + torch.randn(s, generator=generator)).to(dtype) for s in shapes]
        if t == 5:
            grads[0][1] = float("inf")
            grads[1][0, 0] = float("nan")
        if t == 6:
            grads[0][2] = 3e38 if dtype == torch.float32 else 1e307  # δ² saturates
        means, variances, scales = _foreach_cprop_step(means, variances, grads, t, **hyper)
        step = cprop_core.coefficients(hyper["beta"], t)
        for i, grad in enumerate(grads):
            mean, var = update_moments(*core[i], grad, step.alpha, step.keep, xp)
            core[i] = (mean, var)
            kwargs = {k: hyper[k] for k in ("c", "eps", "cdf")}
            expected = cprop_scale(mean, var, step.excess, xp=xp, **kwargs)
            assert torch.equal(means[i].nan_to_num(7.0), mean.nan_to_num(7.0))
            assert torch.equal(variances[i].nan_to_num(7.0), var.nan_to_num(7.0))
            assert torch.equal(scales[i].isnan(), expected.isnan())
            assert torch.equal(scales[i].nan_to_num(7.0), expected.nan_to_num(7.0))
    assert bool(scales[0].isnan()[1]) and not bool(scales[0].isnan()[0])
