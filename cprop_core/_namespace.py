"""Array-namespace resolution and the one dispatch point for native special functions.

Every other module of the core is written against the array API standard; the only
library-specific code is here: which ``erf`` to use for a namespace, and how to tell the user
that a gradient and a state live in different libraries or on different devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat as compat

from .erf import portable_erf

__all__ = ["namespace_of", "erf_function", "statistics_dtype", "check_same_place"]


def namespace_of(*arrays: Any, argument: str = "grad") -> Any:
    """The array-API namespace of ``arrays``; a TypeError naming ``argument`` otherwise."""
    for array in arrays:
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            raise TypeError(f"{argument}: expected an array, got {type(array).__name__}")
    try:
        return compat.array_namespace(*arrays)
    except TypeError as error:
        kinds = sorted({type(a).__module__ + "." + type(a).__qualname__ for a in arrays})
        raise TypeError(
            f"{argument}: expected arrays of a single array-API library, got {', '.join(kinds)} "
            f"({error})"
        ) from None


@functools.cache
def _native_erf(xp: Any) -> Callable[[Any], Any] | None:
    """The namespace's own erf, or None where it has none."""
    if compat.is_torch_namespace(xp):
        import torch

        return torch.special.erf
    if compat.is_jax_namespace(xp):
        import jax.scipy.special

        return jax.scipy.special.erf
    if compat.is_cupy_namespace(xp):
        import cupyx.scipy.special

        return cupyx.scipy.special.erf
    if compat.is_numpy_namespace(xp):
        try:
            import scipy.special
        except ImportError:  # scipy is optional for the core
            return None
        return scipy.special.erf
    return None


def erf_function(xp: Any) -> Callable[[Any], Any]:
    """erf for namespace ``xp``: the native one when there is one, else :func:`portable_erf`."""
    native = _native_erf(xp)
    if native is not None:
        return native
    return functools.partial(portable_erf, xp=xp)


def statistics_dtype(xp: Any, dtype: Any, argument: str) -> Any:
    """Dtype of the statistics for a gradient/parameter dtype (SPEC §6, trap 3).

    float64 → float64, float32 → float32, float16/bfloat16 → float32. Anything that is not a real
    floating dtype is refused with a TypeError naming ``argument``.
    """
    if xp.isdtype(dtype, "real floating"):
        if dtype == xp.float64:
            return xp.float64
        return xp.float32
    if xp.isdtype(dtype, "complex floating"):
        raise TypeError(
            f"{argument}: complex dtype {dtype} is not supported; pass the real view "
            "(e.g. torch.view_as_real) so that real and imaginary parts are scaled separately"
        )
    raise TypeError(f"{argument}: expected a real floating dtype, got {dtype}")


def check_same_place(xp: Any, reference: Any, other: Any, path: str) -> None:
    """Raise a ValueError when ``other`` is on another device than ``reference``."""
    device_a, device_b = compat.device(reference), compat.device(other)
    if device_a != device_b:
        raise ValueError(
            f"grad{path}: on device {device_b}, but the state is on device {device_a}; "
            "move the gradient or re-create the state with init_state"
        )
