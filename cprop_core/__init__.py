"""cprop_core: CProp (Conformity Propagation) as pure functions on any array-API library.

CProp scales each parameter's step by how consistently its past gradients agree in sign:
``scale = min(c·erf(|m̂| / (se·√2)), 1)`` from bias-corrected moving statistics of the gradient.
The scale multiplies the update of any optimizer. See docs/math.md and SPEC.md.
"""

from .erf import portable_erf
from .hyperparams import CDFS, coefficients, validate_hyperparameters
from .step import (
    CPropState,
    RelativeRateState,
    cprop_step,
    init_relative_rate_state,
    init_state,
    moment_rate_step,
    relative_rate_step,
)

__version__ = "0.1.0"

__all__ = [
    "CDFS",
    "CPropState",
    "RelativeRateState",
    "coefficients",
    "cprop_step",
    "init_relative_rate_state",
    "init_state",
    "moment_rate_step",
    "portable_erf",
    "relative_rate_step",
    "validate_hyperparameters",
]
