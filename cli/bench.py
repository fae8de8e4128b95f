"""``cprop bench``: time every CProp path against a copy roofline and against plain optimizers.

Every number printed is a ratio of two medians measured in the same run, with repetitions
interleaved (round-robin over all candidates of one size), so a noisy or shared machine slows
numerator and denominator alike.

Roofline: a CProp step must read g, m̂, d and write m̂, d and the scale s (6 arrays). A copy of
one array (read + write) measures the bandwidth; the step's roofline time is 3 copies.

    cprop bench --quick
    cprop bench --sizes 1e5,1e6,1e7,1e8 --json results/bench-cpu.json
    cprop bench --device cuda --json results/bench-cuda.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import cprop_core
from cprop_core import CPropState, cprop_step, init_state

DEFAULT_SIZES = (10**5, 10**6, 10**7, 10**8)
QUICK_SIZES = (10**4, 10**5)
ARRAYS_PER_STEP = 6  # read g, m̂, d; write m̂, d, s
BETA, C, EPS = 0.999, 1.0, 1e-8
WARM_COUNT = 1000  # steady state: t large, n - 1 > 0, z spread over erf's whole range

# Targets of issue 5: (candidate, baseline) -> largest ratio, at sizes >= TARGET_SIZE.
TARGET_SIZE = 10**7
TARGETS = {
    ("numpy fast path (numba)", "roofline"): 2.0,
    ("CPropAdam", "torch Adam fused"): 1.6,
    ("CProp(Adam fused)", "torch Adam fused"): 3.0,
    ("cupy fused kernel", "roofline"): 1.5,
    ("CPropAdam (cuda)", "roofline"): 1.5,
}


@dataclass
class Row:
    size: int
    name: str
    seconds: float
    baseline: str
    ratio: float
    target: float | None = None
    note: str = ""


@dataclass
class MemoryRow:
    name: str
    baseline: str
    extra_bytes_per_parameter: float
    extra_floats_per_parameter: float
    how: str


@dataclass
class Report:
    device: str
    dtype: str = "float32"
    repeat: int = 0
    machine: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="comma-separated element counts, e.g. 1e5,1e6 (default 1e5,1e6,1e7,1e8)",
    )
    parser.add_argument("--quick", action="store_true", help="sizes 1e4,1e5 and 3 repetitions")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per candidate")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the results as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads on CPU (default 1, like NumPy and the copy roofline)",
    )


def _parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(float(item)) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes: expected numbers like 1e5,1e6; got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes: expected positive sizes, got {text!r}")
    return sizes


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad arguments before any benchmark runs (SystemExit naming the flag)."""
    import os

    if args.repeat is not None and args.repeat < 1:
        raise SystemExit(f"cprop bench: --repeat must be >= 1, got {args.repeat}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"cprop bench: --threads must be >= 1, got {args.threads}")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise SystemExit(f"cprop bench: --json: folder {folder} does not exist")
    if args.device == "cuda":
        try:
            import torch

            available = torch.cuda.is_available()
        except ImportError:
            available = False
        if not available:
            raise SystemExit("cprop bench: --device cuda: no CUDA GPU is available here")


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeat = args.repeat or (3 if args.quick else 7)
    if args.device == "cpu":
        # One thread everywhere: the roofline copy and NumPy are single-threaded, and on a
        # loaded machine torch's thread pool can stall every op (measured 170x at 2 threads).
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    report = Report(device=args.device, repeat=repeat, machine=_machine(args.device))
    if args.device == "cuda":
        _bench_cuda(report, sizes, repeat)
    else:
        _bench_cpu(report, sizes, repeat)
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(asdict(report), handle, indent=2)
            handle.write("\n")
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _interleaved(
    candidates: dict[str, Callable[[], Any]], repeat: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median seconds per candidate; one warm-up call each, then round-robin repetitions."""
    for call in candidates.values():
        call()
    sync()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, call in candidates.items():
            sync()
            start = time.perf_counter()
            call()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _steady_state_numpy(n: int, rng: np.random.Generator) -> tuple[np.ndarray, CPropState]:
    grad = rng.standard_normal(n, dtype=np.float32)
    mean = (0.05 * rng.standard_normal(n)).astype(np.float32)
    var = (1.0 + 0.1 * rng.random(n)).astype(np.float32)
    return grad, CPropState(WARM_COUNT, mean, var)


def _add(report: Report, n: int, times: dict[str, float], pairs: list[tuple[str, str]]) -> None:
    roofline = ARRAYS_PER_STEP / 2 * times["copy"]
    for name, baseline in pairs:
        if name not in times:
            continue
        reference = roofline if baseline == "roofline" else times.get(baseline)
        if reference is None:
            continue
        target = TARGETS.get((name, baseline)) if n >= TARGET_SIZE else None
        report.rows.append(Row(n, name, times[name], baseline, times[name] / reference, target))


def _bench_cpu(report: Report, sizes: tuple[int, ...], repeat: int) -> None:
    """Per size, several groups, each interleaved with its own copy: only one group's arrays
    live at a time, so 1e8 elements stay within a few GiB (all at once needed > 20 GiB)."""
    from cprop_core.backends import numpy as fast

    torch = _optional_torch(report)
    if not fast.HAVE_NUMBA:
        report.skipped.append("numpy fast path (numba): numba is not installed")
    for n in sizes:
        reps = repeat if n < 10**8 else min(repeat, 3)
        rng = np.random.default_rng(0)
        grad, state = _steady_state_numpy(n, rng)
        scale = np.empty_like(grad)
        copy_target = np.empty_like(grad)
        candidates: dict[str, Callable[[], Any]] = {
            "copy": lambda g=grad, t=copy_target: np.copyto(t, g)
        }
        if fast.HAVE_NUMBA:
            candidates["numpy fast path (numba)"] = _fast_call(fast, grad, state, scale, "numba")
        candidates["numpy fast path (pure numpy)"] = _fast_call(fast, grad, state, scale, "numpy")
        candidates["core cprop_step (numpy)"] = _functional_call(grad, state)
        pairs = [
            ("numpy fast path (numba)", "roofline"),
            ("numpy fast path (pure numpy)", "roofline"),
            ("core cprop_step (numpy)", "roofline"),
        ]
        _add(report, n, _interleaved(candidates, reps, lambda: None), pairs)
        del candidates, scale
        if torch is not None:
            tgrad = torch.from_numpy(grad)
            tstate = CPropState(
                WARM_COUNT, torch.from_numpy(state.mean), torch.from_numpy(state.var)
            )
            candidates = {
                "copy": lambda g=grad, t=copy_target: np.copyto(t, g),
                "core cprop_step (torch)": _functional_call(tgrad, tstate),
            }
            _add(
                report,
                n,
                _interleaved(candidates, reps, lambda: None),
                [("core cprop_step (torch)", "roofline")],
            )
            del candidates, tgrad, tstate
        del grad, state
        gc.collect()
        if torch is not None:
            _optimizer_groups(report, torch, n, "cpu", reps, lambda: None, copy_target)
        del copy_target
        gc.collect()
    _numpy_memory(report, fast)
    if torch is not None:
        _torch_memory(report, torch, "cpu")


def _optimizer_groups(report, torch, n, device, reps, sync, copy_target=None, suffix=""):
    """torch optimizers compared pair by pair (each group with a copy for the roofline)."""
    factories = _optimizer_factories(torch, report)
    groups = [
        ("torch Adam fused", "torch Adam foreach"),
        ("torch Adam fused", "CPropAdam"),
        ("torch Adam fused", "CProp(Adam fused)"),
        ("torch SGD", "CPropSGD"),
    ]
    for index, (baseline, name) in enumerate(groups):
        if name not in factories:
            continue
        source = torch.randn(n, generator=torch.Generator().manual_seed(0)).to(device)
        target = torch.empty_like(source)
        candidates = {"copy": lambda s=source, t=target: t.copy_(s)}
        for label in (baseline, name):
            step = _optimizer_step(torch, factories[label], source, report, label + suffix, n)
            if step is not None:
                candidates[label + suffix] = step
        pairs = [(name + suffix, baseline + suffix)]
        if name == "CPropAdam":
            pairs += [(name + suffix, "roofline")]
        if index == 0:
            pairs += [(baseline + suffix, "roofline")]
        _add(report, n, _interleaved(candidates, reps, sync), pairs)
        del candidates, source, target
        gc.collect()


def _optimizer_step(torch, factory, grad, report: Report, label: str, n: int):
    param = torch.nn.Parameter(torch.zeros_like(grad))
    param.grad = grad.clone()
    try:
        optimizer = factory([param])
        optimizer.step()  # creates the state
    except Exception as error:  # noqa: BLE001 - report and go on with the others
        report.skipped.append(f"{label} at {n}: {error!r}")
        return None
    return optimizer.step


def _fast_call(fast: Any, grad: np.ndarray, state: CPropState, scale, engine: str):
    # The fast path mutates the state in place; re-wrapping it at the same count keeps every
    # repetition at the steady state (same coefficients).
    def call() -> None:
        fast.cprop_step_inplace(
            CPropState(WARM_COUNT, state.mean, state.var),
            grad,
            beta=BETA,
            c=C,
            eps=EPS,
            out=scale,
            engine=engine,
        )

    return call


def _functional_call(grad: Any, state: CPropState):
    def call() -> Any:
        return cprop_step(state, grad, beta=BETA, c=C, eps=EPS)

    return call


# ---------------------------------------------------------------------------------------------
# torch optimizers
# ---------------------------------------------------------------------------------------------


def _optional_torch(report: Report):
    try:
        import torch
    except ImportError:
        report.skipped.append("torch: not installed")
        return None
    return torch


def _cprop_classes(report: Report) -> dict[str, Any]:
    try:
        from cprop_core.backends import torch as torch_backend
    except Exception as error:  # noqa: BLE001 - a half-built backend must not stop the bench
        report.skipped.append(f"cprop_core.backends.torch: {error!r}")
        return {}
    names = ("CProp", "CPropAdam", "CPropSGD")
    found = {name: getattr(torch_backend, name) for name in names if hasattr(torch_backend, name)}
    for name in names:
        if name not in found:
            report.skipped.append(f"cprop_core.backends.torch.{name}: not defined")
    return found


def _optimizer_factories(torch: Any, report: Report) -> dict[str, Callable[[list], Any]]:
    """name -> (params -> optimizer), same hyperparameters throughout (lr 1e-3, Adam betas)."""
    lr = 1e-3
    factories: dict[str, Callable[[list], Any]] = {
        "torch Adam fused": lambda p: torch.optim.Adam(p, lr=lr, fused=True),
        "torch Adam foreach": lambda p: torch.optim.Adam(p, lr=lr, foreach=True),
        "torch SGD": lambda p: torch.optim.SGD(p, lr=lr),
    }
    classes = _cprop_classes(report)
    if "CProp" in classes:
        factories["CProp(Adam fused)"] = lambda p: classes["CProp"](
            torch.optim.Adam(p, lr=lr, fused=True), beta=BETA, c=C, eps=EPS
        )
    if "CPropAdam" in classes:
        factories["CPropAdam"] = lambda p: classes["CPropAdam"](
            p, lr=lr, cprop_beta=BETA, cprop_c=C, cprop_eps=EPS
        )
    if "CPropSGD" in classes:
        factories["CPropSGD"] = lambda p: classes["CPropSGD"](
            p, lr=lr, cprop_beta=BETA, cprop_c=C, cprop_eps=EPS
        )
    return factories


def _state_bytes(optimizer: Any) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if hasattr(value, "numel") and value.numel() > 1:
                total += value.numel() * value.element_size()
    return total


def _torch_memory(report: Report, torch: Any, device: str, n: int = 10**5) -> None:
    """Optimizer state per parameter (state_dict tensors), extra over the plain optimizer."""
    grad = torch.randn(n, generator=torch.Generator().manual_seed(0)).to(device)
    sizes = {}
    for name, factory in _optimizer_factories(torch, report).items():
        param = torch.nn.Parameter(torch.zeros(n, device=device))
        param.grad = grad.clone()
        try:
            optimizer = factory([param])
            optimizer.step()
            optimizer.step()
        except Exception:  # noqa: BLE001 - already reported by the timing pass
            continue
        sizes[name] = _state_bytes(optimizer) / n
    for name, baseline in (
        ("CProp(Adam fused)", "torch Adam fused"),
        ("CPropAdam", "torch Adam fused"),
        ("CPropSGD", "torch SGD"),
    ):
        if name in sizes and baseline in sizes:
            extra = sizes[name] - sizes[baseline]
            report.memory.append(
                MemoryRow(name, baseline, extra, extra / 4, "optimizer.state tensors / numel")
            )


def _numpy_memory(report: Report, fast: Any, n: int = 10**6) -> None:
    """Peak bytes allocated during one step (tracemalloc sees NumPy's buffers) per element."""
    rng = np.random.default_rng(0)
    grad, state = _steady_state_numpy(n, rng)
    scale = np.empty_like(grad)
    state_floats = 2.0  # m̂ and d, owned by the caller
    runs = {"core cprop_step (numpy)": lambda: cprop_step(state, grad, beta=BETA)}
    for engine in ("numba", "numpy") if fast.HAVE_NUMBA else ("numpy",):
        runs[f"numpy fast path ({'pure numpy' if engine == 'numpy' else engine})"] = (
            lambda engine=engine: fast.cprop_step_inplace(state, grad, out=scale, engine=engine)
        )
    for name, call in runs.items():
        call()  # compile / warm up outside the trace
        gc.collect()
        tracemalloc.start()
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del result
        report.memory.append(
            MemoryRow(
                name,
                "no state",
                state_floats * 4 + peak / n,
                state_floats + peak / n / 4,
                "2 state floats + tracemalloc peak of one step (outputs included) / numel",
            )
        )


# ---------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------


def _bench_cuda(report: Report, sizes: tuple[int, ...], repeat: int) -> None:
    torch = _optional_torch(report)
    try:
        import cupy
        from cprop_core.backends import cupy as cupy_backend
    except ImportError as error:
        cupy = None
        report.skipped.append(f"cupy: {error}")
    if torch is None and cupy is None:
        raise SystemExit("cprop bench --device cuda: needs torch (CUDA build) or cupy")
    if torch is not None and not torch.cuda.is_available():
        torch = None
        report.skipped.append("torch: no CUDA device visible")

    def sync() -> None:
        if torch is not None:
            torch.cuda.synchronize()
        if cupy is not None:
            cupy.cuda.runtime.deviceSynchronize()

    for n in sizes:
        candidates: dict[str, Callable[[], Any]] = {}
        pairs: list[tuple[str, str]] = []
        if cupy is not None:
            grad = cupy.random.standard_normal(n, dtype=cupy.float32)
            target = cupy.empty_like(grad)
            state = CPropState(
                WARM_COUNT,
                (0.05 * cupy.random.standard_normal(n, dtype=cupy.float32)),
                (1.0 + 0.1 * cupy.random.random(n, dtype=cupy.float32)),
            )
            scale = cupy.empty_like(grad)
            candidates["copy"] = lambda g=grad, t=target: t.__setitem__(Ellipsis, g)

            def cupy_step(state=state, grad=grad, scale=scale) -> None:
                cupy_backend.cprop_step_inplace(
                    CPropState(WARM_COUNT, state.mean, state.var), grad, beta=BETA, out=scale
                )

            candidates["cupy fused kernel"] = cupy_step
            candidates["core cprop_step (cupy)"] = _functional_call(
                grad, CPropState(WARM_COUNT, state.mean.copy(), state.var.copy())
            )
            pairs += [("cupy fused kernel", "roofline"), ("core cprop_step (cupy)", "roofline")]
        if torch is not None:
            tgrad = torch.randn(n, device="cuda")
            if "copy" not in candidates:
                ttarget = torch.empty_like(tgrad)
                candidates["copy"] = lambda g=tgrad, t=ttarget: t.copy_(g)
            tstate = init_state(tgrad)
            tstate = CPropState(WARM_COUNT, tstate.mean + 0.01, tstate.var + 1.0)
            candidates["core cprop_step (torch cuda)"] = _functional_call(tgrad, tstate)
            pairs.append(("core cprop_step (torch cuda)", "roofline"))
        _add(report, n, _interleaved(candidates, repeat, sync), pairs)
        del candidates
        gc.collect()
        if torch is not None:
            _optimizer_groups(report, torch, n, "cuda", repeat, sync, suffix=" (cuda)")
    if torch is not None:
        _torch_memory(report, torch, "cuda")


def _machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cprop": cprop_core.__version__,
        "processor": platform.processor() or platform.machine(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    return info


def format_table(report: Report) -> str:
    lines = [
        f"cprop bench on {report.device} ({report.dtype}, median of {report.repeat}, "
        "repetitions interleaved); roofline = 3 copies of one array (6 arrays moved)",
        "",
        f"{'size':>10}  {'candidate':<34} {'ms':>10}  {'ratio':>7}  {'vs':<26} target",
    ]
    for row in report.rows:
        target = (
            ""
            if row.target is None
            else f"<= {row.target:g} " + ("met" if row.ratio <= row.target else "MISSED")
        )
        lines.append(
            f"{row.size:>10.0e}  {row.name:<34} {row.seconds * 1e3:>10.3f}  "
            f"{row.ratio:>7.2f}  {row.baseline:<26} {target}"
        )
    if report.memory:
        lines += ["", f"{'memory':<34} {'extra floats/param':>18}  vs"]
        for row in report.memory:
            lines.append(
                f"{row.name:<34} {row.extra_floats_per_parameter:>18.2f}  {row.baseline} "
                f"({row.how})"
            )
    for note in report.skipped:
        lines.append(f"skipped: {note}")
    return "\n".join(lines)
