"""Budgets: ``quick`` (``make demo``: all experiments in under 5 minutes on 2 CPU cores),
``full`` (3,000 iterations, all settings; about 20 minutes on 2 cores on digits), ``paper``
(the paper's budgets and settings; hours on a CPU) and ``tiny`` (the smoke tests).

The paper gives the learning-rate search budget (5,000 iterations), batch 32, 3 seeds, the
batch sizes 4…64, c ∈ {1, 3, 9, 27}; the training length of ``paper`` (20,000 iterations,
about 13 epochs of Fashion-MNIST at batch 32) is this project's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    name: str
    iterations: int  # training budget of every experiment
    cnn_iterations: int  # training budget of the CNN in train-speed (slower per step on CPU)
    lr_budget: int  # iterations per candidate of the factor-3 search
    lr_max_trials: int  # candidates per search, the two guesses included
    seeds: int  # seeds of train-speed (the claim-1 experiment)
    side_seeds: int  # seeds of the other experiments
    log_points: int
    speed_models: tuple[str, ...]  # models of train-speed
    side_model: str  # model of batch-size, overconfidence, dropout, heuristics, histogram
    optimizers: tuple[str, ...]  # of train-speed
    side_optimizers: tuple[str, ...]  # of batch-size and dropout
    batch_sizes: tuple[int, ...]
    overconfidence: tuple[float, ...]
    heuristic_cs: tuple[float, ...]
    heuristic_optimizers: tuple[str, ...]
    dropouts: tuple[float, ...]


PROFILES = {
    "quick": Profile(
        name="quick",
        iterations=600,
        cnn_iterations=300,
        lr_budget=200,
        lr_max_trials=5,
        seeds=3,
        side_seeds=2,
        log_points=20,
        speed_models=("fc", "cnn"),
        side_model="fc",
        optimizers=("sgd", "adam", "amsgrad", "rmsprop"),
        side_optimizers=("sgd", "adam"),
        batch_sizes=(4, 16, 64),
        overconfidence=(1.0, 3.0, 9.0, 27.0),
        heuristic_cs=(1.0, 9.0, 27.0),
        heuristic_optimizers=("adam",),
        dropouts=(0.0, 0.5),
    ),
    "full": Profile(
        name="full",
        iterations=3_000,
        cnn_iterations=3_000,
        lr_budget=1_000,
        lr_max_trials=6,
        seeds=3,
        side_seeds=3,
        log_points=30,
        speed_models=("fc", "cnn"),
        side_model="fc",
        optimizers=("sgd", "adam", "amsgrad", "rmsprop"),
        side_optimizers=("sgd", "adam"),
        batch_sizes=(4, 8, 16, 32, 64),
        overconfidence=(1.0, 3.0, 9.0, 27.0),
        heuristic_cs=(1.0, 3.0, 9.0, 27.0),
        heuristic_optimizers=("sgd", "adam"),
        dropouts=(0.0, 0.25, 0.5),
    ),
    "paper": Profile(
        name="paper",
        iterations=20_000,
        cnn_iterations=20_000,
        lr_budget=5_000,
        lr_max_trials=8,
        seeds=3,
        side_seeds=3,
        log_points=50,
        speed_models=("fc", "cnn"),
        side_model="cnn",
        optimizers=("sgd", "adam", "amsgrad", "rmsprop"),
        side_optimizers=("sgd", "adam"),
        batch_sizes=(4, 8, 16, 32, 64),
        overconfidence=(1.0, 3.0, 9.0, 27.0),
        heuristic_cs=(1.0, 3.0, 9.0, 27.0),
        heuristic_optimizers=("sgd", "adam"),
        dropouts=(0.0, 0.25, 0.5),
    ),
    "tiny": Profile(
        name="tiny",
        iterations=6,
        cnn_iterations=4,
        lr_budget=3,
        lr_max_trials=3,
        seeds=2,
        side_seeds=1,
        log_points=3,
        speed_models=("fc", "cnn"),
        side_model="fc",
        optimizers=("sgd", "adam"),
        side_optimizers=("sgd",),
        batch_sizes=(4, 8),
        overconfidence=(1.0, 27.0),
        heuristic_cs=(1.0, 27.0),
        heuristic_optimizers=("adam",),
        dropouts=(0.0, 0.5),
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """A profile by name, with any non-None override (``iterations=…``, ``seeds=…``) applied."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})
