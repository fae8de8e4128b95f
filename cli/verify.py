"""``cprop verify``: the core against the float64 reference on every installed backend.

For each backend (library and device), dtype and CDF, the core runs the gradient sequences of
:mod:`cprop_core.cli.sequences` for every β ∈ {0, 0.9, 0.999}, c ∈ {1, 3}, ε ∈ {0, 1e-8} and
the largest error of the scale over all steps is compared with SPEC §6: 1e-12·c in float64,
1e-5·c in float32 (2e-6·c at t = 1); float16 and bfloat16 must equal the float32 run on the
upcast gradients exactly. Exit status 1 if any row fails.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from cprop_core.reference import reference_scales

from cprop_core import cprop_step, init_state
from cprop_core.hyperparams import CDFS

from .arrays import BACKEND_NAMES, Backend, available_backends
from .sequences import all_sequences

__all__ = ["GRID", "Row", "run_core", "check", "limits", "format_table", "verify"]

GRID = {"beta": (0.0, 0.9, 0.999), "c": (1.0, 3.0), "eps": (0.0, 1e-8)}
DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Row:
    backend: str
    device: str
    dtype: str
    cdf: str
    max_error: float  # over all steps, divided by c
    max_error_first: float  # at t = 1, divided by c
    limit: float
    limit_first: float
    passed: bool


def limits(dtype: str) -> tuple[float, float]:
    """(limit over all steps, limit at t = 1) per unit of c (SPEC §6); 0 means exact."""
    if dtype == "float64":
        return 1e-12, 1e-12
    if dtype == "float32":
        return 1e-5, 2e-6
    return 0.0, 0.0  # half precision: exactly the float32 result on the upcast gradients


def run_core(backend: Backend, grads: np.ndarray, dtype: str, **hyper: Any) -> np.ndarray:
    """The core's scale after every step, as float64 NumPy of shape grads.shape."""
    state = init_state(backend.asarray(np.zeros(grads.shape[1:]), dtype))
    scales = np.empty(grads.shape)
    for t, row in enumerate(grads):
        state, scale = cprop_step(state, backend.asarray(row, dtype), **hyper)
        scales[t] = backend.to_numpy(scale)
    return scales


def _rounded(grads: np.ndarray, backend: Backend, dtype: str) -> np.ndarray:
    """The gradients exactly as the backend holds them in ``dtype``, back in float64."""
    return backend.to_numpy(backend.asarray(grads, dtype))


def check(backend: Backend, dtype: str, cdf: str, grads: np.ndarray) -> Row:
    """One table row: the worst error over the whole hyperparameter grid."""
    worst, worst_first = 0.0, 0.0
    limit, limit_first = limits(dtype)
    for beta, c, eps in itertools.product(GRID["beta"], GRID["c"], GRID["eps"]):
        hyper = {"beta": beta, "c": c, "eps": eps, "cdf": cdf}
        got = run_core(backend, grads, dtype, **hyper)
        if dtype in ("float16", "bfloat16"):
            expected = run_core(backend, _rounded(grads, backend, dtype), "float32", **hyper)
        else:
            expected = reference_scales(_rounded(grads, backend, dtype), **hyper)
        error = np.abs(got - expected) / c
        error[np.isnan(got) != np.isnan(expected)] = np.inf
        worst = max(worst, float(np.nanmax(error)))
        worst_first = max(worst_first, float(np.nanmax(error[0])))
    passed = worst <= limit and worst_first <= limit_first
    return Row(
        backend.name,
        str(backend.device),
        dtype,
        cdf,
        worst,
        worst_first,
        limit,
        limit_first,
        passed,
    )


def format_table(rows: list[Row]) -> str:
    header = (
        "backend",
        "device",
        "dtype",
        "cdf",
        "max |err|/c",
        "at t=1",
        "limit",
        "t=1 limit",
        "result",
    )
    lines = [
        (
            r.backend,
            r.device,
            r.dtype,
            r.cdf,
            f"{r.max_error:.2e}",
            f"{r.max_error_first:.2e}",
            "exact" if r.limit == 0 else f"{r.limit:.0e}",
            "exact" if r.limit_first == 0 else f"{r.limit_first:.0e}",
            "pass" if r.passed else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]

    def fmt(values):
        return "  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(v) for v in lines])


def verify(
    names: tuple[str, ...] = BACKEND_NAMES,
    dtypes: tuple[str, ...] = DTYPES,
    cdfs: tuple[str, ...] = CDFS,
    steps: int = 300,
    width: int = 4,
) -> tuple[list[Row], dict]:
    """All rows for the usable backends, and {backend: why skipped}."""
    grads, _ = all_sequences(steps=steps, width=width)
    usable, missing = available_backends(names)
    with np.errstate(all="ignore"):  # float16 overflows the 1e7 sequence to inf, on purpose
        rows = [
            check(backend, dtype, cdf, grads)
            for backend in usable
            for dtype in dtypes
            if backend.supports(dtype)
            for cdf in cdfs
        ]
    return rows, missing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        nargs="*",
        choices=BACKEND_NAMES,
        default=None,
        help="backends to check (default: every installed one)",
    )
    parser.add_argument("--dtype", nargs="*", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--cdf", nargs="*", choices=CDFS, default=list(CDFS))
    parser.add_argument("--steps", type=int, default=300, help="steps per gradient sequence")


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise SystemExit("cprop verify: --steps must be >= 1")
    names = (
        tuple(args.backend)
        if args.backend
        else tuple(n for n in BACKEND_NAMES if n != "numpy-readonly")
    )
    start = time.perf_counter()
    rows, missing = verify(names, tuple(args.dtype), tuple(args.cdf), steps=args.steps)
    print(format_table(rows))
    failed: list = [r for r in rows if not r.passed]
    for name, why in missing.items():
        if args.backend:  # a backend the user named must run, or the check proves nothing
            print(f"FAIL {name}: requested but unavailable ({why})")
            failed.append(name)
        else:
            print(f"skipped {name}: {why}")
    print(
        f"{sum(r.passed for r in rows)} passed, {len(failed)} failed "
        f"({time.perf_counter() - start:.0f} s; grid beta {GRID['beta']}, c {GRID['c']}, "
        f"eps {GRID['eps']}; errors divided by c)"
    )
    return 1 if failed else 0
