"""Gradient histories on which the core is checked against the float64 reference.

Each function returns a float64 array of shape (T, width): T steps of gradients for ``width``
independent elements. ``all_sequences`` stacks them side by side so that one elementwise run
covers every kind at once (the core is elementwise, so columns never interact). Used by
``cprop verify`` and by the test suite.
"""

from __future__ import annotations

import numpy as np


def drifting_noise(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    drift = np.linspace(1.0, -1.0, steps)[:, None] * rng.uniform(0.1, 1.0, width)
    return drift + rng.normal(0.0, 1.0, (steps, width))


def sign_alternating(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    signs = np.where(np.arange(steps) % 2 == 0, 1.0, -1.0)[:, None]
    return signs * rng.uniform(0.5, 2.0, width) + 0.01 * rng.normal(size=(steps, width))


def constant(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    return np.broadcast_to(rng.uniform(-3.0, 3.0, width), (steps, width)).copy()


def sparse_zeros(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    mask = rng.random((steps, width)) < 0.1
    return np.where(mask, rng.normal(0.3, 1.0, (steps, width)), 0.0)


def tiny(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    return 1e-7 * (0.5 + rng.normal(size=(steps, width)))


def huge(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    return 1e7 * (0.5 + rng.normal(size=(steps, width)))


def sign_change(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    level = np.where(np.arange(steps) < steps // 2, 1.0, -1.0)[:, None]
    return level * rng.uniform(0.5, 2.0, width) + 0.3 * rng.normal(size=(steps, width))


def all_zero(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    return np.zeros((steps, width))


KINDS = {
    "drifting noise": drifting_noise,
    "sign-alternating": sign_alternating,
    "constant": constant,
    "sparse zeros": sparse_zeros,
    "tiny 1e-7": tiny,
    "huge 1e7": huge,
    "change of sign": sign_change,
    "all zero": all_zero,
}


def all_sequences(steps: int = 300, width: int = 6, seed: int = 0) -> tuple[np.ndarray, list]:
    """(grads of shape (steps, len(KINDS)·width), the kind of every column)."""
    rng = np.random.default_rng(seed)
    blocks, labels = [], []
    for name, make in KINDS.items():
        blocks.append(make(rng, steps, width))
        labels.extend([name] * width)
    return np.concatenate(blocks, axis=1), labels
