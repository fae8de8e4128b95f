"""Float64 reference oracle for CProp, written straight from SPEC.md §1–§5.

It imports numpy and scipy only, never the implementation it checks. Each function is one step
of the math and names its equation.

Domain and policies of the oracle:

- Gradients are converted to float64. Results are faithful to exact arithmetic for finite
  gradients with 1e-150 < |g| < 1e150 or g = 0; outside that range g² under- or overflows
  (SPEC trap 6) and the oracle reports whatever float64 gives.
- Non-finite gradients (SPEC trap 5): an element whose history holds a NaN or ±inf has scale NaN
  from that step on, never a finite, plausible value; other elements are unaffected.
- c = +inf is accepted as the limit c → ∞ of §5: s = 1 where |2F(z) - 1| > 0, and 0 where it is 0.
"""

import math
import operator

import numpy as np
from scipy.special import erf, expit, ndtr

CDFS = ("normal", "logistic", "bfo", "bft")


def validate(beta, c, eps, cdf):
    """Raise ValueError naming any hyperparameter outside its range (SPEC §2).

    >>> validate(0.999, 1.0, 1e-8, "normal")
    >>> validate(1.0, 1.0, 1e-8, "normal")
    Traceback (most recent call last):
    ...
    ValueError: beta must be in [0, 1), got 1.0
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    if not c > 0.0:
        raise ValueError(f"c must be > 0, got {c!r}")
    if not 0.0 <= eps < math.inf:
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    if cdf not in CDFS:
        raise ValueError(f"cdf must be one of {CDFS}, got {cdf!r}")


def _checked(beta, c=1.0, eps=0.0, cdf="normal"):
    """Validate, then return β, c, ε as Python floats: scalar math in float64 (SPEC §2)."""
    validate(beta, c, eps, cdf)
    return float(beta), float(c), float(eps)


def _check_step(t):
    t = operator.index(t)  # the count is an exact integer (SPEC §2)
    if t < 0:
        raise ValueError(f"t must be an integer >= 0, got {t!r}")
    return t


def bias_correction(beta, t):
    """b_t = 1 - β^t (SPEC §1).

    Evaluated as -expm1(t·ln β), which keeps every digit when β → 1 ("exact form", §2); at t = 1
    it is 1 - β itself, so that n_1 = b_1 / (1 - β) = 1 exactly.
    """
    if t == 0:
        return 0.0
    if beta == 0.0:
        return 1.0
    if t == 1:
        return 1.0 - beta
    return -math.expm1(t * math.log(beta))


def effective_count(beta, t):
    """n_t = (1 - β^t) / (1 - β), the effective number of samples (SPEC §1); 1 when β = 0.

    >>> effective_count(0.5, 1), effective_count(0.0, 7), effective_count(0.5, 2)
    (1.0, 1.0, 1.5)
    """
    beta, _, _ = _checked(beta)
    return bias_correction(beta, _check_step(t)) / (1.0 - beta)


def excess_count(beta, t):
    """n_t - 1 = β·n_{t-1} (exact identity, no cancellation); 0 at t = 1 and when β = 0."""
    return beta * effective_count(beta, t - 1)


def conformity(z, cdf, *, literal=False):
    """|2F(z) - 1| for the chosen CDF F (SPEC §1 table).

    By default the cancellation-free forms are used (SPEC trap 2): erf(|z|/√2) for the normal
    CDF and tanh(x/2) = 2σ(x) - 1 for the logistic ones. ``literal=True`` evaluates
    |2F(z) - 1| as written, with scipy's ndtr / expit, which loses relative accuracy for tiny z.
    """
    if literal:
        if cdf == "normal":
            return np.abs(2.0 * ndtr(z) - 1.0)
        logit = {
            "logistic": math.pi / math.sqrt(3.0) * z,
            "bfo": 1.702 * z,
            "bft": 0.07056 * z**3 + 1.5976 * z,
        }[cdf]
        return np.abs(2.0 * expit(logit) - 1.0)
    a = np.abs(z)
    if cdf == "normal":
        return erf(a / math.sqrt(2.0))
    half_logit = {
        "logistic": math.pi / (2.0 * math.sqrt(3.0)) * a,
        "bfo": 0.851 * a,
        "bft": (0.07056 * a**3 + 1.5976 * a) / 2.0,
    }[cdf]
    return np.tanh(half_logit)


def standard_error(d, n_minus_1, eps):
    """se = sqrt(max(d, 0) / (n - 1 + ε)) + ε, with d = v̂ - m̂² (SPEC §1).

    When n = 1 (t = 1, or β = 0) d is 0 in exact arithmetic, so se = ε, also for ε = 0 where the
    quotient would be 0/0 (SPEC §2).
    """
    if n_minus_1 == 0.0:
        return np.full_like(d, eps)
    return np.sqrt(np.maximum(d, 0.0) / (n_minus_1 + eps)) + eps


def standardized_mean(mean_hat, se):
    """z = m̂ / se (SPEC §1). se = 0 only when ε = 0 and d = 0: z = ±∞, or 0 where m̂ = 0 (§2)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean_hat / se
    return np.where(mean_hat == 0.0, 0.0, z)


def clamped(c, rate):
    """min(c·rate, 1) for a rate in [0, 1] (SPEC §1, §5); a zero rate stays 0, also for c = ∞."""
    with np.errstate(invalid="ignore"):
        return np.where(rate == 0.0, 0.0, np.minimum(c * rate, 1.0))


def cprop_scale(mean_hat, d, n_minus_1, *, c, eps, cdf, literal_cdf=False):
    """s = min(c·|2F(z) - 1|, 1) from the bias-corrected statistics m̂, d = v̂ - m̂² (SPEC §1)."""
    z = standardized_mean(mean_hat, standard_error(d, n_minus_1, eps))
    return clamped(c, conformity(z, cdf, literal=literal_cdf))


def _history(grads, *, nonempty):
    g = np.asarray(grads, dtype=np.float64)
    if g.ndim == 0 or (nonempty and g.shape[0] == 0):
        raise ValueError(f"grads must have shape (T, *shape) with T >= 1, got {g.shape}")
    return g


def _poisoned(g_hist):
    """True from the first non-finite gradient of an element on (policy for SPEC trap 5)."""
    return np.logical_or.accumulate(~np.isfinite(g_hist), axis=0)


def reference_scales(grads, *, beta=0.999, c=1.0, eps=1e-8, cdf="normal", literal_cdf=False):
    """CProp scale s_t after each step t = 1..T, by the literal recurrence of SPEC §1.

    ``grads`` has shape (T, *shape); the result has the same shape, float64.

    >>> reference_scales([[1.0, 0.0], [1.0, 0.0]], beta=0.9).tolist()
    [[1.0, 0.0], [1.0, 0.0]]
    """
    beta, c, eps = _checked(beta, c, eps, cdf)
    g_hist = _history(grads, nonempty=False)
    m = np.zeros(g_hist.shape[1:])
    v = np.zeros(g_hist.shape[1:])
    scales = np.empty_like(g_hist)
    with np.errstate(over="ignore", invalid="ignore"):  # only reached by non-finite input
        for t, g in enumerate(g_hist, start=1):
            m = beta * m + (1.0 - beta) * g
            v = beta * v + (1.0 - beta) * g * g
            b = bias_correction(beta, t)
            mean_hat, v_hat = m / b, v / b
            if t == 1 or beta == 0.0:
                d = np.zeros_like(mean_hat)  # exactly 0: keep float residue out (SPEC trap 1)
            else:
                d = v_hat - mean_hat * mean_hat
            scales[t - 1] = cprop_scale(
                mean_hat, d, excess_count(beta, t), c=c, eps=eps, cdf=cdf, literal_cdf=literal_cdf
            )
    return np.where(_poisoned(g_hist), np.nan, scales)


def history_weights(beta, t):
    """w_τ = (1 - β) β^(t-τ) / (1 - β^t), τ = 1..t (SPEC §4); they sum to 1, and β = 0 gives
    w = (0, …, 0, 1)."""
    powers = beta ** np.arange(t - 1, -1, -1, dtype=np.float64)  # 0.0**0 == 1
    return (1.0 - beta) * powers / bias_correction(beta, t)


def _weighted_moments(g_hist, beta):
    """m̂, d, â and v̂ = Σ w g² at the last step, from the whole history (SPEC §4, §5)."""
    w = history_weights(beta, g_hist.shape[0])

    def weighted_sum(x):
        return np.tensordot(w, x, axes=(0, 0))

    mean_hat = weighted_sum(g_hist)
    d = weighted_sum((g_hist - mean_hat) ** 2)  # two-pass: no cancellation
    return mean_hat, d, weighted_sum(np.abs(g_hist)), weighted_sum(g_hist**2)


def direct_statistics(grads, *, beta):
    """(m̂, v̂ - m̂², â) at the last step T, from the full history (SPEC §4, §5).

    m̂ = Σ w_τ g_τ,  d = Σ w_τ (g_τ - m̂)²,  â = Σ w_τ |g_τ|.

    >>> [float(x) for x in direct_statistics([1.0, 4.0], beta=0.5)]
    [3.0, 2.0, 3.0]
    """
    beta, _, _ = _checked(beta)
    with np.errstate(over="ignore", invalid="ignore"):
        return _weighted_moments(_history(grads, nonempty=True), beta)[:3]


def direct_scale(grads, *, beta=0.999, c=1.0, eps=1e-8, cdf="normal"):
    """CProp scale at the last step T from the direct statistics (SPEC §1 with §4).

    >>> float(direct_scale([1.0, 4.0], beta=0.5, eps=0.0))  # z = 3 / sqrt(2 / 0.5) = 1.5
    0.8663855974622838
    """
    beta, c, eps = _checked(beta, c, eps, cdf)
    g_hist = _history(grads, nonempty=True)
    mean_hat, d, _ = direct_statistics(g_hist, beta=beta)
    n_minus_1 = excess_count(beta, g_hist.shape[0])
    s = cprop_scale(mean_hat, d, n_minus_1, c=c, eps=eps, cdf=cdf)
    return np.where(_poisoned(g_hist)[-1], np.nan, s)


def _rate(numerator, denominator):
    """numerator / denominator, with 0/0 (all-zero history) = 0 (SPEC §5)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(numerator == 0.0, 0.0, numerator / denominator)


def _heuristic(grads, beta, c, rate_of):
    beta, c, _ = _checked(beta, c)
    g_hist = _history(grads, nonempty=False)
    rates = np.empty_like(g_hist)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, g_hist.shape[0] + 1):
            mean_hat, _, abs_mean, v_hat = _weighted_moments(g_hist[:t], beta)
            rates[t - 1] = clamped(c, rate_of(mean_hat, abs_mean, v_hat))
    return np.where(_poisoned(g_hist), np.nan, rates)


def reference_moment_rate(grads, *, beta=0.999, c=1.0):
    """min(c·r, 1) after each step, r = |m̂| / sqrt(v̂) (SPEC §5, the moment rate).

    >>> reference_moment_rate([1.0, -1.0], beta=0.5).tolist()  # m̂ = 1/3, v̂ = 1
    [1.0, 0.3333333333333333]
    """
    return _heuristic(grads, beta, c, lambda m, a, v: _rate(np.abs(m), np.sqrt(v)))


def reference_relative_rate(grads, *, beta=0.999, c=1.0):
    """min(c·ρ, 1) after each step, ρ = |m̂| / â, â = Σ w_τ |g_τ| (SPEC §5, the relative rate).

    >>> reference_relative_rate([2.0, -1.0], beta=0.5).tolist()  # m̂ = 0, â = 4/3
    [1.0, 0.0]
    """
    return _heuristic(grads, beta, c, lambda m, a, v: _rate(np.abs(m), a))
