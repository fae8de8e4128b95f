"""Independent runs in worker processes (``--jobs``), with progress sent back over a queue.

Every run is single-threaded and seeded by its config alone, so a run gives the same curve in a
worker as in the main process; ``--jobs 2`` only changes the wall time. Workers are spawned
(not forked) so no OpenMP or torch thread state is inherited.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from .training import RunConfig, RunResult, Tensors, train

__all__ = ["WorkerPool"]

_TENSORS: Tensors | None = None
_QUEUE = None


class _QueueProgress:
    """Stands in for a tqdm bar inside a worker: ``update(n)`` sends n iterations home."""

    def __init__(self, channel):
        self.channel = channel

    def update(self, count: int) -> None:
        if count:
            self.channel.put(count)


def _initialise(tensors: Tensors, channel, threads: int) -> None:
    global _TENSORS, _QUEUE
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    _TENSORS, _QUEUE = tensors, channel


def _work(config: RunConfig) -> RunResult:
    return train(config, _TENSORS, _QueueProgress(_QUEUE))


class WorkerPool:
    """A pool of ``jobs`` spawned processes holding the data set; close it when done."""

    def __init__(self, tensors: Tensors, jobs: int, threads: int = 1):
        context = multiprocessing.get_context("spawn")
        self.channel = context.Queue()
        self.executor = ProcessPoolExecutor(
            jobs,
            mp_context=context,
            initializer=_initialise,
            initargs=(tensors, self.channel, threads),
        )

    def map(
        self,
        configs: list[RunConfig],
        on_steps: Callable[[int], None],
        on_run: Callable[[RunResult], None],
    ) -> list[RunResult]:
        """Results in the order of ``configs``; callbacks as iterations and runs complete."""
        futures: dict[Future, int] = {
            self.executor.submit(_work, config): index for index, config in enumerate(configs)
        }
        results: list[RunResult | None] = [None] * len(configs)
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                self._drain(on_steps)
                for future in done:
                    results[futures[future]] = future.result()
                    on_run(results[futures[future]])
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        self._drain(on_steps)
        return results  # type: ignore[return-value]

    def _drain(self, on_steps: Callable[[int], None]) -> None:
        while True:
            try:
                on_steps(self.channel.get_nowait())
            except queue.Empty:
                return

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
