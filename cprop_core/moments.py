"""The bias-corrected moving statistics of the gradient (SPEC §3), one array at a time.

The state stores m̂ (bias-corrected mean) and d = v̂ - m̂² (bias-corrected variance) rather than
the raw averages m, v: the recurrence below never subtracts two nearly equal numbers, and d is
exactly 0 at t = 1 (SPEC trap 1). All functions are elementwise and namespace-generic.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["gradient_limit", "clip_gradient", "update_mean", "update_variance", "update_moments"]


def gradient_limit(dtype: Any, xp: Any) -> float:
    """L = 2^(⌊log2(max)/2⌋ - 2): 2^61 ≈ 2.3e18 in float32, 2^509 ≈ 1.7e153 in float64.

    A power of two (exact in every dtype) with 4·L² below the dtype's largest value: once every
    gradient is within ±L, |m̂| ≤ L, |g - m̂| ≤ 2L and (g - m̂)² cannot overflow (SPEC trap 6).
    """
    largest = float(xp.finfo(dtype).max)
    return 2.0 ** (math.floor(math.log2(largest) / 2) - 2)


def clip_gradient(grad: Any, xp: Any) -> Any:
    """g saturated to ±L (see :func:`gradient_limit`); ±inf and NaN pass unchanged (trap 5).

    Saturating the gradient, rather than the squared deviation, keeps the statistics of one
    consistent (clipped) history, so the scale of a sign-flipping 1e20 gradient is small, as
    the reference says, instead of a spurious full confidence; and nothing in the state
    becomes inf, so an element recovers when its gradients come back into range.
    """
    limit = gradient_limit(grad.dtype, xp)
    return xp.where(xp.isfinite(grad), xp.clip(grad, min=-limit, max=limit), grad)


def update_mean(mean: Any, grad: Any, alpha: float, keep: float) -> Any:
    """m̂_t = (1-α_t)·m̂_{t-1} + α_t·g  (g already clipped: cannot overflow).

    At t = 1 (keep = 0, α = 1) it gives g exactly.
    """
    return keep * mean + alpha * grad


def update_variance(var: Any, delta: Any, alpha: float, keep: float) -> Any:
    """d_t = (1-α_t)·(d_{t-1} + α_t·δ²),  δ = g - m̂_{t-1}  (SPEC §3); stays below max/2."""
    return keep * (var + alpha * (delta * delta))


def update_moments(
    mean: Any, var: Any, grad: Any, alpha: float, keep: float, xp: Any
) -> tuple[Any, Any]:
    """(m̂_t, d_t) from (m̂_{t-1}, d_{t-1}) and the gradient (in the statistics dtype)."""
    clipped = clip_gradient(grad, xp)
    delta = clipped - mean
    return update_mean(mean, clipped, alpha, keep), update_variance(var, delta, alpha, keep)
