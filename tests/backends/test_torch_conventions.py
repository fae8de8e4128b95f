"""torch conventions: checkpoints, schedulers, GradScaler, devices on load, torch.compile."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from cprop_core.backends.torch import CProp, CPropAdam, CPropSGD  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


def _model(dtype=F64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).to(
        dtype
    )


def _batches(count, dtype=F64, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 3, generator=generator), torch.randn(8, 1, generator=generator))
        for _ in range(count)
    ]


def _train(model, opt, batches, dtype=F64):
    for x, y in batches:
        opt.zero_grad()
        loss = (model(x.to(dtype)) - y.to(dtype)).square().mean()
        loss.backward()
        opt.step()


def _save_load(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


MAKERS = {
    "wrap-adam": lambda params: CProp(torch.optim.Adam(params, lr=0.01), beta=0.9),
    "wrap-sgd-foreach": lambda params: CProp(
        torch.optim.SGD(params, lr=0.05, momentum=0.9), foreach=True
    ),
    "wrap-relative": lambda params: CProp(torch.optim.AdamW(params, lr=0.01), rule="relative_rate"),
    "fused-adam-shared": lambda params: CPropAdam(
        params, lr=0.01, betas=(0.9, 0.99), cprop_beta=0.99
    ),
    "fused-sgd": lambda params: CPropSGD(params, lr=0.05, momentum=0.9),
}


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_state_dict_round_trip_resumes_bit_exactly(make):
    batches = _batches(6)
    model = _model()
    opt = make(model.parameters())
    _train(model, opt, batches)

    model_a = _model()
    opt_a = make(model_a.parameters())
    _train(model_a, opt_a, batches[:3])
    saved = _save_load({"model": model_a.state_dict(), "opt": opt_a.state_dict()})
    assert set(saved["opt"]) == {"state", "param_groups"}
    assert {"cprop_count", "cprop_mean"} <= set(saved["opt"]["state"][0])
    assert saved["opt"]["param_groups"][0]["cprop_beta"] == opt.param_groups[0]["cprop_beta"]

    model_b = _model(seed=5)
    opt_b = make(model_b.parameters())
    model_b.load_state_dict(saved["model"])
    opt_b.load_state_dict(saved["opt"])
    _train(model_b, opt_b, batches[3:])
    for p, q in zip(model.parameters(), model_b.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(model.parameters(), model_b.parameters()):
        for key, value in opt.state[p].items():
            other = opt_b.state[q][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def test_param_groups_stay_shared_after_load():
    model = _model()
    opt = CProp(torch.optim.Adam(model.parameters(), lr=0.01), c=2.0)
    _train(model, opt, _batches(2))
    fresh = CProp(torch.optim.Adam(_model().parameters(), lr=0.5))
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups is fresh.optimizer.param_groups
    assert fresh.param_groups[0]["cprop_c"] == 2.0 and fresh.param_groups[0]["lr"] == 0.01
    fresh.param_groups[0]["lr"] = 0.1
    assert fresh.optimizer.param_groups[0]["lr"] == 0.1


def test_state_saved_before_the_first_step_loads_and_steps():
    model = _model()
    saved = _save_load(CProp(torch.optim.SGD(model.parameters(), lr=0.1)).state_dict())
    assert saved["state"] == {}
    opt = CProp(torch.optim.SGD(model.parameters(), lr=0.1))
    opt.load_state_dict(saved)
    _train(model, opt, _batches(1))
    assert all(opt.state[p]["cprop_count"] == 1 for p in model.parameters())


def test_plain_inner_checkpoint_loads_and_gets_cprop_defaults():
    model = _model()
    plain = torch.optim.Adam(model.parameters(), lr=0.02)
    _train(model, plain, _batches(2))
    opt = CProp(torch.optim.Adam(model.parameters(), lr=0.02), beta=0.95)
    opt.load_state_dict(plain.state_dict())
    assert opt.param_groups[0]["cprop_beta"] == 0.95
    _train(model, opt, _batches(1))
    assert opt.state[next(model.parameters())]["cprop_count"] == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [False, True])
def test_half_parameters_keep_float32_statistics_across_load(dtype, fused):
    def make(params):
        if fused:
            return CPropAdam(params, lr=0.01)
        return CProp(torch.optim.Adam(params, lr=0.01))

    model = _model(dtype)
    opt = make(model.parameters())
    _train(model, opt, _batches(2), dtype)
    saved = _save_load(opt.state_dict())
    model_b = _model(dtype)
    opt_b = make(model_b.parameters())
    opt_b.load_state_dict(saved)
    for p, q in zip(model.parameters(), model_b.parameters()):
        for key in ("cprop_mean", "cprop_var"):
            assert opt_b.state[q][key].dtype == torch.float32
            assert torch.equal(opt_b.state[q][key], opt.state[p][key])
        assert opt_b.state[q]["exp_avg"].dtype == dtype  # Adam's own state: torch's policy


def test_state_moves_to_the_parameters_device_on_load():
    """Checked with the 'meta' device, so that it runs without an accelerator."""
    model = _model()
    opt = CProp(torch.optim.Adam(model.parameters(), lr=0.01))
    _train(model, opt, _batches(1))
    meta_model = _model().to("meta")
    meta_opt = CProp(torch.optim.Adam(meta_model.parameters(), lr=0.01))
    meta_opt.load_state_dict(opt.state_dict())
    for p in meta_model.parameters():
        assert meta_opt.state[p]["cprop_mean"].device.type == "meta"
        assert meta_opt.state[p]["cprop_var"].dtype == F64


@pytest.mark.gpu
def test_state_moves_to_cuda_on_load():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model = _model()
    opt = CProp(torch.optim.Adam(model.parameters(), lr=0.01), foreach=True)
    _train(model, opt, _batches(2))
    gpu_model = _model().cuda()
    gpu_model.load_state_dict(model.state_dict())
    gpu_opt = CProp(torch.optim.Adam(gpu_model.parameters(), lr=0.01), foreach=True)
    gpu_opt.load_state_dict(opt.state_dict())
    assert all(gpu_opt.state[p]["cprop_mean"].is_cuda for p in gpu_model.parameters())
    _train(gpu_model, gpu_opt, [(x.cuda(), y.cuda()) for x, y in _batches(2, seed=3)])
    _train(model, opt, _batches(2, seed=3))
    for p, q in zip(model.parameters(), gpu_model.parameters()):
        torch.testing.assert_close(p, q.cpu(), rtol=1e-10, atol=1e-12)


def _sgd_lr_trace(make_scheduler, steps=6, plateau=False):
    """lr used at each step, read back from the parameter's move (θ - θ' = lr·s·g, s = 1 here)."""
    param = torch.nn.Parameter(torch.zeros(1, dtype=F64))
    opt = CProp(torch.optim.SGD([param], lr=1.0, momentum=0.9), beta=0.0)  # β = 0: s = 1
    scheduler = make_scheduler(opt)
    moves = []
    for _ in range(steps):
        before = float(param.detach())
        opt.zero_grad()
        param.grad = torch.ones(1, dtype=F64)
        opt.optimizer.state[param].pop("momentum_buffer", None)  # so the move is exactly lr
        opt.step()
        moves.append(round(before - float(param.detach()), 12))
        scheduler.step(1.0) if plateau else scheduler.step()
    return moves, opt


def test_step_lr():
    moves, opt = _sgd_lr_trace(lambda o: torch.optim.lr_scheduler.StepLR(o, 2, gamma=0.5))
    assert moves == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert opt.optimizer.param_groups[0]["lr"] == 0.125


def test_lambda_lr():
    moves, _ = _sgd_lr_trace(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1 / (e + 1)))
    assert moves == [round(1 / (e + 1), 12) for e in range(6)]


def test_one_cycle_lr_drives_lr_and_momentum_of_the_inner_optimizer():
    moves, opt = _sgd_lr_trace(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=2.0, total_steps=7)
    )
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=2.0, total_steps=7)
    expected = []
    for _ in range(6):
        expected.append(round(reference.param_groups[0]["lr"], 12))
        reference.step()
        schedule.step()
    assert moves == expected and moves[0] < moves[2]
    assert opt.param_groups[0]["momentum"] == reference.param_groups[0]["momentum"]


def test_reduce_lr_on_plateau():
    moves, _ = _sgd_lr_trace(
        lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.1, patience=1),
        plateau=True,
    )
    assert moves == [1.0, 1.0, 1.0, 0.1, 0.1, 0.01]


def test_grad_scaler_skips_inf_steps_without_touching_cprop_state():
    model = _model(torch.float32)
    opt = CProp(torch.optim.Adam(model.parameters(), lr=0.01))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x, y = _batches(1)[0]
    for _ in range(2):
        opt.zero_grad()
        scaler.scale((model(x) - y).square().mean()).backward()
        scaler.step(opt)
        scaler.update()
    first = next(model.parameters())
    snapshot = {
        k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in opt.state[first].items()
    }
    weights = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    scaler.scale((model(x) - y).square().mean()).backward()
    first.grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0**7
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert opt.state[first]["cprop_count"] == 2
    for key in ("cprop_mean", "cprop_var", "exp_avg"):
        assert torch.equal(opt.state[first][key], snapshot[key])
    # and the next finite step goes through
    opt.zero_grad()
    scaler.scale((model(x) - y).square().mean()).backward()
    scaler.step(opt)
    assert opt.state[first]["cprop_count"] == 3


def _compiled_training(make, steps=7):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model(torch.float32)
    opt = make(model.parameters())

    @torch.compile(backend="eager")
    def compiled_step():
        opt.step()

    graphs = []
    for x, y in _batches(steps):
        opt.zero_grad()
        (model(x) - y).square().mean().backward()
        compiled_step()
        graphs.append(counters["stats"]["unique_graphs"])
    return graphs, model


COMPILED = {
    "wrap-adam": lambda params: CProp(torch.optim.Adam(params, lr=0.01)),
    "wrap-sgd-foreach": lambda params: CProp(torch.optim.SGD(params, lr=0.01), foreach=True),
    "fused-adam": lambda params: CPropAdam(params, lr=0.01, foreach=True),
    "fused-sgd": lambda params: CPropSGD(params, lr=0.01, momentum=0.9),
}


@pytest.mark.parametrize("make", COMPILED.values(), ids=COMPILED.keys())
def test_torch_compile_does_not_recompile_every_step(make):
    graphs, model = _compiled_training(make)
    assert graphs[0] > 0
    assert graphs[-1] == graphs[3], graphs  # no new graphs once the state exists
    eager_model = _model(torch.float32)
    eager_opt = make(eager_model.parameters())
    _train(eager_model, eager_opt, _batches(7), torch.float32)
    for p, q in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_torch_compile_with_inductor():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model(torch.float32)
    opt = CProp(torch.optim.Adam(model.parameters(), lr=0.01), foreach=True)
    compiled = torch.compile(opt.step)
    graphs = []
    for x, y in _batches(5):
        opt.zero_grad()
        (model(x) - y).square().mean().backward()
        compiled()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[-1] == graphs[2], graphs
