"""CProp under real torch.distributed (gloo on CPU, 2 processes): DDP, ZeRO, FSDP2."""

from __future__ import annotations

import os
import socket

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from cprop_core.backends.torch import CProp, cprop_class  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.distributed]

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

WORLD = 2
STEPS = 5
F64 = torch.float64


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(
        F64
    )


def _global_batches(steps):
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(8, 3, generator=generator, dtype=F64),
            torch.randn(8, 2, generator=generator, dtype=F64),
        )
        for _ in range(steps)
    ]


def _loss(model, x, y):
    return (model(x) - y).square().mean()


def _local(batch, rank):
    x, y = batch
    share = x.shape[0] // WORLD
    return x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]


def _single_process(steps, make):
    model = _model()
    opt = make(model.parameters())
    for x, y in _global_batches(steps):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    return model, opt


def _make_wrapped(params):
    return CProp(torch.optim.Adam(params, lr=0.02), beta=0.9)


def _make_zero_reference(params):
    return cprop_class(torch.optim.Adam)(params, lr=0.02, cprop_beta=0.9)


def _worker(rank, case, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        CASES[case](rank, out_dir)
    finally:
        dist.destroy_process_group()


def _train(model, opt, batches, rank):
    for batch in batches:
        x, y = _local(batch, rank)
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()


def _ddp_case(rank, out_dir):
    from torch.nn.parallel import DistributedDataParallel

    model = DistributedDataParallel(_model())
    opt = _make_wrapped(model.parameters())
    _train(model, opt, _global_batches(STEPS), rank)
    if rank == 0:
        torch.save(
            {"params": [p.detach() for p in model.module.parameters()], "opt": opt.state_dict()},
            os.path.join(out_dir, "ddp.pt"),
        )


def _zero_case(rank, out_dir):
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    batches = _global_batches(STEPS + 2)
    model = DistributedDataParallel(_model())
    opt = ZeroRedundancyOptimizer(
        model.parameters(), optimizer_class=cprop_class(torch.optim.Adam), lr=0.02, cprop_beta=0.9
    )
    _train(model, opt, batches[:STEPS], rank)
    opt.consolidate_state_dict(to=0)
    path = os.path.join(out_dir, "zero.pt")
    if rank == 0:
        state = opt.state_dict()
        torch.save({"params": [p.detach() for p in model.module.parameters()], "opt": state}, path)
    dist.barrier()
    saved = torch.load(path, weights_only=True)
    # a fresh model and sharded optimizer resume from the consolidated checkpoint
    fresh = DistributedDataParallel(_model())
    with torch.no_grad():
        for p, value in zip(fresh.module.parameters(), saved["params"]):
            p.copy_(value)
    reloaded = ZeroRedundancyOptimizer(
        fresh.parameters(), optimizer_class=cprop_class(torch.optim.Adam), lr=0.5, cprop_beta=0.5
    )
    reloaded.load_state_dict(saved["opt"])
    _train(fresh, reloaded, batches[STEPS:], rank)
    local_counts = {
        i: reloaded.optim.state[p]["cprop_count"]
        for i, p in enumerate(fresh.module.parameters())
        if p in reloaded.optim.state
    }
    torch.save(
        {
            "resumed": [p.detach() for p in fresh.module.parameters()],
            "counts": local_counts,
            "groups": reloaded.optim.param_groups[0]["cprop_beta"],
        },
        os.path.join(out_dir, f"zero_resumed_{rank}.pt"),
    )


def _fsdp2_case(rank, out_dir):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    model = _model()
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = _make_wrapped(model.parameters())
    _train(model, opt, _global_batches(STEPS), rank)
    full = [p.full_tensor().detach() for p in model.parameters()]
    shards = {i: opt.state[p]["cprop_mean"].clone() for i, p in enumerate(model.parameters())}
    if rank == 0:
        torch.save({"params": full}, os.path.join(out_dir, "fsdp2.pt"))
    torch.save({"means": shards}, os.path.join(out_dir, f"fsdp2_state_{rank}.pt"))


CASES = {"ddp": _ddp_case, "zero": _zero_case, "fsdp2": _fsdp2_case}


def _spawn(case, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(case, _free_port(), str(tmp_path)), nprocs=WORLD, join=True)


def test_ddp_equals_a_single_process_on_the_same_global_batches(tmp_path):
    _spawn("ddp", tmp_path)
    result = torch.load(tmp_path / "ddp.pt", weights_only=True)
    model, opt = _single_process(STEPS, _make_wrapped)
    for p, q in zip(model.parameters(), result["params"]):
        torch.testing.assert_close(q, p.detach(), rtol=0, atol=1e-12)
    for i, p in enumerate(model.parameters()):
        saved = result["opt"]["state"][i]
        assert saved["cprop_count"] == STEPS
        torch.testing.assert_close(
            saved["cprop_mean"], opt.state[p]["cprop_mean"], rtol=0, atol=1e-13
        )
        torch.testing.assert_close(
            saved["cprop_var"], opt.state[p]["cprop_var"], rtol=0, atol=1e-13
        )


def test_zero_redundancy_optimizer_trains_consolidates_and_reloads(tmp_path):
    _spawn("zero", tmp_path)
    checkpoint = torch.load(tmp_path / "zero.pt", weights_only=True)
    model, opt = _single_process(STEPS, _make_zero_reference)
    for p, q in zip(model.parameters(), checkpoint["params"]):
        torch.testing.assert_close(q, p.detach(), rtol=0, atol=1e-12)
    saved_state = checkpoint["opt"]["state"]
    assert sorted(saved_state) == [0, 1, 2, 3]  # every rank's shard consolidated
    for i, p in enumerate(model.parameters()):
        assert saved_state[i]["cprop_count"] == STEPS
        torch.testing.assert_close(
            saved_state[i]["cprop_var"], opt.state[p]["cprop_var"], rtol=0, atol=1e-13
        )
    assert checkpoint["opt"]["param_groups"][0]["cprop_beta"] == 0.9

    unsharded, _ = _single_process(STEPS + 2, _make_zero_reference)
    counts = {}
    for rank in range(WORLD):
        resumed = torch.load(tmp_path / f"zero_resumed_{rank}.pt", weights_only=True)
        assert resumed["groups"] == 0.9  # hyperparameters came back from the checkpoint
        counts.update(resumed["counts"])
        for p, q in zip(unsharded.parameters(), resumed["resumed"]):
            torch.testing.assert_close(q, p.detach(), rtol=0, atol=1e-12)
    assert counts == {i: STEPS + 2 for i in range(4)}


def test_fsdp2_fully_shard_on_cpu_equals_a_single_process(tmp_path):
    _spawn("fsdp2", tmp_path)
    result = torch.load(tmp_path / "fsdp2.pt", weights_only=True)
    model, opt = _single_process(STEPS, _make_wrapped)
    for p, q in zip(model.parameters(), result["params"]):
        torch.testing.assert_close(q, p.detach(), rtol=0, atol=1e-12)
    # each rank holds the statistics of its own shard (dim-0 chunks), which together are the
    # single-process statistics: CProp is elementwise
    shards = [
        torch.load(tmp_path / f"fsdp2_state_{r}.pt", weights_only=True)["means"]
        for r in range(WORLD)
    ]
    for i, p in enumerate(model.parameters()):
        joined = torch.cat([shards[r][i] for r in range(WORLD)])
        torch.testing.assert_close(joined, opt.state[p]["cprop_mean"], rtol=0, atol=1e-13)
