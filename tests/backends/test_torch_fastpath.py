"""The CPU fast path of the torch optimizers (one numba pass per parameter) equals their ATen
path: CProp's statistics and Adam's moments bit for bit, scales and parameters to SPEC §6
(float64: 1e-12), over several steps, with a 0-d parameter, a None gradient, both kinds of
weight decay, maximize, half parameters, and checkpoints crossing from one path to the other.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

from cprop_core.backends import torch as torch_backend  # noqa: E402
from cprop_core.backends.torch import CProp, CPropAdam, CPropSGD  # noqa: E402

pytestmark = pytest.mark.torch

F32, F64 = torch.float32, torch.float64
STEPS = 8
SHAPES = [(5, 4), (), (7,), (0, 3)]
NONE_AT = (3, 2)  # (step, parameter) without a gradient


def _params(dtype, half=False):
    generator = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=F64).to(dtype))
        for shape in SHAPES
    ]
    if half:
        params.append(torch.nn.Parameter(torch.randn(6, generator=generator).to(torch.float16)))
    return params


def _gradients(params, generator):
    for index, p in enumerate(params):
        drift = 0.3 if index % 2 else -0.2
        g = drift + torch.randn(p.shape, generator=generator, dtype=F64)
        p.grad = g.to(p.dtype)


def _run(make, fast, dtype, steps=STEPS, half=False, params=None, opt=None, seed=1):
    params = _params(dtype, half) if params is None else params
    opt = make(params) if opt is None else opt
    opt.use_fast_path = fast
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        _gradients(params, generator)
        if step == NONE_AT[0]:
            params[NONE_AT[1]].grad = None
        opt.step()
    return params, opt


def _tolerance(dtype, c=1.0):
    return 1e-12 if dtype == F64 else 1e-5 * c


def _compare(fast, slow, dtype, c=1.0, bitwise=("cprop_mean", "cprop_var")):
    (fast_params, fast_opt), (slow_params, slow_opt) = fast, slow
    for a, b in zip(fast_params, slow_params):
        tolerance = 1e-12 if a.dtype == F64 else 2e-6
        torch.testing.assert_close(a.detach(), b.detach(), rtol=tolerance, atol=tolerance)
        state_a, state_b = fast_opt.state[a], slow_opt.state[b]
        assert sorted(state_a) == sorted(state_b)
        assert state_a.get("cprop_count") == state_b.get("cprop_count")
        for key in bitwise:
            if key in state_a:
                assert state_a[key].dtype == state_b[key].dtype
                assert torch.equal(state_a[key], state_b[key]), key
    for group_a, group_b in zip(fast_opt.last_scales(), slow_opt.last_scales()):
        assert len(group_a) == len(group_b)
        for a, b in zip(group_a, group_b):
            assert a.shape == b.shape and a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=0, atol=_tolerance(a.dtype, c), equal_nan=True)
    stats_a, stats_b = fast_opt.scale_stats(), slow_opt.scale_stats()
    assert [s["numel"] for s in stats_a] == [s["numel"] for s in stats_b]


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the fast kernels fetched (one per fast parameter step)."""
    calls = []
    original = torch_backend._kernel

    def spy(kind, *key):
        calls.append(kind)
        return original(kind, *key)

    monkeypatch.setattr(torch_backend, "_kernel", spy)
    return calls


ADAM_CASES = [
    {"lr": 0.01},  # shared second moment
    {"lr": 0.01, "weight_decay": 0.1, "decoupled": True, "maximize": True},  # shared, AdamW
    {"lr": 0.01, "weight_decay": 0.1},  # coupled (L2): CProp keeps its own d
    {"lr": 0.02, "betas": (0.6, 0.99), "cprop_beta": 0.9, "cprop_c": 1.5},  # lerp's other form
    {"lr": 0.01, "share_second_moment": False, "cprop_cdf": "logistic", "cprop_eps": 0.0},
    {"lr": 0.01, "cprop_cdf": "bft", "cprop_beta": 0.0},
    {"lr": 0.01, "cprop_cdf": "bfo", "maximize": True, "weight_decay": 0.05},
]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kwargs", ADAM_CASES)
def test_cprop_adam_fast_equals_aten(kwargs, dtype, kernel_calls):
    def make(p):
        return CPropAdam(p, **kwargs)

    fast = _run(make, True, dtype)
    assert "adam" in kernel_calls
    slow = _run(make, False, dtype)
    # Adam's moments repeat torch's CPU arithmetic (fused multiply-adds included), so they are
    # bitwise equal too unless L2 decay feeds θ (which the scales move by a few ulp) into them.
    coupled = kwargs.get("weight_decay") and not kwargs.get("decoupled")
    moments = () if coupled else ("exp_avg", "exp_avg_sq")
    _compare(fast, slow, dtype, kwargs.get("cprop_c", 1.0), ("cprop_mean", "cprop_var", *moments))
    for a, b in zip(fast[0], slow[0]):
        assert torch.equal(fast[1].state[a]["step"], slow[1].state[b]["step"])


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True, "cprop_c": 2.0},
    {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "cprop_cdf": "logistic"},
]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_cprop_sgd_fast_equals_aten(kwargs, dtype, kernel_calls):
    def make(p):
        return CPropSGD(p, **kwargs)

    fast = _run(make, True, dtype)
    assert "sgd" in kernel_calls
    slow = _run(make, False, dtype)
    _compare(fast, slow, dtype, kwargs.get("cprop_c", 1.0))


WRAPPED = {
    "adam-fused": lambda p: CProp(torch.optim.Adam(p, lr=0.01, fused=True)),
    "adamw-maximize": lambda p: CProp(
        torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, maximize=True), c=1.5
    ),
    "adam-l2": lambda p: CProp(torch.optim.Adam(p, lr=0.01, weight_decay=0.1), cdf="bfo"),
    "sgd-momentum": lambda p: CProp(torch.optim.SGD(p, lr=0.1, momentum=0.9), beta=0.9),
}


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_wrapper_fast_equals_aten(name, dtype, kernel_calls):
    fast = _run(WRAPPED[name], True, dtype)
    assert "wrap" in kernel_calls
    slow = _run(WRAPPED[name], False, dtype)
    _compare(fast, slow, dtype, fast[1].defaults["cprop_c"], ("cprop_mean", "cprop_var"))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: CPropAdam(p, lr=0.01),
        lambda p: CPropSGD(p, lr=0.1, momentum=0.9),
        lambda p: CProp(torch.optim.Adam(p, lr=0.01)),
    ],
    ids=["adam", "sgd", "wrap"],
)
def test_half_parameters_take_the_aten_path_next_to_fast_ones(make, kernel_calls):
    fast = _run(make, True, F32, half=True)
    slow = _run(make, False, F32, half=True)
    half = fast[0][-1]
    assert fast[1].state[half]["cprop_mean"].dtype == F32
    assert torch.equal(half, slow[0][-1])  # same ATen path both times: bitwise
    _compare(fast, slow, F32)
    # the fast kernels ran for the float32 parameters only (3 with a gradient, ≥ 1 per step)
    assert len(kernel_calls) >= STEPS


@pytest.mark.parametrize(
    "make",
    [
        lambda p: CPropAdam(p, lr=0.01),
        lambda p: CPropAdam(p, lr=0.01, weight_decay=0.1),
        lambda p: CPropSGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: CProp(torch.optim.Adam(p, lr=0.01)),
    ],
    ids=["adam-shared", "adam-l2", "sgd", "wrap"],
)
@pytest.mark.parametrize("first", [True, False], ids=["fast-then-aten", "aten-then-fast"])
def test_checkpoints_cross_paths(make, first):
    """Save after 4 steps on one path, load into a fresh optimizer, continue on the other."""
    params, opt = _run(make, first, F64, steps=4)
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = make(resumed_params)
    resumed.load_state_dict(saved)
    assert resumed.last_scales() == []
    _run(make, not first, F64, steps=4, params=resumed_params, opt=resumed, seed=2)
    _run(make, first, F64, steps=4, params=params, opt=opt, seed=2)
    _compare((resumed_params, resumed), (params, opt), F64)


def test_the_fast_path_steps_aside_while_torch_compile_traces(monkeypatch, kernel_calls):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    fast = _run(lambda p: CPropAdam(p, lr=0.01), True, F32)
    assert kernel_calls == []
    monkeypatch.undo()
    slow = _run(lambda p: CPropAdam(p, lr=0.01), False, F32)
    for a, b in zip(fast[0], slow[0]):
        assert torch.equal(a, b)


def test_without_numba_the_aten_path_runs(monkeypatch, kernel_calls):
    monkeypatch.setattr(torch_backend, "_have_numba", lambda: False)
    params, _ = _run(lambda p: CProp(torch.optim.SGD(p, lr=0.1)), True, F32)
    assert kernel_calls == []
    slow, _ = _run(lambda p: CProp(torch.optim.SGD(p, lr=0.1)), False, F32)
    for a, b in zip(params, slow):
        assert torch.equal(a, b)


def test_non_contiguous_and_heuristic_rules_take_the_aten_path(kernel_calls):
    weight = torch.nn.Parameter(torch.randn(4, 3, dtype=F64).t())  # transposed: not contiguous
    opt = CPropAdam([weight], lr=0.01)
    weight.grad = torch.randn(3, 4, dtype=F64)
    opt.step()
    assert kernel_calls == []
    other = torch.nn.Parameter(torch.randn(5, dtype=F64))
    opt = CProp(torch.optim.SGD([other], lr=0.1), rule="moment_rate")
    other.grad = torch.randn(5, dtype=F64)
    opt.step()
    assert kernel_calls == []


def test_non_finite_gradient_gives_nan_scale_on_both_paths():
    results = []
    for fast in (True, False):
        w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
        opt = CPropAdam([w], lr=0.1)
        opt.use_fast_path = fast
        for g in ([1.0, 2.0, 3.0], [float("nan"), 1.0, float("inf")]):
            w.grad = torch.tensor(g)
            opt.step()
        results.append((opt.last_scales()[0][0], opt.state[w]["cprop_mean"]))
    (scale_fast, mean_fast), (scale_slow, mean_slow) = results
    assert torch.equal(mean_fast.isnan(), mean_slow.isnan())
    torch.testing.assert_close(scale_fast, scale_slow, equal_nan=True, rtol=0, atol=1e-5)
    assert bool(scale_fast[0].isnan()) and bool(scale_fast[2].isnan())


class _Failing(torch.optim.SGD):
    """SGD whose step raises when ``fail`` is set (after CProp has prepared its step)."""

    fail = False

    def step(self, closure=None):
        if self.fail:
            raise RuntimeError("inner step failed")
        return super().step(closure)


@pytest.mark.parametrize("fast", [True, False])
def test_a_raising_wrapped_step_leaves_cprop_state_untouched(fast):
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(300))
    inner = _Failing([param], lr=0.1)
    opt = CProp(inner)
    opt.use_fast_path = fast
    for _ in range(3):
        param.grad = torch.randn(300)
        opt.step()
    saved = copy.deepcopy(opt.state[param])
    theta = param.detach().clone()
    inner.fail = True
    param.grad = torch.randn(300)
    with pytest.raises(RuntimeError, match="inner step failed"):
        opt.step()
    assert opt.state[param]["cprop_count"] == saved["cprop_count"] == 3
    for key in ("cprop_mean", "cprop_var"):
        assert torch.equal(opt.state[param][key], saved[key])
    assert torch.equal(param.detach(), theta)
    inner.fail = False
    opt.step()  # and it goes on from where it was
    assert opt.state[param]["cprop_count"] == 4


def test_wrapped_step_that_changes_the_gradient_in_place_rprop():
    """Rprop rewrites p.grad in place; the scale must come from the raw gradient on both paths."""
    results = []
    for fast in (True, False):
        torch.manual_seed(1)
        param = torch.nn.Parameter(torch.randn(200, dtype=torch.float64))
        opt = CProp(torch.optim.Rprop([param], lr=0.01))
        opt.use_fast_path = fast
        for step in range(6):
            param.grad = torch.sin(param.detach() * (step + 1)) + 0.1
            opt.step()
        results.append((param.detach().clone(), opt.state[param]["cprop_mean"].clone()))
    assert torch.allclose(results[0][0], results[1][0], rtol=0, atol=1e-12)
    assert torch.equal(results[0][1], results[1][1])


def test_cprop_cannot_be_applied_twice():
    param = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(TypeError, match="twice"):
        CProp(CProp(torch.optim.SGD([param], lr=1.0)))
    with pytest.raises(TypeError, match="twice"):
        CProp(CPropSGD([param], lr=1.0))
    for fused in (CPropSGD, CPropAdam):
        with pytest.raises(TypeError, match="already applies"):
            torch_backend.cprop_class(fused)
    with pytest.raises(TypeError, match="keep_scales"):
        CProp(torch.optim.SGD([param], lr=1.0), keep_scales="no")
