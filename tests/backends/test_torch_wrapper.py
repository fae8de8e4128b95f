"""CProp as a torch.optim.Optimizer wrapper: the math against the core, and torch conventions."""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")

from cprop_core.backends.torch import CProp, cprop_class  # noqa: E402

import cprop_core  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


def _param(*shape, dtype=F64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=dtype))


def _grads(shape, steps, dtype=F64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    # a drift plus noise, so that scales are spread over (0, 1)
    return [
        (0.3 + torch.randn(shape, generator=generator, dtype=F64)).to(dtype) for _ in range(steps)
    ]


def _core_scales(grads, **hyper):
    state = cprop_core.init_state(grads[0])
    scales = []
    for grad in grads:
        state, scale = cprop_core.cprop_step(state, grad, **hyper)
        scales.append(scale)
    return state, scales


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    "hyper", [{}, {"beta": 0.9, "c": 2.0, "eps": 1e-6, "cdf": "logistic"}, {"eps": 0.0}]
)
def test_wrapped_sgd_step_is_theta_minus_lr_s_g(foreach, hyper):
    param = _param(5)
    start = param.detach().clone()
    grads = _grads((5,), 9)
    opt = CProp(torch.optim.SGD([param], lr=0.1), foreach=foreach, **hyper)
    expected = start.clone()
    state, scales = _core_scales(grads, **hyper)
    for grad, scale in zip(grads, scales):
        param.grad = grad.clone()
        opt.step()
        expected = expected - 0.1 * scale * grad
    torch.testing.assert_close(param.detach(), expected, rtol=0, atol=1e-12)
    saved = opt.state[param]
    assert saved["cprop_count"] == 9
    torch.testing.assert_close(saved["cprop_mean"], state.mean, rtol=0, atol=1e-14)
    torch.testing.assert_close(saved["cprop_var"], state.var, rtol=0, atol=1e-14)
    assert 0.05 < float(scales[-1].min()) and float(scales[-1].max()) <= 1.0


@pytest.mark.parametrize("rule", ["moment_rate", "relative_rate"])
def test_heuristic_rules_through_the_same_wrapper(rule):
    param = _param(4)
    start = param.detach().clone()
    grads = _grads((4,), 6)
    opt = CProp(torch.optim.SGD([param], lr=0.5), rule=rule, beta=0.9, c=1.5)
    if rule == "moment_rate":
        state, step = cprop_core.init_state(grads[0]), cprop_core.moment_rate_step
    else:
        state, step = cprop_core.init_relative_rate_state(grads[0]), cprop_core.relative_rate_step
    expected = start.clone()
    for grad in grads:
        param.grad = grad.clone()
        opt.step()
        state, scale = step(state, grad, beta=0.9, c=1.5)
        expected = expected - 0.5 * scale * grad
    torch.testing.assert_close(param.detach(), expected, rtol=0, atol=1e-12)
    assert opt.param_groups[0]["cprop_rule"] == rule
    key = "cprop_abs_mean" if rule == "relative_rate" else "cprop_var"
    assert key in opt.state[param]


def test_scale_multiplies_the_inner_update_not_the_gradient():
    """With Adam inside, θ moves by s times Adam's own step (its normalisation is kept)."""
    param = _param(3)
    twin = torch.nn.Parameter(param.detach().clone())
    grads = _grads((3,), 4)
    opt = CProp(torch.optim.Adam([param], lr=0.01, weight_decay=0.1), beta=0.9)
    plain = torch.optim.Adam([twin], lr=0.01, weight_decay=0.1)
    _, scales = _core_scales(grads, beta=0.9)
    for grad, scale in zip(grads, scales):
        twin.data.copy_(param.detach())
        before = param.detach().clone()
        param.grad, twin.grad = grad.clone(), grad.clone()
        opt.step()
        plain.step()
        torch.testing.assert_close(
            param.detach() - before, scale * (twin.detach() - before), rtol=1e-12, atol=1e-15
        )


def test_is_a_genuine_optimizer_sharing_the_inner_groups():
    param = _param(2)
    inner = torch.optim.Adam([param], lr=3e-3)
    opt = CProp(inner, beta=0.99)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is inner.param_groups
    assert opt.state is inner.state
    group = opt.param_groups[0]
    assert (group["cprop_beta"], group["cprop_c"], group["cprop_eps"], group["cprop_cdf"]) == (
        0.99,
        1.0,
        1e-8,
        "normal",
    )
    assert group["eps"] == 1e-8 and group["betas"] == (0.9, 0.999)  # Adam's own, untouched
    assert opt.defaults["cprop_beta"] == 0.99 and opt.defaults["lr"] == 3e-3
    text = repr(opt)
    assert text.startswith("CProp(") and "Adam" in text and "cprop_beta: 0.99" in text
    param.grad = torch.ones_like(param)
    opt.step()
    clone = copy.deepcopy(opt)
    cloned_param = clone.param_groups[0]["params"][0]
    assert cloned_param is not param and clone.param_groups is clone.optimizer.param_groups
    torch.testing.assert_close(clone.state[cloned_param]["cprop_mean"], torch.ones(2, dtype=F64))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"beta": 1.0}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"c": 0.0}, "c"),
        ({"eps": -1.0}, "eps"),
        ({"cdf": "cauchy"}, "cdf"),
        ({"rule": "adam"}, "rule"),
        ({"foreach": "yes"}, "foreach"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        CProp(torch.optim.SGD([_param(1)], lr=0.1), **kwargs)


def test_bad_wrapped_objects_are_refused():
    with pytest.raises(TypeError, match="optimizer"):
        CProp([_param(1)])
    with pytest.raises(TypeError, match="LBFGS"):
        CProp(torch.optim.LBFGS([_param(1)]))
    with pytest.raises(TypeError, match="optimizer_class"):
        cprop_class(dict)


def test_cprop_class_is_params_first_with_cprop_keywords():
    cls = cprop_class(torch.optim.SGD)
    assert cls is cprop_class(torch.optim.SGD) and issubclass(cls, CProp)
    param = _param(3)
    opt = cls([param], lr=0.2, momentum=0.5, cprop_beta=0.9, cprop_c=3.0, cprop_cdf="bfo")
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["cprop_beta"], group["cprop_c"]) == (
        0.2,
        0.5,
        0.9,
        3.0,
    )
    assert group["cprop_cdf"] == "bfo" and isinstance(opt.optimizer, torch.optim.SGD)
    with pytest.raises(ValueError, match="^cprop_beta "):
        cls([param], lr=0.1, cprop_beta=1.5)
    with pytest.raises(ValueError, match="^cprop_rule "):
        cls([param], lr=0.1, cprop_rule="x")


def test_group_values_are_per_group_and_validated():
    a, b = _param(3, seed=1), _param(3, seed=2)
    opt = CProp(torch.optim.SGD([{"params": [a]}, {"params": [b], "cprop_c": 0.5}], lr=0.1), c=1.0)
    assert [g["cprop_c"] for g in opt.param_groups] == [1.0, 0.5]
    grad = _grads((3,), 1)[0]
    a.grad, b.grad = grad.clone(), grad.clone()
    start_a, start_b = a.detach().clone(), b.detach().clone()
    opt.step()  # t = 1: s = min(c, 1)
    torch.testing.assert_close(a.detach(), start_a - 0.1 * grad)
    torch.testing.assert_close(b.detach(), start_b - 0.05 * grad)
    opt.param_groups[1]["cprop_beta"] = 2.0
    a.grad = grad.clone()
    before = (a.detach().clone(), opt.state[a]["cprop_count"])
    with pytest.raises(ValueError, match="^cprop_beta "):
        opt.step()
    assert torch.equal(a.detach(), before[0]) and opt.state[a]["cprop_count"] == before[1]


def test_add_param_group_gets_cprop_defaults_and_starts_at_t1():
    a, b = _param(2, seed=1), _param(2, seed=2)
    opt = CProp(torch.optim.SGD([a], lr=0.1), beta=0.9, c=2.0)
    a.grad = torch.ones_like(a)
    opt.step()
    opt.add_param_group({"params": [b], "lr": 0.01, "cprop_c": 0.25})
    assert opt.optimizer.param_groups[1] is opt.param_groups[1]
    assert opt.param_groups[1]["cprop_beta"] == 0.9 and opt.param_groups[1]["cprop_c"] == 0.25
    with pytest.raises(ValueError, match="^cprop_eps "):
        opt.add_param_group({"params": [_param(1)], "cprop_eps": -1.0})
    b.grad = torch.ones_like(b)
    start = b.detach().clone()
    opt.step()
    assert opt.state[b]["cprop_count"] == 1 and opt.state[a]["cprop_count"] == 2
    torch.testing.assert_close(b.detach(), start - 0.01 * 0.25)


def test_none_gradients_keep_state_and_count():
    a, b = _param(3, seed=1), _param(3, seed=2)
    opt = CProp(torch.optim.SGD([a, b], lr=0.1), beta=0.8)
    grads = _grads((3,), 5)
    for step, grad in enumerate(grads):
        a.grad = grad.clone()
        b.grad = grad.clone() if step >= 3 else None  # b's first gradient comes at step 4
        opt.step()
    assert opt.state[a]["cprop_count"] == 5 and opt.state[b]["cprop_count"] == 2
    state, _ = _core_scales(grads[3:], beta=0.8)
    torch.testing.assert_close(opt.state[b]["cprop_mean"], state.mean, rtol=0, atol=1e-15)
    a.grad = None
    kept = opt.state[a]["cprop_mean"].clone()
    opt.step()
    assert opt.state[a]["cprop_count"] == 5 and torch.equal(opt.state[a]["cprop_mean"], kept)


def test_zero_element_and_zero_dim_parameters():
    empty, scalar = torch.nn.Parameter(torch.zeros(0, 3, dtype=F64)), _param()
    opt = CProp(torch.optim.SGD([empty, scalar], lr=0.1))
    grads = _grads((), 3)
    _, scales = _core_scales(grads)
    expected = scalar.detach().clone()
    for grad, scale in zip(grads, scales):
        empty.grad, scalar.grad = torch.zeros(0, 3, dtype=F64), grad.clone()
        opt.step()
        expected = expected - 0.1 * scale * grad
    assert opt.state[empty]["cprop_mean"].shape == (0, 3) and opt.state[empty]["cprop_count"] == 3
    assert opt.state[scalar]["cprop_mean"].shape == ()
    torch.testing.assert_close(scalar.detach(), expected, rtol=0, atol=1e-12)
    assert opt.scale_stats()[0]["numel"] == 1


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64])
def test_complex_parameters_equal_their_real_view(dtype):
    generator = torch.Generator().manual_seed(0)
    value = torch.randn(3, dtype=dtype, generator=generator)
    complex_param = torch.nn.Parameter(value.clone())
    real_param = torch.nn.Parameter(torch.view_as_real(value.clone()).clone())
    opt_c = CProp(torch.optim.Adam([complex_param], lr=0.05), beta=0.9)
    opt_r = CProp(torch.optim.Adam([real_param], lr=0.05), beta=0.9)
    for _ in range(5):
        grad = torch.randn(3, dtype=dtype, generator=generator) + (0.5 + 0.5j)
        complex_param.grad, real_param.grad = grad.clone(), torch.view_as_real(grad).clone()
        opt_c.step()
        opt_r.step()
    torch.testing.assert_close(torch.view_as_real(complex_param.detach()), real_param.detach())
    assert opt_c.state[complex_param]["cprop_mean"].shape == (3, 2)
    torch.testing.assert_close(
        opt_c.state[complex_param]["cprop_var"], opt_r.state[real_param]["cprop_var"]
    )


def test_sparse_gradients_raise_before_any_state_changes():
    dense, embedded = _param(3, seed=1), _param(4, 2, seed=2)
    opt = CProp(torch.optim.SGD([dense, embedded], lr=0.1))
    dense.grad = torch.ones(3, dtype=F64)
    embedded.grad = torch.ones(4, 2, dtype=F64)
    opt.step()
    snapshot = (dense.detach().clone(), copy.deepcopy(dict(opt.state[dense])))
    dense.grad = torch.ones(3, dtype=F64)
    embedded.grad = torch.ones(4, 2, dtype=F64).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
    assert torch.equal(dense.detach(), snapshot[0])
    assert opt.state[dense]["cprop_count"] == 1
    assert torch.equal(opt.state[dense]["cprop_mean"], snapshot[1]["cprop_mean"])


def test_closure_is_evaluated_once_with_grad_enabled():
    param = _param(2)
    opt = CProp(torch.optim.SGD([param], lr=0.1))
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = (param * torch.tensor([1.0, -2.0], dtype=F64)).sum()
        loss.backward()
        return loss

    start = param.detach().clone()
    loss = opt.step(closure)
    assert calls == [True] and float(loss.detach()) == pytest.approx(float(start[0] - 2 * start[1]))
    torch.testing.assert_close(param.detach(), start - 0.1 * torch.tensor([1.0, -2.0], dtype=F64))


def test_maximize_ascends_with_the_same_scale():
    param = _param(4)
    start = param.detach().clone()
    grads = _grads((4,), 5)
    opt = CProp(torch.optim.SGD([param], lr=0.1, maximize=True))
    _, scales = _core_scales(grads)
    for grad in grads:
        param.grad = grad.clone()
        opt.step()
    expected = start + 0.1 * sum(s * g for s, g in zip(scales, grads))
    torch.testing.assert_close(param.detach(), expected, rtol=0, atol=1e-12)


def test_zero_grad_and_step_hooks():
    param = _param(2)
    opt = CProp(torch.optim.SGD([param], lr=0.1))
    seen = []
    pre = opt.register_step_pre_hook(
        lambda o, a, k: seen.append(("pre", o.state[param].get("cprop_count", 0)))
    )
    post = opt.register_step_post_hook(
        lambda o, a, k: seen.append(("post", o.state[param]["cprop_count"]))
    )
    param.grad = torch.ones(2, dtype=F64)
    opt.step()
    pre.remove()
    post.remove()
    opt.step()
    assert seen == [("pre", 0), ("post", 1)]
    opt.zero_grad()
    assert param.grad is None
    param.grad = torch.ones(2, dtype=F64)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(param.grad, torch.zeros(2, dtype=F64))


def test_scale_stats_mean_and_histogram_of_the_last_step():
    a, b = _param(6, seed=1), _param(4, seed=2)
    opt = CProp(torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1), beta=0.9)
    grads = _grads((6,), 4)
    _, scales = _core_scales(grads, beta=0.9)
    for grad in grads:
        a.grad = grad.clone()
        opt.step()
    stats = opt.scale_stats(bins=4)
    assert len(stats) == 2
    assert stats[0]["mean"] == pytest.approx(float(scales[-1].mean()), abs=1e-12)
    expected = torch.histc(scales[-1], bins=4, min=0, max=1).to(torch.int64)
    assert torch.equal(stats[0]["histogram"], expected) and stats[0]["numel"] == 6
    assert stats[1]["numel"] == 0 and math.isnan(stats[1]["mean"])
    assert stats[1]["histogram"].tolist() == [0, 0, 0, 0]
    a.grad = torch.tensor([math.inf, 1, 1, 1, 1, 1], dtype=F64)
    opt.step()
    assert opt.scale_stats()[0]["non_finite"] == 1
    quiet = CProp(torch.optim.SGD([b], lr=0.1), keep_scales=False)
    b.grad = torch.ones(4, dtype=F64)
    quiet.step()
    assert quiet.scale_stats()[0]["numel"] == 0


def test_non_finite_gradient_gives_nan_only_for_its_element():
    param = _param(3)
    opt = CProp(torch.optim.SGD([param], lr=0.1))
    param.grad = torch.tensor([1.0, math.nan, 2.0], dtype=F64)
    start = param.detach().clone()
    opt.step()
    assert math.isnan(float(param.detach()[1])) and not math.isnan(float(param.detach()[0]))
    torch.testing.assert_close(
        param.detach()[[0, 2]], start[[0, 2]] - 0.1 * torch.tensor([1.0, 2.0], dtype=F64)
    )


def test_foreach_and_for_loop_paths_are_identical():
    """float64, 7 steps, a 0-d parameter, a None gradient, a frozen-then-unfrozen layer."""

    def run(foreach):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        model = model.to(F64)
        scalar = torch.nn.Parameter(torch.tensor(0.5, dtype=F64))
        unused = torch.nn.Parameter(torch.ones(2, dtype=F64))
        model[2].requires_grad_(False)
        opt = CProp(
            torch.optim.Adam([*model.parameters(), scalar, unused], lr=0.05),
            beta=0.9,
            foreach=foreach,
        )
        generator = torch.Generator().manual_seed(1)
        for step in range(7):
            if step == 3:
                model[2].requires_grad_(True)
            x = torch.randn(8, 3, generator=generator, dtype=F64)
            loss = (model(x).squeeze(-1) * scalar).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach().clone() for p in opt.param_groups[0]["params"]], opt

    loop, loop_opt = run(False)
    fused, fused_opt = run(True)
    for a, b in zip(loop, fused):
        assert torch.equal(a, b)
    counts = [loop_opt.state[p].get("cprop_count", 0) for p in loop_opt.param_groups[0]["params"]]
    assert counts == [7, 7, 4, 4, 7, 0]
    for p_loop, p_fused in zip(
        loop_opt.param_groups[0]["params"], fused_opt.param_groups[0]["params"]
    ):
        for key in ("cprop_mean", "cprop_var"):
            if key in loop_opt.state[p_loop]:
                assert torch.equal(loop_opt.state[p_loop][key], fused_opt.state[p_fused][key])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_parameters_keep_float32_statistics(dtype):
    param = torch.nn.Parameter(torch.ones(4, dtype=dtype))
    opt = CProp(torch.optim.SGD([param], lr=0.01))
    grads = _grads((4,), 3, dtype=dtype)
    state, scales = _core_scales(grads)
    for grad in grads:
        param.grad = grad.clone()
        opt.step()
    assert opt.state[param]["cprop_mean"].dtype == torch.float32
    torch.testing.assert_close(opt.state[param]["cprop_mean"], state.mean, rtol=0, atol=0)
    assert param.dtype == dtype
