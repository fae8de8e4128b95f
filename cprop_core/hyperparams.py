"""Hyperparameter validation and the host-side scalars of one step (SPEC §2, §3).

All scalar arithmetic on hyperparameters happens here, in float64 on the host, from the exact
integer count t (SPEC §2, traps 3 and 4). The array code only ever sees the resulting Python
floats, which every array library applies in the array's own dtype.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

__all__ = ["CDFS", "validate_hyperparameters", "validate_count", "StepCoefficients", "coefficients"]

CDFS = ("normal", "logistic", "bft", "bfo")


def _is_real_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_UNSET: Any = object()


def validate_hyperparameters(
    beta: float, c: float = _UNSET, eps: float = _UNSET, cdf: str = _UNSET
) -> None:
    """Raise ValueError naming the first invalid hyperparameter and its accepted range.

    β ∈ [0, 1), c > 0 (finite), ε ≥ 0 (finite), cdf ∈ CDFS. An argument left out is not
    checked (``None`` is checked, and refused).
    """
    if not _is_real_number(beta) or not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta must be a real number in [0, 1), got {beta!r}")
    if c is not _UNSET and (not _is_real_number(c) or not 0.0 < float(c) < math.inf):
        raise ValueError(f"c must be a finite real number > 0, got {c!r}")
    if eps is not _UNSET and (not _is_real_number(eps) or not 0.0 <= float(eps) < math.inf):
        raise ValueError(f"eps must be a finite real number >= 0, got {eps!r}")
    if cdf is not _UNSET and cdf not in CDFS:
        raise ValueError(f"cdf must be one of {', '.join(map(repr, CDFS))}; got {cdf!r}")


def validate_count(count: object, argument: str = "state.count") -> int:
    """The step count as an exact non-negative int (numpy/torch integer scalars accepted)."""
    if isinstance(count, (bool, float)) or not isinstance(count, numbers.Integral):
        dtype = getattr(count, "dtype", None)  # 0-d integer arrays (numpy, torch, ...)
        if dtype is None or getattr(count, "ndim", 1) != 0 or "int" not in str(dtype):
            raise TypeError(f"{argument} must be an exact integer, got {count!r}")
        count = int(count)
    if int(count) < 0:
        raise ValueError(f"{argument} must be >= 0, got {count!r}")
    return int(count)


class StepCoefficients(NamedTuple):
    """Host scalars of step t (SPEC §3), all float64.

    alpha  = α_t = (1-β)/(1-β^t)          (α₁ = 1 exactly)
    keep   = 1 - α_t = β(1-β^(t-1))/(1-β^t)  (0 exactly at t = 1 and for β = 0)
    excess = n_t - 1 = β(1-β^(t-1))/(1-β)  (0 exactly at t = 1 and for β = 0)
    """

    alpha: float
    keep: float
    excess: float


def bias_correction(beta: float, t: int) -> float:
    """b_t = 1 - β^t, computed as -expm1(t·log β) without cancellation; b_0 = 0, β = 0 → 1."""
    if t == 0:
        return 0.0
    if beta == 0.0:
        return 1.0
    return -math.expm1(t * math.log(beta))


def coefficients(beta: float, t: int) -> StepCoefficients:
    """α_t, 1-α_t and n_t-1 for step t ≥ 1 (after the count was incremented)."""
    if t < 1:
        raise ValueError(f"step count must be >= 1 after increment, got {t}")
    if beta == 0.0 or t == 1:
        return StepCoefficients(alpha=1.0, keep=0.0, excess=0.0)
    one_minus_beta = 1.0 - beta  # exact for β ≥ 0.5 (Sterbenz)
    current, previous = bias_correction(beta, t), bias_correction(beta, t - 1)
    return StepCoefficients(
        alpha=one_minus_beta / current,
        keep=beta * previous / current,
        excess=beta * previous / one_minus_beta,
    )
