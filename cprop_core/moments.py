"""The bias-corrected moving statistics of the gradient (SPEC §3), one array at a time.

The state stores m̂ (bias-corrected mean) and d = v̂ - m̂² (bias-corrected variance) rather than
the raw averages m, v: the recurrence below never subtracts two nearly equal numbers, and d is
exactly 0 at t = 1 (SPEC trap 1). All functions are elementwise and namespace-generic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["update_mean", "update_variance", "update_moments"]


def update_mean(mean: Any, grad: Any, alpha: float, keep: float, xp: Any) -> Any:
    """m̂_t = (1-α_t)·m̂_{t-1} + α_t·g.

    The convex form is bounded by max(|m̂|, |g|), and at t = 1 (keep = 0, α = 1) it gives g
    exactly. Only the rounding of α and 1-α can push it past the dtype's largest value when
    |g| is right at that limit; that is clamped back when g and m̂ are finite, while a
    non-finite g or m̂ keeps its inf/NaN forever (SPEC trap 5).
    """
    new = keep * mean + alpha * grad
    largest = float(xp.finfo(new.dtype).max)
    finite = xp.logical_and(xp.isfinite(grad), xp.isfinite(mean))
    return xp.where(finite, xp.clip(new, min=-largest, max=largest), new)


def update_variance(var: Any, delta: Any, alpha: float, keep: float, xp: Any) -> Any:
    """d_t = (1-α_t)·(d_{t-1} + α_t·δ²),  δ = g - m̂_{t-1}  (SPEC §3).

    δ² beyond the dtype's range saturates at its largest finite value (SPEC trap 6), so finite
    input never yields inf·0 = NaN, and d stays finite (the element's scale goes to 0 while the
    saturated variance dominates, and recovers as it decays).
    """
    largest = float(xp.finfo(var.dtype).max)
    squared = xp.clip(delta * delta, max=largest)
    return xp.clip(keep * (var + alpha * squared), max=largest)


def update_moments(
    mean: Any, var: Any, grad: Any, alpha: float, keep: float, xp: Any
) -> tuple[Any, Any]:
    """(m̂_t, d_t) from (m̂_{t-1}, d_{t-1}) and the gradient g (already in the statistics dtype)."""
    delta = grad - mean
    return update_mean(mean, grad, alpha, keep, xp), update_variance(var, delta, alpha, keep, xp)
