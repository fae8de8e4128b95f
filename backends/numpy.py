"""NumPy fast path: :func:`cprop_core.cprop_step` in place, near the memory-bandwidth limit.

The functional :func:`cprop_core.cprop_step` is the specification; it allocates a temporary per
operation (about twenty passes over memory per step). This module computes the same step with
the statistics updated *in place* and the scale written into a caller-owned buffer, so a step
streams only what it must: read g, m̂, d; write m̂, d, s (24 bytes per float32 element).

Two engines, chosen by ``engine=``:

* ``"numba"`` (used by default when numba is installed: ``pip install cprop[fast]``): one
  compiled loop per dtype doing the whole step element by element. It equals
  :func:`cprop_core.moments.update_moments` bit for bit on the statistics and
  :func:`cprop_core.scale.cprop_scale` on the scale up to the last bits of erf/tanh, which it
  takes from the C library instead of SciPy (float64: within a few 1e-16; float32: a few ulp).
  erf is the error function of :func:`cprop_core.erf.portable_erf` (fdlibm's algorithm with the
  coefficients imported from there) evaluated in float64, because ``scipy.special.erf`` costs
  ~25 ns per element, ten times the whole memory budget of a step.
* ``"numpy"`` (always available): the same in-place step in blocks of ``CHUNK`` elements, so the
  temporaries of each ufunc stay in cache. Every operation is the core's, in the core's order,
  with the core's ``erf`` (SciPy's): statistics *and* scale are bitwise equal to
  :func:`cprop_core.cprop_step`. Its speed is bounded by ``scipy.special.erf`` for ``cdf='normal'``.

The numba engine is composed of inline per-element blocks (:func:`numba_blocks`); the torch
optimizers' CPU fast path (:mod:`cprop_core.backends.torch`) builds its fused kernels from the
same blocks, so the statistics and scale math exists once.

Non-finite and overflow policy: exactly the core's (docs/math.md, SPEC traps 5 and 6): a NaN/inf
gradient element makes its m̂ non-finite and its scale NaN, other elements are untouched; a
gradient beyond ±L (moments.gradient_limit) saturates to ±L.

>>> import numpy as np
>>> from cprop_core import init_state
>>> state = init_state(np.zeros(3, dtype=np.float32))
>>> scale = np.empty(3, dtype=np.float32)
>>> state, scale = cprop_step_inplace(state, np.array([1.0, -2.0, 0.0], np.float32), out=scale)
>>> state.count, scale.tolist()
(1, [1.0, 1.0, 0.0])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cprop_core import CPropState
from cprop_core import erf as _erf_module
from cprop_core._namespace import erf_function
from cprop_core._tree import Tree, tree_paths, tree_unflatten
from cprop_core.hyperparams import coefficients, validate_hyperparameters
from cprop_core.moments import gradient_limit
from cprop_core.scale import _LOGISTIC, _SQRT1_2
from cprop_core.step import _check_state, _checked_leaves

__all__ = ["CHUNK", "ENGINES", "HAVE_NUMBA", "cprop_step_inplace", "default_engine"]

#: Elements per block of the pure-NumPy engine: 8 float32 temporaries of 32k elements (1 MiB)
#: stay in a core's L2 cache; measured flat between 16k and 128k (docs/performance.md).
CHUNK = 1 << 15
ENGINES = ("numba", "numpy")
_CDF_CODES = {"normal": 0, "logistic": 1, "bfo": 2, "bft": 3}

try:  # numba is the optional extra `fast`
    import numba as _numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    _numba = None

HAVE_NUMBA = _numba is not None


def default_engine() -> str:
    """'numba' when numba is importable, else 'numpy'."""
    return "numba" if HAVE_NUMBA else "numpy"


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def cprop_step_inplace(
    state: CPropState,
    grad: Tree,
    *,
    beta: float = 0.999,
    c: float = 1.0,
    eps: float = 1e-8,
    cdf: str = "normal",
    out: Tree | None = None,
    engine: str | None = None,
) -> tuple[CPropState, Tree]:
    """:func:`cprop_core.cprop_step`, writing m̂ and d into ``state``'s arrays and s into ``out``.

    Same arguments, result and errors as :func:`cprop_core.cprop_step` (every check runs before
    any array is written), plus:

    Args:
        out: array (or tree of arrays, like ``grad``) receiving the scale; it must have the
            statistics' dtype and the gradient's shape. ``None`` allocates it.
        engine: 'numba', 'numpy' or None (:func:`default_engine`).

    Returns:
        ``(CPropState(count + 1, state.mean, state.var), out)``: the state's arrays are the same
        objects, updated in place. The old state object must not be used again.

    The state arrays must be writeable NumPy arrays (``init_state`` of a NumPy array makes them).
    """
    validate_hyperparameters(beta, c, eps, cdf)
    engine = default_engine() if engine is None else engine
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}; got {engine!r}")
    if engine == "numba" and not HAVE_NUMBA:
        raise ValueError("engine='numba' needs numba: pip install 'cprop[fast]'")
    t = _check_state(state, CPropState) + 1
    checked = _checked_leaves(state.mean, grad, "state.mean")
    variances = [leaf for _, leaf in tree_paths(state.var)]
    _checked_leaves(state.var, grad, "state.var")
    for (_, mean, _), var, (path, _) in zip(checked, variances, tree_paths(state.mean)):
        for name, array in (("state.mean", mean), ("state.var", var)):
            if not isinstance(array, np.ndarray) or not array.flags.writeable:
                raise ValueError(f"{name}{path}: expected a writeable numpy.ndarray")
        if np.shares_memory(mean, var):
            raise ValueError(f"state.mean{path} and state.var{path} share memory")
    outputs = _checked_outputs(out, grad, checked)

    step = coefficients(float(beta), t)
    kernel = _numba_leaf if engine == "numba" else _numpy_leaf
    for (_, mean, g), var, scale in zip(checked, variances, outputs):
        kernel(g, mean, var, scale, step, float(c), float(eps), cdf)
    new_state = CPropState(count=t, mean=state.mean, var=state.var)
    return new_state, tree_unflatten(grad, outputs)


def _checked_outputs(out: Tree | None, grad: Tree, checked: list[tuple[Any, Any, Any]]) -> list:
    if out is None:
        return [np.empty(mean.shape, dtype=mean.dtype) for _, mean, _ in checked]
    paths = tree_paths(out)
    if len(paths) != len(checked):
        raise ValueError(f"out: expected {len(checked)} arrays like grad, got {len(paths)}")
    for (path, array), (_, mean, _) in zip(paths, checked):
        if not isinstance(array, np.ndarray) or not array.flags.writeable:
            raise ValueError(f"out{path}: expected a writeable numpy.ndarray")
        if array.shape != mean.shape or array.dtype != mean.dtype:
            raise ValueError(
                f"out{path}: expected shape {mean.shape} and dtype {mean.dtype}, "
                f"got {array.shape} and {array.dtype}"
            )
        if np.shares_memory(array, mean):
            raise ValueError(f"out{path} shares memory with the state")
    return [array for _, array in paths]


# ---------------------------------------------------------------------------------------------
# Pure-NumPy engine: the core's operations, in the core's order, block by block
# ---------------------------------------------------------------------------------------------


def _numpy_leaf(g, mean, var, scale, step, c: float, eps: float, cdf: str) -> None:
    """One leaf, in blocks of CHUNK; see :func:`_numpy_block` for the math."""
    flat = [_flat_view(a) for a in (g, mean, var, scale)]
    if all(view is not None for view in flat):
        g1, m1, d1, s1 = flat
        work = _Workspace(min(CHUNK, g1.size), g1.dtype)
        for start in range(0, g1.size, CHUNK):
            block = slice(start, start + CHUNK)
            _numpy_block(g1[block], m1[block], d1[block], s1[block], step, c, eps, cdf, work)
        return
    # Non-contiguous arrays: compute on contiguous copies, then write back.
    g_c, m_c, d_c, s_c = (np.ascontiguousarray(a) for a in (g, mean, var, scale))
    _numpy_leaf(g_c, m_c, d_c, s_c, step, c, eps, cdf)
    for target, source in ((mean, m_c), (var, d_c), (scale, s_c)):
        np.copyto(target, source)


def _flat_view(array: np.ndarray) -> np.ndarray | None:
    """A 1-d view sharing memory with ``array``, or None when there is none (non-contiguous)."""
    if not array.flags.c_contiguous:
        return None
    return array.reshape(-1)


class _Workspace:
    """Block-sized temporaries reused for every block of one step."""

    def __init__(self, size: int, dtype: np.dtype) -> None:
        self.new_mean = np.empty(size, dtype)
        self.delta = np.empty(size, dtype)
        self.work = np.empty(size, dtype)
        self.clipped = np.empty(size, dtype)
        self.flags = np.empty(size, bool)
        self.other_flags = np.empty(size, bool)


def _numpy_block(g, mean, var, scale, step, c, eps, cdf, work: _Workspace) -> None:
    """One block; each line names the core operation it equals (same ufunc, same order).

    The core's ``where``/``clip`` fix-ups only change an element whose new m̂ is non-finite, or
    whose se is not > 0; the common case is detected with one ``all()`` per block and skips
    them.
    """
    n = g.size
    new_mean, delta, tmp = work.new_mean[:n], work.delta[:n], work.work[:n]
    finite, flags = work.flags[:n], work.other_flags[:n]
    limit = gradient_limit(var.dtype, np)

    # moments.clip_gradient: ±L where finite (into a work buffer: g is the caller's)
    clipped = work.clipped[:n]
    np.copyto(clipped, g)
    np.isfinite(g, out=flags)
    np.clip(clipped, -limit, limit, out=clipped, where=flags)
    # moments.update_moments: delta = grad - mean
    np.subtract(clipped, mean, out=delta)
    # moments.update_mean: new = keep * mean + alpha * grad
    np.multiply(mean, step.keep, out=new_mean)
    np.multiply(clipped, step.alpha, out=tmp)
    np.add(new_mean, tmp, out=new_mean)
    np.isfinite(new_mean, out=finite)
    all_finite = bool(finite.all())
    # moments.update_variance: keep * (var + alpha * (delta * delta))
    np.multiply(delta, delta, out=delta)
    np.multiply(delta, step.alpha, out=delta)
    np.add(var, delta, out=delta)
    np.multiply(delta, step.keep, out=var)
    np.copyto(mean, new_mean)

    # scale.standard_error: sqrt(clip(d, min=0) / (n - 1 + ε)) + ε  (0 when n - 1 + ε = 0)
    denominator = step.excess + eps
    # scale.z_score: |m̂| / se, with inf / 0 where se = 0 (or NaN)
    magnitude = np.abs(new_mean, out=new_mean)
    if denominator == 0.0:
        np.greater(magnitude, 0, out=flags)
        np.copyto(tmp, 0)
        np.copyto(tmp, math.inf, where=flags)
    else:
        np.clip(var, 0.0, None, out=tmp)
        np.divide(tmp, denominator, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(tmp, eps, out=tmp)
        np.greater(tmp, 0, out=flags)
        positive = bool(flags.all())
        if positive:
            np.divide(magnitude, tmp, out=tmp)
        else:
            se = tmp.copy()
            np.divide(magnitude, se, out=tmp, where=flags)
            np.logical_not(flags, out=flags)
            np.copyto(tmp, 0, where=flags)
            np.logical_and(flags, magnitude > 0, out=flags)
            np.copyto(tmp, math.inf, where=flags)
    # scale.conformity: |2F(z) - 1|
    z = tmp
    if cdf == "normal":
        np.multiply(z, _SQRT1_2, out=z)
        z[...] = erf_function(np)(z)  # SciPy's ufunc, or the portable erf without SciPy
    elif cdf == "logistic":
        np.multiply(z, _LOGISTIC, out=z)
        np.tanh(z, out=z)
    elif cdf == "bfo":
        np.multiply(z, 0.851, out=z)
        np.tanh(z, out=z)
    else:  # bft
        np.clip(z, None, 64.0, out=z)
        np.multiply(z, z, out=delta)
        np.multiply(delta, 0.03528, out=delta)
        np.add(delta, 0.7988, out=delta)
        np.multiply(z, delta, out=z)
        np.tanh(z, out=z)
    # scale.clamp_scale: min(c · raw, 1)
    np.multiply(z, c, out=z)
    np.clip(z, None, 1.0, out=scale)
    # scale.mark_non_finite: NaN where m̂ is non-finite
    if not all_finite:
        np.logical_not(finite, out=finite)
        np.copyto(scale, math.nan, where=finite)


# ---------------------------------------------------------------------------------------------
# numba engine: the whole step in one loop
# ---------------------------------------------------------------------------------------------


def _numba_leaf(g, mean, var, scale, step, c: float, eps: float, cdf: str) -> None:
    flat = [_flat_view(a) for a in (g, mean, var, scale)]
    if any(view is None for view in flat):
        g_c, m_c, d_c, s_c = (np.ascontiguousarray(a) for a in (g, mean, var, scale))
        _numba_leaf(g_c, m_c, d_c, s_c, step, c, eps, cdf)
        for target, source in ((mean, m_c), (var, d_c), (scale, s_c)):
            np.copyto(target, source)
        return
    g1, m1, d1, s1 = flat
    constants, zero_denominator = kernel_constants(step, c, eps, m1.dtype)
    kernel = _step_kernel(cdf, m1.dtype == np.float32)
    kernel(g1, m1, d1, s1, constants, zero_denominator, conformity_coefficients())


def kernel_constants(step, c: float, eps: float, dtype: Any) -> tuple[np.ndarray, bool]:
    """The scalars of one CProp step for the numba blocks: (array of ``dtype``, n − 1 + ε == 0).

    Every scalar is in the arrays' dtype, as NumPy applies a Python float to a float32 array
    (NEP 50): the statistics then round exactly like the core's. Index ``K_*`` names them; a
    kernel reads them into locals before its loop (see :func:`numba_blocks`).
    """
    denominator = step.excess + eps
    constants = np.array(
        [
            step.alpha,
            step.keep,
            denominator,
            eps,
            c,
            gradient_limit(np.dtype(dtype), np),
            _SQRT1_2,
            _LOGISTIC,
            0.851,
            0.03528,
            0.7988,
            64.0,
            0.0,
            1.0,
            math.inf,
            _FAST_ERF_LIMIT,
            _FAST_TANH_LIMIT,
        ],
        dtype=dtype,
    )
    return constants, denominator == 0.0


# float32 erf and tanh as odd rational functions x·P(x²)/Q(x²) on a clamped argument: the
# coefficients of Eigen's `generic_fast_erf_float` / `generic_fast_tanh_float` (also XLA's).
# Measured against float64 erf/tanh over [0, 12]: at most 4.5e-7 (erf) and 4.0e-7 (tanh)
# absolute, i.e. a few float32 ulp, well inside SPEC §6's 1e-5·c (2e-6 at t = 1);
# tests/backends/test_fastpaths.py checks both bounds. erf rounds to exactly 1 from x = 4 on and
# tanh from x = 7.905 on, so s = min(c, 1) at t = 1 exactly as the core (SPEC §2).
_FAST_ERF = (
    (
        -1.60960333262415e-02,
        -2.95459980854025e-03,
        -7.34990630326855e-04,
        -5.69250639462346e-05,
        -2.10102402082508e-06,
        2.77068142495902e-08,
        -2.72614225801306e-10,
    ),
    (
        -1.42647390514189e-02,
        -7.37332916720468e-03,
        -1.68282697438203e-03,
        -2.13374055278905e-04,
        -1.45660718464996e-05,
    ),
)
_FAST_TANH = (
    (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    ),
    (
        4.89352518554385e-03,
        2.26843463243900e-03,
        1.18534705686654e-04,
        1.19825839466702e-06,
    ),
)
_FAST_ERF_LIMIT = 4.0
_FAST_TANH_LIMIT = 7.90531110763549805


def _fast_coefficients() -> tuple[tuple[np.float32, ...], ...]:
    return tuple(tuple(np.float32(x) for x in c) for pair in (_FAST_ERF, _FAST_TANH) for c in pair)


def _fast_coefficients() -> tuple[tuple[np.float32, ...], ...]:
    return tuple(tuple(np.float32(x) for x in c) for pair in (_FAST_ERF, _FAST_TANH) for c in pair)


def conformity_coefficients() -> tuple[tuple[np.float32, ...], ...]:
    """(erf P, erf Q, tanh P, tanh Q) of the float32 rational functions, for ``conformity``."""
    global _COEFFICIENTS
    if _COEFFICIENTS is None:
        _COEFFICIENTS = _fast_coefficients()
    return _COEFFICIENTS


_COEFFICIENTS = None


_BLOCKS = None
_STEP_KERNELS: dict[tuple[str, bool], Any] = {}


def numba_blocks():
    """The numba building blocks of a CProp step, one element at a time (built on first use).

    A namespace of ``inline="always"`` numba functions that other fused kernels (the torch
    optimizers of :mod:`cprop_core.backends.torch`) compose, so the math exists once:

    * ``njit(**options)``: numba.njit with this module's options (nogil, NumPy error model);
    * ``statistics(g, m, d, alpha, keep, largest) -> (m, d)``: moments.update_moments;
    * ``update_mean(g, m, alpha, keep, largest) -> m``: moments.update_mean;
    * ``z_score(m, d, denominator, eps, zero_denominator, zero, inf)``: scale.standard_error
      then scale.z_score; ``z_score_reciprocal`` takes 1/denominator instead (1 ulp on se);
    * ``variance_from_moment(v, 1/(1 − β^t), m, first, zero)``: d = v̂ − m̂² (0 at t = 1);
    * ``make_conformity(cdf, fast)``: a function ``conformity(z, q, coefficients)`` =
      scale.conformity for one CDF, ``q = cdf_constants(k)``; ``fast`` (float32) uses the
      rational erf/tanh, else fdlibm's erf and libm's tanh;
    * ``cdf_constants(k)``: the CDF scalars of :func:`kernel_constants`'s array, as locals;
    * ``finish(raw, m, c, one, nan)``: scale.clamp_scale then scale.mark_non_finite;
    * ``fma(a, b, c)``: a·b + c rounded once (LLVM's fma), as torch's CPU lerp/addcmul/add
      with alpha compute it.

    Constants travel as scalars of the arrays' dtype and are read into locals before the loop:
    read from an array inside the loop, they could alias the outputs, and LLVM would neither
    hoist them nor vectorise (measured 10x slower).
    """
    global _BLOCKS
    if _BLOCKS is None:
        _BLOCKS = _build_blocks()
    return _BLOCKS


def _step_kernel(cdf: str, fast: bool):
    """The CProp step kernel of one CDF (fast: float32 erf/tanh), compiled on first call."""
    key = (cdf, fast)
    if key not in _STEP_KERNELS:
        _STEP_KERNELS[key] = _make_step_kernel(numba_blocks(), _CDF_CODES[cdf], fast)
    return _STEP_KERNELS[key]


def _make_step_kernel(blocks, cdf: int, fast: bool):
    # One compiled loop per CDF: a CDF switch inside the loop kept LLVM from vectorising it
    # (measured 3x slower).
    statistics, z_score, finish = blocks.statistics, blocks.z_score, blocks.finish
    cdf_constants, conformity = blocks.cdf_constants, blocks.make_conformity(cdf, fast)

    @blocks.njit()
    def kernel(g, mean, var, scale, k, zero_denominator, coefficients):
        """cprop_core.cprop_step for one contiguous leaf, in place."""
        alpha, keep, denominator, eps, c, largest = k[0], k[1], k[2], k[3], k[4], k[5]
        zero, one, inf = k[12], k[13], k[14]
        nan = inf - inf
        q = cdf_constants(k)
        for i in range(g.size):
            new_mean, new_var = statistics(g[i], mean[i], var[i], alpha, keep, largest)
            mean[i] = new_mean
            var[i] = new_var
            z = z_score(new_mean, new_var, denominator, eps, zero_denominator, zero, inf)
            scale[i] = finish(conformity(z, q, coefficients), new_mean, c, one, nan)

    return kernel


def _build_blocks():
    from types import SimpleNamespace

    from numba.extending import intrinsic

    def njit(**options):
        # error_model="numpy": x/0 gives inf/NaN like NumPy instead of raising.
        return _numba.njit(nogil=True, error_model="numpy", **options)

    @intrinsic
    def fma(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            return builder.fma(*args)

        return a(a, b, c), codegen

    pp, qq = _erf_module._PP, _erf_module._QQ
    pa, qa = _erf_module._PA, _erf_module._QA
    ra, sa = _erf_module._RA, _erf_module._SA
    rb, sb = _erf_module._RB, _erf_module._SB
    erx = _erf_module._ERX

    @njit()
    def horner(x, coefficients):
        result = 0.0
        for k in range(len(coefficients) - 1, -1, -1):
            result = result * x + coefficients[k]
        return result

    @njit()
    def erf_nonnegative(x):
        """erf(x) for x ≥ 0 (or NaN) in float64: cprop_core.erf.portable_erf's branches."""
        if x < 0.84375:
            z = x * x
            return x + x * (horner(z, pp) / horner(z, qq))
        if x < 1.25:
            s = x - 1.0
            return erx + horner(s, pa) / horner(s, qa)
        if x < 6.0:
            w = 1.0 / (x * x)
            if x < 1.0 / 0.35:
                ratio = horner(w, ra) / horner(w, sa)
            else:
                ratio = horner(w, rb) / horner(w, sb)
            truncated = math.floor(x * 262144.0) / 262144.0  # 2**18: z·z exact
            tail = math.exp(-truncated * truncated - 0.5625)
            tail *= math.exp((truncated - x) * (truncated + x) + ratio)
            return 1.0 - tail / x
        if x >= 6.0:
            return 1.0
        return x  # NaN

    @njit(inline="always")
    def update_mean(gi, mi, alpha, keep, limit):
        """moments.clip_gradient then moments.update_mean, one element."""
        if math.isfinite(gi):
            gi = min(max(gi, -limit), limit)
        return keep * mi + alpha * gi

    @njit(inline="always")
    def statistics(gi, mi, vi, alpha, keep, limit):
        """moments.update_moments (clip_gradient, update_mean, update_variance), one element."""
        if math.isfinite(gi):
            gi = min(max(gi, -limit), limit)
        delta = gi - mi
        new_mean = keep * mi + alpha * gi
        new_var = keep * (vi + alpha * (delta * delta))
        return new_mean, new_var

    @njit(inline="always")
    def z_score(new_mean, new_var, denominator, eps, zero_denominator, zero, inf):
        """scale.standard_error then scale.z_score, one element."""
        magnitude = abs(new_mean)
        if zero_denominator:
            se = zero
        else:
            clipped = zero if new_var < zero else new_var
            se = math.sqrt(clipped / denominator) + eps
        if se > zero:
            return magnitude / se
        return inf if magnitude > zero else zero

    @njit(inline="always")
    def z_score_reciprocal(
        new_mean, new_var, inverse_denominator, eps, zero_denominator, zero, inf
    ):
        """z_score with 1/(n − 1 + ε) precomputed: a multiply instead of a divide, for kernels
        whose loop is compute-bound (the torch optimizers); se moves by at most 1 ulp."""
        magnitude = abs(new_mean)
        if zero_denominator:
            se = zero
        else:
            clipped = zero if new_var < zero else new_var
            se = math.sqrt(clipped * inverse_denominator) + eps
        if se > zero:
            return magnitude / se
        return inf if magnitude > zero else zero

    @njit(inline="always")
    def variance_from_moment(second_moment, inverse_correction, new_mean, first, zero):
        """d = v̂ − m̂² from a stored raw second moment v (v̂ = v/(1 − β^t), by its precomputed
        reciprocal; SPEC §3's (m, v) storage), exactly 0 at t = 1 (SPEC trap 1)."""
        if first:
            return zero
        return second_moment * inverse_correction - new_mean * new_mean

    @njit(inline="always")
    def finish(raw, new_mean, c, one, nan):
        """scale.clamp_scale then scale.mark_non_finite, one element."""
        s = c * raw
        s = one if s > one else s
        return s if math.isfinite(new_mean) else nan

    @njit(inline="always")
    def cdf_constants(k):
        """(√½, logistic, bfo, bft cube, bft linear, bft bound, 1, erf limit, tanh limit)."""
        return (k[6], k[7], k[8], k[9], k[10], k[11], k[13], k[15], k[16])

    @njit(inline="always")
    def odd_rational(x, numerator, denominator, one):
        """min(x·P(x²)/Q(x²), 1) in the dtype of x (x already clamped to its range)."""
        x2 = x * x
        p = numerator[len(numerator) - 1]
        for j in range(len(numerator) - 2, -1, -1):
            p = p * x2 + numerator[j]
        q = denominator[len(denominator) - 1]
        for j in range(len(denominator) - 2, -1, -1):
            q = q * x2 + denominator[j]
        r = x * p / q
        return one if r > one else r

    def make_conformity(cdf: int, fast: bool):
        """scale.conformity |2F(z) − 1| for z ≥ 0 (or inf/NaN), one CDF, one element."""
        if fast:

            @njit(inline="always")
            def conformity(z, q, coefficients):
                """Vectorisable (float32): erf and tanh as rational functions, no libm call."""
                erf_p, erf_q, tanh_p, tanh_q = coefficients
                one, erf_limit, tanh_limit = q[6], q[7], q[8]
                if cdf == 0:
                    x = z * q[0]
                    return odd_rational(x if x < erf_limit else erf_limit, erf_p, erf_q, one)
                if cdf == 1:
                    x = q[1] * z
                elif cdf == 2:
                    x = q[2] * z
                else:
                    bounded = q[5] if z > q[5] else z
                    x = bounded * (q[3] * (bounded * bounded) + q[4])
                return odd_rational(x if x < tanh_limit else tanh_limit, tanh_p, tanh_q, one)

            return conformity

        @njit(inline="always")
        def conformity_accurate(z, q, coefficients):
            """Accurate (float64): erf as portable_erf's branches, tanh from libm."""
            if cdf == 0:
                return erf_nonnegative(np.float64(z * q[0]))
            if cdf == 1:
                return math.tanh(q[1] * z)
            if cdf == 2:
                return math.tanh(q[2] * z)
            bounded = q[5] if z > q[5] else z
            return math.tanh(bounded * (q[3] * (bounded * bounded) + q[4]))

        return conformity_accurate

    return SimpleNamespace(
        njit=njit,
        fma=fma,
        update_mean=update_mean,
        statistics=statistics,
        z_score=z_score,
        z_score_reciprocal=z_score_reciprocal,
        variance_from_moment=variance_from_moment,
        finish=finish,
        cdf_constants=cdf_constants,
        make_conformity=make_conformity,
    )
