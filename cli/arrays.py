"""The array libraries and devices that ``cprop verify`` and the test suite run the core on.

A :class:`Backend` is one library on one device, with conversions from NumPy test data and back
to float64 NumPy for comparison with the reference. :func:`make_backend` raises
:class:`BackendUnavailable` (with the reason) when the library or the device is absent.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Backend", "BackendUnavailable", "BACKEND_NAMES", "make_backend", "available_backends"]

BACKEND_NAMES = (
    "numpy",
    "numpy-readonly",
    "array-api-strict",
    "torch",
    "jax",
    "torch-cuda",
    "cupy",
)


class BackendUnavailable(RuntimeError):
    """The library is not installed or the device is not present."""


@dataclass(frozen=True)
class Backend:
    """One array library on one device.

    ``readonly`` (NumPy only) makes every input array non-writeable, so any in-place write by
    the code under test raises.
    """

    name: str
    xp: Any
    device: str = "cpu"
    readonly: bool = False

    def dtype(self, name: str) -> Any:
        return getattr(self.xp, name)

    def supports(self, dtype: str) -> bool:
        if dtype == "bfloat16":
            return self.name.startswith("torch") or self.name == "jax"
        if dtype == "float16":
            return self.name != "array-api-strict"  # the standard has no float16
        return True

    def asarray(self, values: Any, dtype: str = "float64") -> Any:
        """``values`` (NumPy-convertible, float64) as an array of this backend in ``dtype``."""
        array = np.array(values, dtype=np.float64)
        if self.name.startswith("torch"):
            import torch

            return torch.from_numpy(array).to(device=self.device, dtype=getattr(torch, dtype))
        if self.name == "jax":
            import jax.numpy as jnp

            return jnp.asarray(array).astype(getattr(jnp, dtype))
        if self.name == "cupy":
            return self.xp.asarray(array).astype(dtype)
        if self.name.startswith("numpy"):
            out = array.astype(dtype)
            out.flags.writeable = not self.readonly
            return out
        return self.xp.asarray(array.astype(dtype))

    def to_numpy(self, array: Any) -> np.ndarray:
        """Any array of this backend as float64 NumPy (on the host)."""
        if self.name.startswith("torch"):
            return array.detach().to("cpu", dtype=__import__("torch").float64).numpy()
        if self.name == "cupy":
            return array.get().astype(np.float64)
        if self.name == "array-api-strict":
            return np.asarray(self.xp.astype(array, self.xp.float64)._array)
        return np.asarray(array, dtype=np.float64)


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BackendUnavailable(f"{module} is not installed ({error})") from None


def make_backend(name: str) -> Backend:
    """The backend called ``name`` (one of BACKEND_NAMES), or BackendUnavailable."""
    if name in ("numpy", "numpy-readonly"):
        return Backend(name, _import("array_api_compat.numpy"), readonly=name == "numpy-readonly")
    if name == "array-api-strict":
        return Backend(name, _import("array_api_strict"))
    if name in ("torch", "torch-cuda"):
        torch = _import("torch")
        if name == "torch-cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA GPU")
        return Backend(name, _import("array_api_compat.torch"), "cuda" if "cuda" in name else "cpu")
    if name == "jax":
        jax = _import("jax")
        jax.config.update("jax_enable_x64", True)  # float64 checks need it; float32 unaffected
        return Backend(name, _import("jax.numpy"), "cpu")
    if name == "cupy":
        cupy = _import("cupy")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as error:  # noqa: BLE001 - any CUDA failure means no usable GPU
            raise BackendUnavailable(f"cupy sees no usable GPU ({error})") from None
        if count < 1:
            raise BackendUnavailable("cupy sees no CUDA GPU")
        return Backend(name, cupy, "cuda")
    raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}; got {name!r}")


def available_backends(names: tuple[str, ...] = BACKEND_NAMES) -> tuple[list[Backend], dict]:
    """(the backends usable here, {name: why not} for the others)."""
    usable, missing = [], {}
    for name in names:
        try:
            usable.append(make_backend(name))
        except BackendUnavailable as error:
            missing[name] = str(error)
    return usable, missing
