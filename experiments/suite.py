"""The experiments of ``cprop reproduce``, one function per claim of the paper.

Each function takes a :class:`~.runner.Runner` and returns an :class:`Experiment`: the runs,
how to group them into tables and plots, and a one-line statement of the claim it tests.
Every CProp run has a plain twin with the same seed (same initial weights, batch order and
dropout masks) and the plain optimizer's selected learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .runner import Runner
from .training import NAMES, RunConfig, RunResult

__all__ = ["Experiment", "EXPERIMENTS", "ORDER"]


GROUP_BY: dict[str, Callable[[RunConfig], str]] = {
    "batch-size": lambda config: f"batch {config.batch_size}",
    "overconfidence": lambda config: f"{NAMES[config.optimizer]} base",
    "dropout": lambda config: f"dropout {config.dropout:g}",
    "heuristics": lambda config: f"{NAMES[config.optimizer]} base",
}


@dataclass
class Experiment:
    """The runs of one experiment; ``group`` splits tables and figures, ``panel`` the rows."""

    name: str
    claim: str
    results: list[RunResult] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def group(self, config: RunConfig) -> str:
        return GROUP_BY.get(self.name, lambda c: c.model)(config)

    def panel(self, config: RunConfig) -> str:
        return NAMES[config.optimizer]


def _pair(base: RunConfig, seeds: int, **cprop: Any) -> list[RunConfig]:
    """For each seed: the plain run, then its CProp twin (and variants given in ``cprop``)."""
    configs = []
    for seed in range(seeds):
        plain = replace(base, seed=seed)
        configs += [plain, replace(plain, cprop=True, **cprop)]
    return configs


def _base(runner: Runner, **fields: Any) -> RunConfig:
    profile = runner.profile
    return RunConfig(iterations=profile.iterations, log_points=profile.log_points, **fields)


def lr_search(runner: Runner) -> Experiment:
    """Factor-3 lr selection of each plain optimizer on each train-speed model (cached)."""
    profile = runner.profile
    chosen = {
        f"{model} {NAMES[name]}": runner.lr(model, name)
        for model in profile.speed_models
        for name in profile.optimizers
    }
    return Experiment(
        "lr-search",
        "learning rates of the plain optimizers, selected by the paper's factor-3 protocol",
        extra={"lr": chosen, "budget": profile.lr_budget},
    )


def train_speed(runner: Runner) -> Experiment:
    """Claim 1: CProp-X reaches a lower training loss faster than X; the mean scale plateaus."""
    profile = runner.profile
    configs = []
    for model in profile.speed_models:
        for name in profile.optimizers:
            base = _base(runner, model=model, optimizer=name, lr=runner.lr(model, name))
            if model == "cnn":
                base = replace(base, iterations=profile.cnn_iterations)
            configs += _pair(base, profile.seeds)
    return Experiment(
        "train-speed",
        "claim 1: CProp-X reaches lower training loss faster than plain X",
        runner.run(configs, "train-speed"),
    )


def batch_size(runner: Runner) -> Experiment:
    """Claim 2: the gain holds for batch sizes 4…64 (SGD lr ∝ batch, Adam lr re-selected)."""
    profile = runner.profile
    model = profile.side_model
    configs = []
    for size in profile.batch_sizes:
        for name in profile.side_optimizers:
            if name == "sgd":
                lr = runner.lr(model, name) * size / 32
            else:
                lr = runner.lr(model, name, batch_size=size)
            base = _base(runner, model=model, optimizer=name, lr=lr, batch_size=size)
            configs += _pair(base, profile.side_seeds)
    return Experiment(
        "batch-size",
        "claim 2: the gain holds across batch sizes 4 to 64",
        runner.run(configs, "batch-size"),
    )


def overconfidence(runner: Runner) -> Experiment:
    """Claim 3: larger c trades training speed for test accuracy closer to plain SGD's."""
    profile = runner.profile
    model = profile.side_model
    configs = []
    for name in profile.side_optimizers:
        base = _base(runner, model=model, optimizer=name, lr=runner.lr(model, name))
        for seed in range(profile.side_seeds):
            plain = replace(base, seed=seed)
            configs.append(plain)
            configs += [replace(plain, cprop=True, c=c) for c in profile.overconfidence]
    return Experiment(
        "overconfidence",
        "claim 3: plain SGD generalises best; larger c moves test accuracy towards it",
        runner.run(configs, "overconfidence"),
    )


def dropout(runner: Runner) -> Experiment:
    """Claim 4: with strong dropout the gain of CProp shrinks (lr selected without dropout)."""
    profile = runner.profile
    model = profile.side_model
    configs = []
    for rate in profile.dropouts:
        for name in profile.side_optimizers:
            base = _base(
                runner, model=model, optimizer=name, lr=runner.lr(model, name), dropout=rate
            )
            configs += _pair(base, profile.side_seeds)
    return Experiment(
        "dropout",
        "claim 4: with strong dropout the gain shrinks",
        runner.run(configs, "dropout"),
    )


def heuristics(runner: Runner) -> Experiment:
    """Claim 5: relative and moment rate need c tuned, and untuned CProp (c = 1) stays ahead."""
    profile = runner.profile
    model = profile.side_model
    configs = []
    for name in profile.heuristic_optimizers:
        base = _base(runner, model=model, optimizer=name, lr=runner.lr(model, name))
        for seed in range(profile.side_seeds):
            plain = replace(base, seed=seed)
            configs += [plain, replace(plain, cprop=True)]
            configs += [
                replace(plain, cprop=True, rule=rule, c=c)
                for rule in ("moment_rate", "relative_rate")
                for c in profile.heuristic_cs
            ]
    return Experiment(
        "heuristics",
        "claim 5: the heuristics need c tuned and untuned CProp stays ahead",
        runner.run(configs, "heuristics"),
    )


def scale_histogram(runner: Runner) -> Experiment:
    """Claim 6: most scales drop quickly while a small share stays high."""
    profile = runner.profile
    configs = [
        _base(
            runner,
            model=profile.side_model,
            optimizer=name,
            lr=runner.lr(profile.side_model, name),
            cprop=True,
            histogram=True,
        )
        for name in profile.side_optimizers
    ]
    return Experiment(
        "scale-histogram",
        "claim 6: most scales drop quickly while a small share stays high",
        runner.run(configs, "scale-histogram"),
    )


EXPERIMENTS: dict[str, Callable[[Runner], Experiment]] = {
    "lr-search": lr_search,
    "train-speed": train_speed,
    "batch-size": batch_size,
    "overconfidence": overconfidence,
    "dropout": dropout,
    "heuristics": heuristics,
    "scale-histogram": scale_histogram,
}
ORDER = tuple(EXPERIMENTS)
