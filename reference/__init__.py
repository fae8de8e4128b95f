"""Independent float64 reference oracle for CProp (SPEC.md §1–§5); numpy and scipy only."""

from ._cprop import (
    direct_scale,
    direct_statistics,
    effective_count,
    reference_moment_rate,
    reference_relative_rate,
    reference_scales,
    validate,
)

__all__ = [
    "direct_scale",
    "direct_statistics",
    "effective_count",
    "reference_moment_rate",
    "reference_relative_rate",
    "reference_scales",
    "validate",
]
