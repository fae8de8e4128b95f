"""Base optimizers with the paper's settings, optionally wrapped in CProp from the torch backend.

The CProp math is not here: :func:`build_optimizer` wraps the base optimizer in
``cprop_core.backends.torch.CProp``; :func:`scale_summary` reads its ``scale_stats()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["OPTIMIZERS", "RULES", "DEFAULT_LR", "build_optimizer", "scale_summary"]

OPTIMIZERS = ("sgd", "adam", "amsgrad", "rmsprop")
RULES = ("cprop", "moment_rate", "relative_rate")
# First guess of the factor-3 search, from the paper's chosen rates (PAPER_EXPERIMENTS.md).
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "amsgrad": 1e-3, "rmsprop": 1e-3}
# CProp settings of the paper, never tuned (only c, and only in the claim 3 and 5 experiments).
CPROP_DEFAULTS = {"beta": 0.999, "eps": 1e-8, "cdf": "normal"}


def _base(name: str, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            params, lr=lr, betas=(0.9, 0.999), eps=1e-8, amsgrad=name == "amsgrad"
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-8, momentum=0.0)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def build_optimizer(
    name: str,
    params: Iterable[torch.Tensor],
    lr: float,
    *,
    cprop: bool = False,
    c: float = 1.0,
    rule: str = "cprop",
) -> torch.optim.Optimizer:
    """The plain optimizer, or ``CProp(plain, c=c, rule=rule)`` with the paper's β, ε and CDF."""
    base = _base(name, params, lr)
    if not cprop:
        return base
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    try:
        from ..backends.torch import CProp
    except ImportError as error:  # the torch backend is built in a separate issue
        raise RuntimeError(
            "cprop_core.backends.torch.CProp is not available; it is needed for CProp runs"
        ) from error
    # The multi-tensor kernel (proven equal to the core in the backend's tests) is about twice
    # as fast on CPU for these small nets; the heuristics have only the per-tensor path.
    return CProp(base, **CPROP_DEFAULTS, c=c, rule=rule, foreach=rule == "cprop")


def scale_summary(
    optimizer: torch.optim.Optimizer, bins: int = 20
) -> tuple[float, np.ndarray | None]:
    """(mean scale of the last step over all elements, histogram counts on [0, 1] or None).

    Reads ``CProp.scale_stats(bins)`` (one dict per group: ``mean``, ``histogram``, ``numel``)
    and weights each group's mean by its number of elements; (NaN, None) for a plain optimizer.
    """
    if not hasattr(optimizer, "scale_stats"):
        return math.nan, None
    groups = [group for group in optimizer.scale_stats(bins=bins) if group["numel"] > 0]
    if not groups:
        return math.nan, None
    weights = [group["numel"] for group in groups]
    mean = float(np.average([group["mean"] for group in groups], weights=weights))
    counts = np.sum([group["histogram"].numpy() for group in groups], axis=0)
    return mean, counts
