"""Runs lists of configs with tqdm progress, and selects (or loads) learning rates."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from .lr_search import LrCache, factor3_search
from .optimizers import DEFAULT_LR
from .parallel import WorkerPool
from .profiles import Profile
from .training import RunConfig, RunResult, Tensors, train

__all__ = ["Runner"]


class Runner:
    """Shared state of one ``cprop reproduce`` call: data, profile, results folder, lr cache."""

    def __init__(
        self,
        tensors: Tensors,
        profile: Profile,
        out: Path,
        data_name: str,
        *,
        progress: bool = True,
        verbose: bool = True,
        jobs: int = 1,
        threads: int = 1,
    ):
        self.tensors = tensors
        self.profile = profile
        self.out = Path(out)
        self.data_name = data_name
        self.progress = progress
        self.verbose = verbose
        self.cache = LrCache(self.out / "lr_cache.json")
        self.jobs, self.threads = jobs, threads
        self._pool: WorkerPool | None = None
        self._done: dict[RunConfig, RunResult] = {}

    def close(self) -> None:
        """Stop the worker processes (if ``jobs`` > 1 started any)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self, message: str) -> None:
        if self.verbose:
            tqdm.write(message, file=sys.stderr)

    def run(self, configs: list[RunConfig], desc: str) -> list[RunResult]:
        """Train every config; a bar over runs and one over iterations. Results in input order.

        A run is a function of its config alone, so a config already trained in this call
        (e.g. the plain twins shared by several experiments) is taken from memory.
        """
        fresh = list(dict.fromkeys(c for c in configs if c not in self._done))
        if self.jobs > 1 and len(fresh) > 1:
            trained = self._run_parallel(fresh, desc)
        else:
            trained = self._run_sequential(fresh, desc)
        self._done.update(zip(fresh, trained))
        return [self._done[config] for config in configs]

    def _run_sequential(self, configs: list[RunConfig], desc: str) -> list[RunResult]:
        results = []
        with tqdm(
            total=len(configs), desc=desc, unit="run", disable=not self.progress, file=sys.stderr
        ) as runs:
            for config in configs:
                with tqdm(
                    total=config.iterations,
                    desc=f"  {config.label} seed {config.seed}",
                    unit="it",
                    leave=False,
                    disable=not self.progress,
                    file=sys.stderr,
                ) as steps:
                    results.append(train(config, self.tensors, steps))
                runs.update()
        return results

    def _run_parallel(self, configs: list[RunConfig], desc: str) -> list[RunResult]:
        if self._pool is None:
            self._pool = WorkerPool(self.tensors, self.jobs, self.threads)
        bars = dict(disable=not self.progress, file=sys.stderr)
        total = sum(config.iterations for config in configs)
        with (
            tqdm(total=len(configs), desc=desc, unit="run", **bars) as runs,
            tqdm(
                total=total, desc=f"  {self.jobs} workers", unit="it", leave=False, **bars
            ) as steps,
        ):
            return self._pool.map(configs, steps.update, lambda result: runs.update())

    def lr(self, model: str, optimizer: str, batch_size: int = 32) -> float:
        """The factor-3 selected lr of the plain optimizer (seed 0), from the cache if present."""
        budget = self.profile.lr_budget
        key = LrCache.key(
            data=self.data_name,
            n_train=len(self.tensors.y_train),
            model=model,
            optimizer=optimizer,
            batch_size=batch_size,
            budget=budget,
        )
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        base = RunConfig(
            model=model,
            optimizer=optimizer,
            batch_size=batch_size,
            iterations=budget,
            log_points=1,
            seed=0,
        )

        def evaluate(lr: float) -> float:
            (result,) = self.run([replace(base, lr=lr)], f"lr-search {model} {optimizer} {lr:.3g}")
            return result.final_loss

        # SGD's rate scales with the batch size (claim 2's protocol), so does its first guess.
        guess = DEFAULT_LR[optimizer] * (batch_size / 32 if optimizer == "sgd" else 1.0)
        best, trials = factor3_search(evaluate, guess, max_trials=self.profile.lr_max_trials)
        self.cache.store(key, best, trials)
        self.log(f"lr-search {model} {optimizer} batch {batch_size}: lr = {best:.4g}")
        return best
