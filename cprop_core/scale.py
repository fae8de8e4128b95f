"""From statistics to a scale in [0, 1] (SPEC §1, §2, §5).

    se = sqrt(max(d, 0) / (n - 1 + ε)) + ε
    z  = |m̂| / se
    s  = min(c · |2F(z) - 1|, 1)

|2F(z) - 1| is evaluated in closed form for every CDF (erf or tanh), never as a difference of
probabilities (SPEC trap 2). Edge cases: ε = 0 with d = 0 gives z = ∞ where m̂ ≠ 0 and z = 0
where m̂ = 0 (never 0/0); a non-finite statistic (from a non-finite gradient) gives NaN.
"""

from __future__ import annotations

import math
from typing import Any

from ._namespace import erf_function

__all__ = [
    "standard_error",
    "z_score",
    "conformity",
    "clamp_scale",
    "mark_non_finite",
    "cprop_scale",
    "moment_rate",
    "relative_rate",
]

_SQRT1_2 = math.sqrt(0.5)
_LOGISTIC = math.pi / (2.0 * math.sqrt(3.0))  # tanh(π z / (2√3)) = 2σ(π z/√3) - 1


def standard_error(var: Any, excess: float, eps: float, xp: Any) -> Any:
    """se = sqrt(max(d, 0) / (n - 1 + ε)) + ε, with ``excess`` = n - 1 (a host float64)."""
    denominator = excess + eps
    if denominator == 0.0:
        # n = 1 and ε = 0: only at t = 1 or β = 0, where d is exactly 0 (SPEC §2).
        return xp.zeros_like(var)
    return xp.sqrt(xp.clip(var, min=0.0) / denominator) + eps


def z_score(mean: Any, se: Any, xp: Any) -> Any:
    """|z| = |m̂| / se; ∞ where se = 0 < |m̂|, 0 where se = 0 = m̂."""
    magnitude = xp.abs(mean)
    positive = se > 0
    safe = xp.where(positive, se, xp.ones_like(se))
    at_zero = xp.where(magnitude > 0, xp.full_like(se, math.inf), xp.zeros_like(se))
    return xp.where(positive, magnitude / safe, at_zero)


def conformity(z: Any, cdf: str, xp: Any) -> Any:
    """|2F(z) - 1| for |z| ≥ 0, in a form without cancellation (SPEC §1 table)."""
    if cdf == "normal":
        return erf_function(xp)(z * _SQRT1_2)
    if cdf == "logistic":
        return xp.tanh(_LOGISTIC * z)
    if cdf == "bfo":
        return xp.tanh(0.851 * z)
    if cdf == "bft":
        # tanh(x) is exactly 1 beyond x ≈ 19, reached at z ≈ 8: clipping z changes nothing
        # but keeps z³ from overflowing.
        bounded = xp.clip(z, max=64.0)
        return xp.tanh(bounded * (0.03528 * (bounded * bounded) + 0.7988))
    raise ValueError(f"cdf must be one of 'normal', 'logistic', 'bft', 'bfo'; got {cdf!r}")


def clamp_scale(raw: Any, c: float, xp: Any) -> Any:
    """min(c · raw, 1)."""
    return xp.clip(c * raw, max=1.0)


def mark_non_finite(scale: Any, mean: Any, xp: Any) -> Any:
    """NaN wherever the statistic is non-finite (SPEC trap 5: no plausible scale from NaN/inf).

    A non-finite gradient element always makes its m̂ non-finite (α_t > 0), so checking m̂ is
    enough; other elements are untouched.
    """
    return xp.where(xp.isfinite(mean), scale, xp.full_like(scale, math.nan))


def cprop_scale(
    mean: Any, var: Any, excess: float, *, c: float, eps: float, cdf: str, xp: Any
) -> Any:
    """The CProp scale s = min(c·|2F(m̂/se) - 1|, 1) from the statistics (SPEC §1)."""
    se = standard_error(var, excess, eps, xp)
    raw = conformity(z_score(mean, se, xp), cdf, xp)
    return mark_non_finite(clamp_scale(raw, c, xp), mean, xp)


def _safe_ratio(numerator: Any, denominator: Any, xp: Any) -> Any:
    """numerator / denominator, with 0/0 := 0 (all-zero history, SPEC §5)."""
    positive = denominator > 0
    safe = xp.where(positive, denominator, xp.ones_like(denominator))
    return xp.where(positive, numerator / safe, xp.zeros_like(numerator))


def moment_rate(mean: Any, var: Any, *, c: float, xp: Any) -> Any:
    """min(c·r, 1), r = |m̂| / sqrt(v̂) = |m̂| / hypot(sqrt(d), m̂)  (SPEC §5)."""
    magnitude = xp.abs(mean)
    root_second_moment = xp.hypot(xp.sqrt(xp.clip(var, min=0.0)), magnitude)
    rate = _safe_ratio(magnitude, root_second_moment, xp)
    return mark_non_finite(clamp_scale(rate, c, xp), mean, xp)


def relative_rate(mean: Any, abs_mean: Any, *, c: float, xp: Any) -> Any:
    """min(c·ρ, 1), ρ = |m̂| / â with â the same average of |g|  (SPEC §5)."""
    rate = _safe_ratio(xp.abs(mean), abs_mean, xp)
    return mark_non_finite(clamp_scale(rate, c, xp), mean, xp)
