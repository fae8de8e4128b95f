"""Tests of the float64 reference oracle against SPEC.md §1–§5 (edge cases, identities, facts)."""

import math
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from cprop_core.reference import (
    direct_scale,
    direct_statistics,
    effective_count,
    reference_moment_rate,
    reference_relative_rate,
    reference_scales,
    validate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

BETAS = [0.0, 0.5, 0.9, 0.999]
CDFS = ["normal", "logistic", "bfo", "bft"]
EXAMPLES = settings(max_examples=200, deadline=None, database=None)

# Magnitudes in [1e-6, 1e3] or exactly 0: inside the oracle's float64 domain, with repeats.
gradient = st.floats(-1e3, 1e3).map(lambda x: 0.0 if abs(x) < 1e-6 else x)
histories = st.integers(1, 30).flatmap(
    lambda steps: hnp.arrays(np.float64, (steps, 3), elements=gradient)
)
betas = st.sampled_from(BETAS)


@EXAMPLES
@given(
    histories,
    betas,
    st.sampled_from([0.0, 1e-8]),
    st.sampled_from(CDFS),
    st.sampled_from([1.0, 2.5]),
)
def test_literal_recurrence_matches_direct_history_at_every_step(g, beta, eps, cdf, c):
    scales = reference_scales(g, beta=beta, c=c, eps=eps, cdf=cdf)
    for t in range(1, len(g) + 1):
        direct = direct_scale(g[:t], beta=beta, c=c, eps=eps, cdf=cdf)
        np.testing.assert_allclose(scales[t - 1], direct, rtol=0, atol=1e-12 * c)


def test_direct_statistics_by_hand():
    # beta = 0.5, t = 2: w = (1/3, 2/3).
    mean_hat, d, abs_mean = direct_statistics([1.0, -4.0], beta=0.5)
    assert np.allclose([mean_hat, d, abs_mean], [-7 / 3, 50 / 9, 3.0], rtol=1e-15)
    # beta = 0: only the last gradient counts, and d is exactly 0.
    assert [float(x) for x in direct_statistics([3.0, -2.0], beta=0.0)] == [-2.0, 0.0, 2.0]


def test_effective_count():
    assert effective_count(0.0, 5) == 1.0
    assert all(effective_count(beta, 1) == 1.0 for beta in BETAS)
    assert effective_count(0.9, 3) == pytest.approx(1 + 0.9 + 0.81, rel=1e-15)
    assert effective_count(0.999, 10**6) == pytest.approx(1000.0, rel=1e-15)
    assert effective_count(0.5, 0) == 0.0


# |2F(z) - 1| for each CDF, as in the SPEC §1 table
CONFORMITY = {
    "normal": lambda z: erf(np.abs(z) / math.sqrt(2)),
    "logistic": lambda z: np.tanh(math.pi * np.abs(z) / (2 * math.sqrt(3))),
    "bfo": lambda z: np.tanh(0.851 * np.abs(z)),
    "bft": lambda z: np.tanh((0.07056 * np.abs(z) ** 3 + 1.5976 * np.abs(z)) / 2),
}


@pytest.mark.parametrize("cdf", CDFS)
@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_first_step_and_beta_zero_give_the_n_equals_1_formula(cdf, c):
    eps = 1e-8
    g = np.random.default_rng(0).normal(size=(4, 5)) * np.array([1e-9, 1e-8, 3e-8, 1.0, 0.0])
    expected = np.minimum(c * CONFORMITY[cdf](g / eps), 1.0)  # se = eps, z = g / eps
    for beta in BETAS:
        s = reference_scales(g, beta=beta, c=c, eps=eps, cdf=cdf)
        np.testing.assert_allclose(s[0], expected[0], rtol=1e-14, atol=0)
        if beta == 0.0:  # every step is a first step
            np.testing.assert_allclose(s, expected, rtol=1e-14, atol=0)
    if c >= 1:  # |g| >> eps gives exactly 1
        assert np.all(reference_scales(g, c=c, eps=eps, cdf=cdf)[0, 3] == 1.0)


@pytest.mark.parametrize("literal_cdf", [False, True])
@pytest.mark.parametrize("cdf", CDFS)
def test_eps_zero_and_all_zero_history(cdf, literal_cdf):
    g = np.array([[2.0, 0.0, -1e-300], [2.0, 0.0, 5.0]])
    kwargs = dict(eps=0.0, cdf=cdf, literal_cdf=literal_cdf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for c in [0.5, 1.0, 2.0]:
            first = reference_scales(g, c=c, **kwargs)[0]
            assert first.tolist() == [min(c, 1.0), 0.0, min(c, 1.0)]  # z = ±inf, or m̂ = 0
            every_step = reference_scales(g, beta=0.0, c=c, **kwargs)
            assert every_step.tolist() == [[min(c, 1.0), 0.0, min(c, 1.0)]] * 2
        # a constant history has d = 0: z = ±inf, s = 1 at every step
        assert np.all(reference_scales(np.full((5, 2), -0.3), beta=0.9, **kwargs) == 1.0)
        for beta in BETAS:
            zeros = np.zeros((6, 2))
            assert np.all(reference_scales(zeros, beta=beta, **kwargs) == 0.0)
            assert np.all(reference_scales(zeros, beta=beta, cdf=cdf) == 0.0)
            assert np.all(direct_scale(zeros, beta=beta, eps=0.0, cdf=cdf) == 0.0)
            assert np.all(reference_moment_rate(zeros, beta=beta) == 0.0)
            assert np.all(reference_relative_rate(zeros, beta=beta) == 0.0)


@EXAMPLES
@given(histories, betas)
def test_heuristic_facts(g, beta):
    r = reference_moment_rate(g, beta=beta)
    rho = reference_relative_rate(g, beta=beta)
    assert np.all((0 <= r) & (r <= rho + 1e-12) & (rho <= 1))
    assert np.all(direct_statistics(g, beta=beta)[1] >= 0)


@EXAMPLES
@given(histories, st.sampled_from([0.5, 0.9, 0.999]))
def test_cprop_is_erf_of_moment_rate_with_eps_zero(g, beta):
    s = reference_scales(g, beta=beta, c=1.0, eps=0.0)
    r = reference_moment_rate(g, beta=beta, c=1.0)
    for t in range(2, len(g) + 1):
        n_minus_1 = effective_count(beta, t) - 1
        with np.errstate(divide="ignore"):
            z = np.sqrt(n_minus_1) * r[t - 1] / np.sqrt(1 - r[t - 1] ** 2)
        expected = np.where(r[t - 1] == 1, 1.0, erf(z / math.sqrt(2)))
        np.testing.assert_allclose(s[t - 1], expected, rtol=0, atol=1e-10)


@EXAMPLES
@given(histories, betas, st.sampled_from([-1.0, -3.7, 1e-3, 1e3]), st.sampled_from(CDFS))
def test_scale_invariance_with_eps_zero(g, beta, k, cdf):
    s = reference_scales(g, beta=beta, eps=0.0, cdf=cdf)
    np.testing.assert_allclose(reference_scales(k * g, beta=beta, eps=0.0, cdf=cdf), s, atol=1e-12)
    # a sign flip is exact for every eps
    np.testing.assert_array_equal(reference_scales(-g, beta=beta), reference_scales(g, beta=beta))


@EXAMPLES
@given(histories, betas, st.sampled_from(CDFS))
def test_monotone_in_c_and_limit(g, beta, cdf):
    cs = [0.1, 0.5, 1.0, 2.0, 27.0, 1e300, math.inf]
    s = np.stack([reference_scales(g, beta=beta, c=c, cdf=cdf) for c in cs])
    assert np.all(np.diff(s, axis=0) >= 0)
    np.testing.assert_array_equal(s[-1], s[0] > 0)  # c -> inf: 1 wherever the scale is not 0


@EXAMPLES
@given(histories, betas)
def test_elementwise_reshape_and_independence(g, beta):
    s = reference_scales(g, beta=beta)
    np.testing.assert_array_equal(reference_scales(g.reshape(len(g), 3, 1), beta=beta)[..., 0], s)
    changed = g.copy()
    changed[:, 0] = 7.0
    np.testing.assert_array_equal(reference_scales(changed, beta=beta)[:, 1:], s[:, 1:])


@EXAMPLES
@given(histories, betas, st.sampled_from(CDFS), st.sampled_from([1.0, 2.5]))
def test_literal_cdf_agrees_with_cancellation_free_form(g, beta, cdf, c):
    stable = reference_scales(g, beta=beta, c=c, cdf=cdf)
    literal = reference_scales(g, beta=beta, c=c, cdf=cdf, literal_cdf=True)
    np.testing.assert_allclose(literal, stable, rtol=0, atol=2e-15 * c)


def test_tiny_z_is_accurate():
    # t = 1, z = g / eps = 1e-12: |2Φ(z) - 1| = sqrt(2/π)·z·(1 - z²/6 + …), SPEC trap 2
    s = reference_scales([1e-20], eps=1e-8)[0]
    assert s == pytest.approx(math.sqrt(2 / math.pi) * 1e-12, rel=1e-14)
    assert reference_scales([1e-20], eps=1e-8, cdf="bfo")[0] == pytest.approx(0.851e-12, rel=1e-14)


def test_non_finite_gradient_poisons_only_its_element():
    g = np.ones((4, 2))
    g[:, 1] = [1.0, -2.0, 0.5, 3.0]
    bad = g.copy()
    bad[1, 0] = np.nan
    for fn in (reference_scales, reference_moment_rate, reference_relative_rate):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s = fn(bad, beta=0.9)
        assert not np.isnan(s[0, 0]) and np.all(np.isnan(s[1:, 0]))
        np.testing.assert_array_equal(s[:, 1], fn(g, beta=0.9)[:, 1])
    assert np.isnan(direct_scale(bad, beta=0.9)[0])


BAD = [
    (dict(beta=1.0), "beta"),
    (dict(beta=-0.1), "beta"),
    (dict(beta=math.nan), "beta"),
    (dict(c=0.0), "c"),
    (dict(c=-1.0), "c"),
    (dict(eps=-1e-9), "eps"),
    (dict(eps=math.inf), "eps"),
    (dict(cdf="cauchy"), "cdf"),
]


@pytest.mark.parametrize(("bad", "name"), BAD)
def test_validate_names_the_argument(bad, name):
    args = dict(beta=0.9, c=1.0, eps=1e-8, cdf="normal") | bad
    with pytest.raises(ValueError, match=rf"^{name} must"):
        validate(**args)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        reference_scales([[1.0]], **args)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        direct_scale([[1.0]], **args)
    if name in ("beta", "c"):
        heuristic_args = {k: args[k] for k in ("beta", "c")}
        for fn in (reference_moment_rate, reference_relative_rate):
            with pytest.raises(ValueError, match=rf"^{name} must"):
                fn([[1.0]], **heuristic_args)
    if name == "beta":
        with pytest.raises(ValueError, match="beta must be in \\[0, 1\\)"):
            effective_count(args["beta"], 3)
        with pytest.raises(ValueError, match="beta must"):
            direct_statistics([[1.0]], beta=args["beta"])
