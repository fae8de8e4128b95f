"""The fast paths (NumPy in place, numba, CuPy kernel) equal the functional core step.

What "equal" means, per engine (docs/performance.md):

* NumPy engine: statistics and scale bitwise equal to :func:`cprop_core.cprop_step`.
* numba engine: statistics bitwise equal; the scale within 1e-15·c (float64, erf/tanh from
  fdlibm/libm instead of SciPy/NumPy) and within 1e-6·c (float32, rational erf/tanh; SPEC §6
  allows 1e-5·c, 2e-6 at t = 1).
* CuPy kernel (GPU only): within SPEC §6 (float64 1e-12·c, float32 1e-5·c).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cprop_core.backends import numpy as fast

from cprop_core import CDFS, CPropState, cprop_step, init_state

ENGINES = [
    pytest.param("numpy", id="numpy"),
    pytest.param(
        "numba",
        id="numba",
        marks=pytest.mark.skipif(not fast.HAVE_NUMBA, reason="numba is not installed"),
    ),
]
SCALE_TOLERANCE = {  # (engine, dtype) -> max |Δs| / c
    ("numpy", np.float64): 0.0,
    ("numpy", np.float32): 0.0,
    ("numba", np.float64): 1e-15,
    ("numba", np.float32): 1e-6,
}


def _gradients(rng: np.random.Generator, n: int, steps: int, dtype) -> list[np.ndarray]:
    """Mixed magnitudes and signs, a bias, a zero run, then non-finite and overflow values."""
    finfo = np.finfo(dtype)
    sequence = []
    for step in range(steps):
        magnitude = rng.choice([1e-6, 1e-2, 1.0, 1e3], n)
        g = (rng.standard_normal(n) * magnitude + 0.3 * magnitude).astype(dtype)
        g[:4] = 0.0  # all-zero history for these elements
        if step == 2:
            g[4:10] = [np.nan, np.inf, -np.inf, finfo.max, -finfo.max, finfo.max / 2]
        if step == 3:
            g[10:12] = [finfo.max, -finfo.max]
        sequence.append(g)
    return sequence


def _run_both(engine, dtype, beta, eps, cdf, c=1.5, steps=6, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    core_state = init_state(np.zeros(n, dtype))
    fast_state = init_state(np.zeros(n, dtype))
    out = np.empty(n, np.dtype(dtype))
    worst = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow on purpose, as in the core
        for g in _gradients(rng, n, steps, dtype):
            core_state, core_scale = cprop_step(core_state, g, beta=beta, c=c, eps=eps, cdf=cdf)
            fast_state, fast_scale = fast.cprop_step_inplace(
                fast_state, g, beta=beta, c=c, eps=eps, cdf=cdf, out=out, engine=engine
            )
            assert fast_scale is out
            assert fast_state.count == core_state.count
            np.testing.assert_array_equal(fast_state.mean, core_state.mean)
            np.testing.assert_array_equal(fast_state.var, core_state.var)
            np.testing.assert_array_equal(np.isnan(fast_scale), np.isnan(core_scale))
            finite = ~np.isnan(core_scale)
            if finite.any():
                diff = np.abs(fast_scale[finite].astype(float) - core_scale[finite])
                worst = max(worst, float(diff.max()))
    return worst / c


@pytest.mark.numpy
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cdf", CDFS)
@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999])
@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_inplace_step_equals_core(engine, dtype, cdf, beta, eps):
    worst = _run_both(engine, dtype, beta, eps, cdf)
    assert worst <= SCALE_TOLERANCE[(engine, dtype)]


@pytest.mark.numpy
@pytest.mark.parametrize("engine", ENGINES)
def test_non_finite_policy_matches_core(engine):
    g = np.array([np.nan, np.inf, -np.inf, 1.0, 0.0], np.float32)
    state = init_state(np.zeros(5, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        state, scale = fast.cprop_step_inplace(state, g, engine=engine)
        assert np.isnan(scale[:3]).all() and scale[3] == 1.0 and scale[4] == 0.0
        state, scale = fast.cprop_step_inplace(state, np.ones(5, np.float32), engine=engine)
    assert np.isnan(scale[:3]).all() and np.isfinite(scale[3:]).all()
    assert not np.isfinite(state.mean[:3]).any()


@pytest.mark.numpy
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_step_is_fully_confident(engine, dtype):
    """SPEC §2: t = 1 gives s = min(c·|2F(g/ε)-1|, 1) = 1 for |g| ≫ ε, exactly."""
    g = np.array([1e-3, -5.0, 3e4], dtype)
    for cdf in CDFS:
        _, scale = fast.cprop_step_inplace(init_state(g), g, cdf=cdf, engine=engine)
        np.testing.assert_array_equal(scale, np.ones(3, dtype))


@pytest.mark.numpy
@pytest.mark.parametrize("engine", ENGINES)
def test_trees_shapes_and_non_contiguous(engine):
    rng = np.random.default_rng(1)
    grads = {"w": rng.standard_normal((5, 4)), "b": rng.standard_normal(7).astype(np.float32)}
    core_state = init_state(grads)
    fast_state = init_state(grads)
    # a Fortran-ordered state leaf takes the copy-and-write-back route
    fast_state = CPropState(
        0, {**fast_state.mean, "w": np.asfortranarray(fast_state.mean["w"])}, fast_state.var
    )
    for _ in range(3):
        core_state, core_scale = cprop_step(core_state, grads)
        fast_state, fast_scale = fast.cprop_step_inplace(fast_state, grads, engine=engine)
        grads = {k: v * 0.9 + 0.1 for k, v in grads.items()}
    for key in grads:
        np.testing.assert_array_equal(fast_state.mean[key], core_state.mean[key])
        np.testing.assert_allclose(fast_scale[key], core_scale[key], rtol=0, atol=1e-6)


@pytest.mark.numpy
def test_float16_gradient_uses_float32_statistics():
    g = np.array([1.0, -2.0, 3.0], np.float16)
    state = init_state(g)
    state, scale = fast.cprop_step_inplace(state, g, engine="numpy")
    assert state.mean.dtype == np.float32 and scale.dtype == np.float32


@pytest.mark.numpy
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 1.0}, "beta"),
        ({"c": 0.0}, "c must"),
        ({"eps": -1.0}, "eps"),
        ({"cdf": "cauchy"}, "cdf"),
        ({"engine": "fortran"}, "engine"),
        ({"out": np.empty(3, np.float64)}, "out"),
        ({"out": np.empty(4, np.float32)}, "out"),
    ],
)
def test_bad_input_raises_before_any_write(kwargs, message):
    state = init_state(np.zeros(3, np.float32))
    state.mean[:] = 0.5
    before = (state.mean.copy(), state.var.copy())
    with pytest.raises(ValueError, match=message):
        fast.cprop_step_inplace(state, np.ones(3, np.float32), **kwargs)
    np.testing.assert_array_equal(state.mean, before[0])
    np.testing.assert_array_equal(state.var, before[1])


@pytest.mark.numpy
def test_bad_gradient_raises_before_any_write():
    state = init_state(np.zeros(3, np.float32))
    for grad, error in (
        (np.ones(4, np.float32), ValueError),  # shape
        (np.ones(3, np.float64), TypeError),  # would change the statistics' precision
        (np.ones(3, np.int32), TypeError),
    ):
        with pytest.raises(error):
            fast.cprop_step_inplace(state, grad)
        assert state.count == 0 and not state.mean.any() and not state.var.any()
    readonly = init_state(np.zeros(3, np.float32))
    readonly.mean.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        fast.cprop_step_inplace(readonly, np.ones(3, np.float32))


@pytest.mark.numpy
def test_rational_erf_and_tanh_accuracy():
    """The float32 rational erf/tanh of the numba kernel (same formula and operation order,
    evaluated here in NumPy float32) stay within 5e-7 of float64 erf/tanh over [0, 12] and ∞."""
    scipy_special = pytest.importorskip("scipy.special")
    x = np.concatenate([np.linspace(0, 12, 200_001), [np.inf]]).astype(np.float32)
    erf_p, erf_q, tanh_p, tanh_q = fast._fast_coefficients()
    for p, q, limit, reference in (
        (erf_p, erf_q, fast._FAST_ERF_LIMIT, scipy_special.erf),
        (tanh_p, tanh_q, fast._FAST_TANH_LIMIT, np.tanh),
    ):
        clamped = np.minimum(x, np.float32(limit))
        x2 = clamped * clamped
        numerator = np.full_like(x2, p[-1])
        for coefficient in p[-2::-1]:
            numerator = numerator * x2 + coefficient
        denominator = np.full_like(x2, q[-1])
        for coefficient in q[-2::-1]:
            denominator = denominator * x2 + coefficient
        approx = np.minimum(clamped * numerator / denominator, np.float32(1))
        exact = reference(x.astype(np.float64))
        assert np.max(np.abs(approx - exact)) < 5e-7
        assert approx[-1] == 1.0  # saturates exactly: s = min(c, 1) at t = 1 (SPEC §2)


# ---------------------------------------------------------------------------------------------
# CuPy: one fused ElementwiseKernel (GPU only)
# ---------------------------------------------------------------------------------------------


def _cupy():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as error:  # noqa: BLE001 - no driver, no device: skip cleanly
        pytest.skip(f"no CUDA device: {error}")
    return cupy


@pytest.mark.cupy
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cdf", CDFS)
@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999])
@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_cupy_kernel_equals_core(dtype, cdf, beta, eps):
    cupy = _cupy()
    from cprop_core.backends import cupy as cupy_backend

    c = 1.5
    n = 4000
    rng = np.random.default_rng(0)
    core_state = init_state(np.zeros(n, dtype))
    gpu_state = init_state(cupy.zeros(n, dtype))
    tolerance = (1e-12 if dtype == np.float64 else 1e-5) * c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for step, g in enumerate(_gradients(rng, n, 6, dtype)):
            core_state, core_scale = cprop_step(core_state, g, beta=beta, c=c, eps=eps, cdf=cdf)
            gpu_state, gpu_scale = cupy_backend.cprop_step_inplace(
                gpu_state, cupy.asarray(g), beta=beta, c=c, eps=eps, cdf=cdf
            )
            scale = cupy.asnumpy(gpu_scale)
            np.testing.assert_array_equal(np.isnan(scale), np.isnan(core_scale))
            finite = ~np.isnan(core_scale)
            limit = 2e-6 * c if step == 0 and dtype == np.float32 else tolerance
            np.testing.assert_allclose(scale[finite], core_scale[finite], rtol=0, atol=limit)
            np.testing.assert_allclose(
                cupy.asnumpy(gpu_state.mean), core_state.mean, rtol=1e-6, atol=0, equal_nan=True
            )


@pytest.mark.cupy
@pytest.mark.gpu
def test_cupy_bad_input_raises_before_any_write():
    cupy = _cupy()
    from cprop_core.backends import cupy as cupy_backend

    state = init_state(cupy.zeros(3, cupy.float32))
    with pytest.raises(ValueError, match="beta"):
        cupy_backend.cprop_step_inplace(state, cupy.ones(3, cupy.float32), beta=1.0)
    with pytest.raises(ValueError):
        cupy_backend.cprop_step_inplace(state, cupy.ones(4, cupy.float32))
    assert state.count == 0 and not bool(state.mean.any())
