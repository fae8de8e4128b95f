"""The portable erf (array-API operations only) against scipy.special.erf (SPEC §6)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from cprop_core import portable_erf
from cprop_core._namespace import erf_function

xps = pytest.importorskip("array_api_strict")


def _grid(dtype) -> np.ndarray:
    tiny = np.finfo(dtype).tiny
    points = np.concatenate(
        [
            np.linspace(-7.0, 7.0, 400_001),
            np.geomspace(tiny, 30.0, 100_001),
            [0.84375, 1.25, 1 / 0.35, 6.0, 1e30, np.finfo(dtype).max],
        ]
    ).astype(dtype)
    return np.concatenate([points, -points, np.nextafter(points, np.inf)])


@pytest.mark.parametrize("dtype, max_ulp", [(np.float64, 4.0), (np.float32, 2.0)])
def test_portable_erf_within_a_few_ulp_everywhere(dtype, max_ulp):
    x = _grid(dtype)
    got = np.asarray(portable_erf(xps.asarray(x), xps))
    assert got.dtype == dtype
    exact = erf(x.astype(np.float64))  # scipy's float64 erf is within 1 ulp of the truth
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    errors = np.abs(got.astype(np.float64) - exact) / ulp
    assert errors.max() <= max_ulp, (x[errors.argmax()], errors.max())
    assert np.all(np.sign(got) == np.sign(x)) or np.all(got[x == 0] == 0)


def test_portable_erf_special_values():
    x = xps.asarray([0.0, -0.0, np.inf, -np.inf, np.nan])
    got = np.asarray(portable_erf(x, xps))
    np.testing.assert_array_equal(got[:4], [0.0, 0.0, 1.0, -1.0])
    assert np.isnan(got[4])


def test_dispatch_prefers_native_erf():
    import array_api_compat.numpy as npx

    assert erf_function(npx) is erf
    assert erf_function(xps).func is portable_erf


@pytest.mark.torch
def test_dispatch_torch():
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as tx

    assert erf_function(tx) is torch.special.erf
