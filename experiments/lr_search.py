"""The paper's learning-rate selection for the plain optimizers, and its cache on disk.

Protocol (PAPER_EXPERIMENTS.md): train each candidate for a short budget; the best rate has the
lowest training loss at the end of the budget. Start from two guesses a factor 3 apart and keep
multiplying (or dividing) by 3 while the loss improves. CProp-X then uses X's rate.

>>> losses = {0.1: 1.0, 0.3: 0.5, 0.9: 0.4, 2.7: 0.6}
>>> best, trials = factor3_search(lambda lr: losses[round(lr, 6)], 0.1, max_trials=6)
>>> round(best, 6), [round(lr, 6) for lr, _ in trials]
(0.9, [0.1, 0.3, 0.9, 2.7])
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["factor3_search", "LrCache"]


def factor3_search(
    evaluate: Callable[[float], float], first_guess: float, *, max_trials: int = 8
) -> tuple[float, list[tuple[float, float]]]:
    """(best lr, [(lr, loss) in the order tried]); a diverged candidate's loss is +inf."""
    if max_trials < 2:
        raise ValueError(f"max_trials must be at least 2, got {max_trials}")
    rate = lambda k: first_guess * 3.0**k  # noqa: E731 - exact powers avoid drift
    losses = {0: evaluate(rate(0)), 1: evaluate(rate(1))}
    step, current = (1, 1) if losses[1] < losses[0] else (-1, 0)
    while len(losses) < max_trials:
        candidate = current + step
        losses[candidate] = evaluate(rate(candidate))
        if not losses[candidate] < losses[current]:
            break
        current = candidate
    trials = [(rate(k), loss) for k, loss in losses.items()]
    best = min(losses, key=lambda k: (losses[k], k))  # ties (all diverged): the smaller rate
    return rate(best), trials


class LrCache:
    """``lr_cache.json`` in the results folder: one entry per (data, model, optimizer, …) key."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, Any] = {}
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text())

    @staticmethod
    def key(**fields: Any) -> str:
        return "|".join(f"{name}={fields[name]}" for name in sorted(fields))

    def get(self, key: str) -> float | None:
        entry = self.entries.get(key)
        return None if entry is None else float(entry["lr"])

    def store(self, key: str, lr: float, trials: list[tuple[float, float]]) -> None:
        self.entries[key] = {
            "lr": lr,
            "trials": [
                {"lr": rate, "final_train_loss": loss if math.isfinite(loss) else None}
                for rate, loss in trials
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.entries, indent=2, sort_keys=True) + "\n")
