"""A portable error function written with array-API operations only.

Used by the core for array namespaces that have no ``erf`` of their own (array-api-strict and
other minimal namespaces); NumPy, PyTorch, CuPy and JAX use their native ``erf`` (see
:func:`cprop_core._namespace.erf_function`).

The algorithm is the classic one of Sun's fdlibm ``s_erf.c`` (freely distributable; the
polynomial coefficients below are those published there), restated branch-free so that it runs
elementwise on whole arrays:

* |x| < 0.84375:          erf(x) = x + x·P(x²)/Q(x²)
* 0.84375 ≤ |x| < 1.25:   erf(x) = sign(x)·(erx + P1(s)/Q1(s)),  s = |x| - 1
* 1.25 ≤ |x| < 6:         erf(x) = sign(x)·(1 - exp(-z² - 0.5625)·exp((z-|x|)(z+|x|) + R/S)/|x|),
                          R/S rational in 1/x², z = |x| truncated so that z² is exact
* |x| ≥ 6:                erf(x) = sign(x)

The same branches serve float32 and float64; only the truncation of z depends on the dtype
(z keeps 21 significant bits in float64 and 12 in float32, so z·z is exact in both). Measured
against ``scipy.special.erf`` over the whole real line: see ``tests/core/test_erf.py``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["portable_erf"]

_ERX = 8.45062911510467529297e-01
_PP = (
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
)
_QQ = (
    1.0,
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
)
_PA = (
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
)
_QA = (
    1.0,
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
)
_RA = (
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e01,
    -6.23753324503260060396e01,
    -1.62396669462573470355e02,
    -1.84605092906711035994e02,
    -8.12874355063065934246e01,
    -9.81432934416914548592e00,
)
_SA = (
    1.0,
    1.96512716674392571292e01,
    1.37657754143519042600e02,
    4.34565877475229228821e02,
    6.45387271733267880336e02,
    4.29008140027567833386e02,
    1.08635005541779435134e02,
    6.57024977031928170135e00,
    -6.04244152148580987438e-02,
)
_RB = (
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e01,
    -1.60636384855821916062e02,
    -6.37566443368389627722e02,
    -1.02509513161107724954e03,
    -4.83519191608651397019e02,
)
_SB = (
    1.0,
    3.03380607434824582924e01,
    3.25792512996573918826e02,
    1.53672958608443695994e03,
    3.19985821950859553908e03,
    2.55305040643316442583e03,
    4.74528541206955367215e02,
    -2.24409524465858183362e01,
)


def _horner(x: Any, coefficients: tuple[float, ...]) -> Any:
    """Σ coefficients[k]·x^k by Horner's rule."""
    result = coefficients[-1] + 0 * x
    for coefficient in reversed(coefficients[:-1]):
        result = result * x + coefficient
    return result


def portable_erf(x: Any, xp: Any) -> Any:
    """erf(x) elementwise for a real floating array ``x`` of namespace ``xp``.

    Within a few ulp of ``scipy.special.erf`` in float32 and float64; erf(±inf) = ±1 and NaN
    propagates.
    """
    dtype = x.dtype
    ax = xp.abs(x)
    # Each branch sees its argument clipped into its own interval so that no branch produces
    # inf or NaN that a later `where` would have to discard.
    small = xp.clip(ax, 0.0, 0.84375)
    z = small * small
    erf_small = small + small * (_horner(z, _PP) / _horner(z, _QQ))

    s = xp.clip(ax, 0.84375, 1.25) - 1.0
    erf_mid = _ERX + _horner(s, _PA) / _horner(s, _QA)

    tail = xp.clip(ax, 1.25, 6.0)
    w = 1.0 / (tail * tail)
    ratio_a = _horner(w, _RA) / _horner(w, _SA)
    ratio_b = _horner(w, _RB) / _horner(w, _SB)
    ratio = xp.where(tail < 1.0 / 0.35, ratio_a, ratio_b)
    scale = 2.0**18 if dtype == xp.float64 else 2.0**9
    truncated = xp.floor(tail * scale) / scale  # z·z is exact: few significant bits
    erfc_tail = (
        xp.exp(-truncated * truncated - 0.5625)
        * xp.exp((truncated - tail) * (truncated + tail) + ratio)
        / tail
    )
    erf_tail = 1.0 - erfc_tail

    magnitude = xp.where(
        ax < 0.84375,
        erf_small,
        xp.where(ax < 1.25, erf_mid, xp.where(ax < 6.0, erf_tail, xp.ones_like(ax))),
    )
    signed = xp.where(x < 0, -magnitude, magnitude)
    return xp.where(xp.isnan(x), x, signed)
