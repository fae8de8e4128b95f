"""Property-based tests (hypothesis) of every fact in SPEC §5, §2 and trap 6, on the core.

The CI profile runs 2,000 examples per property (tests/conftest.py).
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
from cprop_core.reference import direct_scale, direct_statistics, effective_count
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import erf

from cprop_core import (
    cprop_step,
    init_relative_rate_state,
    init_state,
    moment_rate_step,
    relative_rate_step,
)
from cprop_core.hyperparams import CDFS

# β below ~1e-6 lets β·δ² underflow into subnormals, like any floating-point average would.
BETAS = st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999]) | st.floats(1e-6, 0.9999)
MODERATE = st.floats(-1e3, 1e3).map(lambda x: 0.0 if abs(x) < 1e-6 else x)


def histories(elements=MODERATE, width: int = 3, max_steps: int = 25, dtype=np.float64):
    return st.integers(1, max_steps).flatmap(
        lambda steps: hnp.arrays(dtype, (steps, width), elements=elements)
    )


def run(step, init, grads, **hyper):
    state = init(grads[0])
    scales = []
    for g in grads:
        state, s = step(state, g, **hyper)
        scales.append(s)
    return state, np.stack(scales)


@given(histories(), BETAS, st.floats(0.01, 100.0))
def test_rates_are_ordered_and_bounded(grads, beta, c):
    """0 ≤ r ≤ ρ ≤ 1 and v̂ ≥ m̂² (d ≥ 0), for the scaled rates min(c·r, 1) ≤ min(c·ρ, 1)."""
    state, moment = run(moment_rate_step, init_state, grads, beta=beta, c=1.0)
    _, relative = run(relative_rate_step, init_relative_rate_state, grads, beta=beta, c=1.0)
    assert np.all(state.var >= 0)
    assert np.all((moment >= 0) & (moment <= relative * (1 + 1e-12) + 1e-300))
    assert np.all(relative <= 1.0)
    _, moment_c = run(moment_rate_step, init_state, grads, beta=beta, c=c)
    _, relative_c = run(relative_rate_step, init_relative_rate_state, grads, beta=beta, c=c)
    assert np.all(moment_c <= relative_c * (1 + 1e-12) + 1e-300)


@given(histories(), st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999]))
def test_identity_with_moment_rate(grads, beta):
    """ε = 0, c = 1: s = erf(sqrt((n-1)/2)·r/sqrt(1-r²)), r = 1 → 1 (SPEC §5)."""
    _, s = run(cprop_step, init_state, grads, beta=beta, c=1.0, eps=0.0)
    _, r = run(moment_rate_step, init_state, grads, beta=beta, c=1.0)
    n = np.array([effective_count(beta, t) for t in range(1, len(grads) + 1)])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(r >= 1.0, 1.0, erf(np.sqrt((n - 1) / 2) * r / np.sqrt(1 - r * r)))
    np.testing.assert_allclose(s, expected, rtol=0, atol=1e-7)


@given(histories(), BETAS, st.integers(-20, 20), st.floats(1e-3, 1e3), st.sampled_from(CDFS))
def test_scale_and_sign_invariance(grads, beta, power, k, cdf):
    """s(k·g) = s(g) for ε = 0 (exactly for k = ±2^j); s(-g) = s(g) exactly for any ε."""
    _, base = run(cprop_step, init_state, grads, beta=beta, eps=0.0, cdf=cdf)
    _, scaled = run(cprop_step, init_state, -(2.0**power) * grads, beta=beta, eps=0.0, cdf=cdf)
    np.testing.assert_array_equal(scaled, base)
    _, general = run(cprop_step, init_state, k * grads, beta=beta, eps=0.0, cdf=cdf)
    np.testing.assert_allclose(general, base, rtol=0, atol=1e-9)
    _, with_eps = run(cprop_step, init_state, grads, beta=beta, cdf=cdf)
    _, negated = run(cprop_step, init_state, -grads, beta=beta, cdf=cdf)
    np.testing.assert_array_equal(negated, with_eps)


@given(histories(width=6), BETAS, st.sampled_from(CDFS), st.integers(0, 5), MODERATE)
def test_elementwise_and_flatten_invariance(grads, beta, cdf, column, other):
    """Reshaping, splitting into a tree, or changing another element changes nothing."""
    _, flat = run(cprop_step, init_state, grads, beta=beta, cdf=cdf)
    _, shaped = run(cprop_step, init_state, grads.reshape(-1, 2, 3), beta=beta, cdf=cdf)
    np.testing.assert_array_equal(shaped.reshape(flat.shape), flat)
    tree = [{"a": g[:2], "b": (g[2:],)} for g in grads]
    state = init_state(tree[0])
    for t, g in enumerate(tree):
        state, s = cprop_step(state, g, beta=beta, cdf=cdf)
        np.testing.assert_array_equal(np.concatenate([s["a"], s["b"][0]]), flat[t])
    changed = grads.copy()
    changed[:, column] = other
    _, perturbed = run(cprop_step, init_state, changed, beta=beta, cdf=cdf)
    keep = np.arange(grads.shape[1]) != column
    np.testing.assert_array_equal(perturbed[:, keep], flat[:, keep])


@given(histories(), BETAS, st.floats(0.01, 50.0), st.floats(1.0, 20.0), st.sampled_from(CDFS))
def test_monotone_in_c_and_plain_optimizer_limit(grads, beta, c, factor, cdf):
    """s is non-decreasing in c and is 1 for huge c wherever m̂ ≠ 0 (CProp → plain)."""
    _, low = run(cprop_step, init_state, grads, beta=beta, c=c, cdf=cdf)
    _, high = run(cprop_step, init_state, grads, beta=beta, c=c * factor, cdf=cdf)
    assert np.all(low <= high)
    state, huge = run(cprop_step, init_state, grads, beta=beta, c=1e200, cdf=cdf)
    assert np.all(huge[-1][state.mean != 0] == 1.0)
    assert np.all(huge[-1][state.mean == 0] == 0.0)


@given(histories(max_steps=40), BETAS, st.sampled_from(CDFS), st.sampled_from([0.0, 1e-8]))
def test_recurrence_equals_direct_history(grads, beta, cdf, eps):
    """The stable recurrence (SPEC §3) equals the weighted history (SPEC §4) in float64."""
    state, s = run(cprop_step, init_state, grads, beta=beta, cdf=cdf, eps=eps)
    mean, var, _ = direct_statistics(grads, beta=beta)
    size = float(np.max(np.abs(grads))) if grads.size else 1.0
    np.testing.assert_allclose(state.mean, mean, rtol=1e-12, atol=1e-13 * size)
    np.testing.assert_allclose(state.var, var, rtol=1e-10, atol=1e-13 * size * size)
    np.testing.assert_allclose(
        s[-1], direct_scale(grads, beta=beta, cdf=cdf, eps=eps), rtol=0, atol=1e-9
    )


FINITE_64 = st.floats(allow_nan=False, allow_infinity=False)
FINITE_32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(
    st.sampled_from([(np.float64, FINITE_64), (np.float32, FINITE_32)]).flatmap(
        lambda pair: histories(pair[1], width=4, max_steps=12, dtype=pair[0])
    ),
    BETAS,
    st.floats(1e-3, 1e3),
    st.sampled_from([0.0, 1e-8, 1e-3]),
    st.sampled_from(CDFS),
)
def test_no_nan_from_finite_input(grads, beta, c, eps, cdf):
    """Any finite gradients, up to the dtype's largest, give finite scales in [0, 1] (trap 6)."""
    with np.errstate(over="ignore"):
        for step, init, hyper in (
            (cprop_step, init_state, {"c": c, "eps": eps, "cdf": cdf}),
            (moment_rate_step, init_state, {"c": c}),
            (relative_rate_step, init_relative_rate_state, {"c": c}),
        ):
            state, s = run(step, init, grads, beta=beta, **hyper)
            assert s.dtype == grads.dtype
            assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1)), (step, s)
            assert all(np.all(np.isfinite(leaf)) for leaf in state[1:])


@given(histories(width=4), BETAS, st.integers(0, 3), st.sampled_from([math.nan, math.inf]))
def test_non_finite_gradient_poisons_only_its_element(grads, beta, column, bad):
    """Policy (SPEC trap 5): NaN scale for that element from then on; others unchanged."""
    step = len(grads) // 2
    poisoned = grads.copy()
    poisoned[step, column] = bad
    with np.errstate(invalid="ignore"):
        _, clean = run(cprop_step, init_state, grads, beta=beta)
        _, got = run(cprop_step, init_state, poisoned, beta=beta)
    assert np.all(np.isnan(got[step:, column]))
    keep = np.arange(grads.shape[1]) != column
    np.testing.assert_array_equal(got[:, keep], clean[:, keep])
    np.testing.assert_array_equal(got[:step], clean[:step])


def test_huge_sign_flipping_gradients_get_the_reference_scale_not_full_confidence():
    """Trap 6: gradients whose square overflows saturate to ±L (moments.gradient_limit), so a
    sign-flipping 1e20..3e38 history has the small scale the float64 reference gives it."""
    from cprop_core.reference import reference_scales

    for dtype, magnitudes in ((np.float32, (1e18, 1e20, 1e30, 3e38)), (np.float64, (1e160,))):
        for m in magnitudes:
            grads = np.array([[m], [-m], [m], [-m], [m]], dtype=dtype)
            _, s = run(cprop_step, init_state, grads, beta=0.9)
            expected = reference_scales(grads.astype(np.float64) / m, beta=0.9)
            np.testing.assert_allclose(s, expected, rtol=0, atol=1e-5)
            assert s[1:].max() < 0.5
            _, r = run(moment_rate_step, init_state, grads, beta=0.9)
            _, rho = run(relative_rate_step, init_relative_rate_state, grads, beta=0.9)
            assert np.all(r <= rho * (1 + 1e-6))
