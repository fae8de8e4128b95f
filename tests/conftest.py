"""Shared test fixtures: the backend matrix and hypothesis profiles.

``backend`` runs a test once per array library (and device) that is importable here; a missing
library or GPU skips cleanly. The Backend objects come from ``cprop_core.cli.arrays``, the same
ones ``cprop verify`` uses.
"""

from __future__ import annotations

import os

import pytest
from cprop_core.cli.arrays import Backend, BackendUnavailable, make_backend
from hypothesis import HealthCheck, settings

# "ci" (the default, used by `make test`) is derandomized: the same 2,000 examples per property
# on every run, so CI cannot turn red by chance; "dev" explores new random examples each run.
for _name, _examples in (("ci", 2000), ("dev", 200)):
    settings.register_profile(
        _name,
        max_examples=_examples,
        deadline=None,
        derandomize=_name == "ci",
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = [
    pytest.param("numpy", marks=pytest.mark.numpy),
    pytest.param("numpy-readonly", marks=pytest.mark.numpy),
    pytest.param("array-api-strict", marks=pytest.mark.strict),
    pytest.param("torch", marks=pytest.mark.torch),
    pytest.param("jax", marks=pytest.mark.jax),
    pytest.param("torch-cuda", marks=[pytest.mark.torch, pytest.mark.gpu]),
    pytest.param("cupy", marks=[pytest.mark.cupy, pytest.mark.gpu]),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every array library and device of the matrix; absent ones skip with the reason."""
    try:
        return make_backend(request.param)
    except BackendUnavailable as error:
        pytest.skip(str(error))
