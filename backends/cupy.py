"""CuPy fast path: :func:`cprop_core.cprop_step` as one fused elementwise CUDA kernel.

The functional core launches about twenty kernels per step, each with its own temporary. Here
one ``cupy.ElementwiseKernel`` reads g, m̂, d and writes m̂, d and the scale s, in float32 or
float64 (float16/bfloat16 gradients are upcast by the core's checks first, SPEC §6): the step
moves the minimum 24 bytes per float32 element.

Each line of the kernel is an operation of the core, in the core's order (the comments name the
core function); ``--fmad=false`` keeps NVRTC from contracting a·b + c into one FMA, so the
statistics round exactly as :func:`cprop_core.moments.update_moments` does on the host. erf and
tanh are CUDA's (within 2 ulp of SciPy's): the scale equals
:func:`cprop_core.scale.cprop_scale` within SPEC §6 (tests/backends/test_fastpaths.py, marked
``gpu``). The NaN and saturation policy is the core's (docs/math.md).

>>> import cupy  # doctest: +SKIP
>>> from cprop_core import init_state  # doctest: +SKIP
>>> state = init_state(cupy.zeros(3, dtype=cupy.float32))  # doctest: +SKIP
>>> state, scale = cprop_step_inplace(state, cupy.asarray([1.0, -2.0, 0.0], cupy.float32))
... # doctest: +SKIP
>>> scale.tolist()  # doctest: +SKIP
[1.0, 1.0, 0.0]
"""

from __future__ import annotations

import functools
from typing import Any

from cprop_core import CPropState
from cprop_core._tree import Tree, tree_paths, tree_unflatten
from cprop_core.hyperparams import coefficients, validate_hyperparameters
from cprop_core.moments import gradient_limit
from cprop_core.scale import _LOGISTIC, _SQRT1_2
from cprop_core.step import _check_state, _checked_leaves

__all__ = ["cprop_step_inplace", "step_kernel"]

_CDF_CODES = {"normal": 0, "logistic": 1, "bfo": 2, "bft": 3}

# One thread per element. `mean`, `var` are read and written in place; every scalar arrives as
# the arrays' type T, as NumPy applies a Python float to a float32 array (NEP 50).
_OPERATION = r"""
    // moments.clip_gradient: g saturated to ±limit where finite (limit = gradient_limit)
    T gc = g;
    if (isfinite(gc)) gc = gc > limit ? limit : (gc < -limit ? -limit : gc);
    // moments.update_moments: delta = g - m̂
    const T old_mean = mean;
    const T delta = gc - old_mean;
    // moments.update_mean: (1-α)·m̂ + α·g
    const T new_mean = keep * old_mean + alpha * gc;
    // moments.update_variance: keep·(d + α·δ²)
    const T new_var = keep * (var + alpha * (delta * delta));
    mean = new_mean;
    var = new_var;
    // scale.standard_error and scale.z_score
    const T magnitude = fabs(new_mean);
    T se = T(0);
    if (!zero_denominator) {
        const T clipped = new_var < T(0) ? T(0) : new_var;
        se = sqrt(clipped / denominator) + eps;
    }
    T z;
    if (se > T(0)) {
        z = magnitude / se;
    } else {
        z = magnitude > T(0) ? T(CPROP_INF) : T(0);
    }
    // scale.conformity: |2F(z) - 1|
    T raw;
    if (cdf == 0) {
        raw = erf(z * T(CPROP_SQRT1_2));
    } else if (cdf == 1) {
        raw = tanh(T(CPROP_LOGISTIC) * z);
    } else if (cdf == 2) {
        raw = tanh(T(0.851) * z);
    } else {
        const T bounded = z > T(64) ? T(64) : z;
        raw = tanh(bounded * (T(0.03528) * (bounded * bounded) + T(0.7988)));
    }
    // scale.clamp_scale and scale.mark_non_finite
    T s = c * raw;
    if (s > T(1)) s = T(1);
    scale = isfinite(new_mean) ? s : T(CPROP_NAN);
"""

_PREAMBLE = f"""
#define CPROP_INF (__longlong_as_double(0x7ff0000000000000ULL))
#define CPROP_NAN (__longlong_as_double(0xfff8000000000000ULL))
#define CPROP_SQRT1_2 {_SQRT1_2!r}
#define CPROP_LOGISTIC {_LOGISTIC!r}
"""


@functools.cache
def step_kernel() -> Any:
    """The ``cupy.ElementwiseKernel`` of one step (compiled per dtype on first call)."""
    import cupy

    return cupy.ElementwiseKernel(
        in_params=(
            "T g, T alpha, T keep, T denominator, T eps, T c, T limit, "
            "bool zero_denominator, int32 cdf"
        ),
        out_params="T mean, T var, T scale",
        operation=_OPERATION,
        name="cprop_step",
        preamble=_PREAMBLE,
        options=("--fmad=false",),
    )


def cprop_step_inplace(
    state: CPropState,
    grad: Tree,
    *,
    beta: float = 0.999,
    c: float = 1.0,
    eps: float = 1e-8,
    cdf: str = "normal",
    out: Tree | None = None,
) -> tuple[CPropState, Tree]:
    """:func:`cprop_core.cprop_step` on CuPy arrays, updating ``state``'s arrays in place.

    Same arguments, checks (all before any write) and result as the core, plus ``out``: the
    array (or tree like ``grad``) receiving the scale, or None to allocate it. Returns
    ``(CPropState(count + 1, state.mean, state.var), out)``; the old state object must not be
    used again.
    """
    import cupy

    validate_hyperparameters(beta, c, eps, cdf)
    t = _check_state(state, CPropState) + 1
    checked = _checked_leaves(state.mean, grad, "state.mean")
    _checked_leaves(state.var, grad, "state.var")
    variances = [leaf for _, leaf in tree_paths(state.var)]
    if out is None:
        outputs = [cupy.empty_like(mean) for _, mean, _ in checked]
    else:
        outputs = [leaf for _, leaf in tree_paths(out)]
        if len(outputs) != len(checked):
            raise ValueError(f"out: expected {len(checked)} arrays like grad, got {len(outputs)}")
        for (path, leaf), (_, mean, _) in zip(tree_paths(out), checked):
            if not isinstance(leaf, cupy.ndarray) or leaf.shape != mean.shape:
                raise ValueError(f"out{path}: expected a cupy array of shape {mean.shape}")
            if leaf.dtype != mean.dtype:
                raise ValueError(f"out{path}: expected dtype {mean.dtype}, got {leaf.dtype}")
    for (_, mean, _), var in zip(checked, variances):
        if not isinstance(mean, cupy.ndarray) or not isinstance(var, cupy.ndarray):
            raise ValueError("state: expected cupy arrays (make it with init_state)")

    step = coefficients(float(beta), t)
    denominator = step.excess + float(eps)
    kernel = step_kernel()
    for (_, mean, g), var, scale in zip(checked, variances, outputs):
        dtype = mean.dtype.type
        kernel(
            g,
            dtype(step.alpha),
            dtype(step.keep),
            dtype(denominator),
            dtype(eps),
            dtype(c),
            dtype(gradient_limit(mean.dtype, cupy)),
            denominator == 0.0,
            _CDF_CODES[cdf],
            mean,
            var,
            scale,
        )
    return CPropState(count=t, mean=state.mean, var=state.var), tree_unflatten(grad, outputs)
