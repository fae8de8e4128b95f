"""One training run: a network, an optimizer, a seed and an iteration budget → a loss curve.

The seed fixes the initial weights, the batch order (a seeded ``torch.Generator``) and the
dropout masks, so a plain run and its CProp twin with the same seed differ by CProp alone.
The training loss is measured on the (fixed) training set in eval mode at ``log_points``
evenly spaced iterations, as in the paper's plots; the test accuracy once at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import Dataset
from .models import build_model
from .optimizers import build_optimizer, scale_summary

__all__ = ["RunConfig", "RunResult", "Tensors", "to_tensors", "train"]

NAMES = {"sgd": "SGD", "adam": "Adam", "amsgrad": "AMSGrad", "rmsprop": "RMSProp"}
RULE_NAMES = {"cprop": "CProp", "moment_rate": "MomentRate", "relative_rate": "RelativeRate"}
EVAL_BATCH = 2048


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; two configs differing only in ``cprop`` are twins."""

    model: str = "fc"
    optimizer: str = "sgd"
    lr: float = 0.1
    cprop: bool = False
    c: float = 1.0
    rule: str = "cprop"
    seed: int = 0
    batch_size: int = 32
    iterations: int = 1000
    dropout: float = 0.0
    log_points: int = 25
    histogram: bool = False

    @property
    def label(self) -> str:
        """Name as in the paper: ``Adam``, ``CProp-Adam``, ``CProp-Adam c=3``."""
        base = NAMES[self.optimizer]
        if not self.cprop:
            return base
        name = f"{RULE_NAMES[self.rule]}-{base}"
        return name if self.c == 1.0 and self.rule == "cprop" else f"{name} c={self.c:g}"

    def twin(self) -> RunConfig:
        """The same run without CProp (same seed, weights and batch order)."""
        return replace(self, cprop=False, c=1.0, rule="cprop")


@dataclass
class RunResult:
    config: RunConfig
    iterations: list[int]
    train_loss: list[float]
    mean_scale: list[float]
    test_accuracy: float
    seconds: float
    diverged: bool = False
    histograms: list[list[float]] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Training loss at the end of the budget; +inf for a diverged run (for lr selection)."""
        value = self.train_loss[-1]
        return value if math.isfinite(value) else math.inf

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["label"] = self.config.label
        return out


@dataclass(frozen=True)
class Tensors:
    """A data set as torch tensors, plus a fixed subset of the training set for the loss curve."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    image_shape: tuple[int, int, int]
    num_classes: int


def to_tensors(data: Dataset, eval_samples: int = 10_000) -> Tensors:
    """Convert once per data set; the loss curve uses the first ``eval_samples`` train images."""
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    return Tensors(
        x_train,
        y_train,
        torch.from_numpy(data.x_test),
        torch.from_numpy(data.y_test),
        x_train[:eval_samples],
        y_train[:eval_samples],
        data.image_shape,
        data.num_classes,
    )


EARLY = (1, 3, 10)  # the mean scale falls within the first few steps (paper, fig 2)


def log_iterations(iterations: int, points: int) -> list[int]:
    """``points`` + 1 evenly spaced iterations from 0 to ``iterations``, plus steps 1, 3, 10."""
    even = {round(i * iterations / points) for i in range(points + 1)}
    return sorted(even | {i for i in EARLY if i < iterations})


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode, in chunks."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH])
        target = y[start : start + EVAL_BATCH]
        loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    model.train()
    return loss_sum / len(y), correct / len(y)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled mini-batch indices, a new permutation each epoch, last partial dropped."""
    if batch_size > n:
        raise ValueError(f"batch size {batch_size} exceeds the {n} training images")
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def train(config: RunConfig, data: Tensors, progress: Any = None) -> RunResult:
    """Run ``config`` on ``data``; ``progress`` (a tqdm bar or None) advances per iteration."""
    started = time.perf_counter()
    model = build_model(
        config.model, data.image_shape, data.num_classes, dropout=config.dropout, seed=config.seed
    )
    optimizer = build_optimizer(
        config.optimizer,
        model.parameters(),
        config.lr,
        cprop=config.cprop,
        c=config.c,
        rule=config.rule,
    )
    checkpoints = log_iterations(config.iterations, config.log_points)
    losses, scales, histograms = [], [], []
    diverged, done, reported = False, 0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # dropout masks
        generator = torch.Generator().manual_seed(config.seed)  # batch order
        batches = _batches(len(data.y_train), config.batch_size, generator)
        for checkpoint in checkpoints:
            while done < checkpoint and not diverged:
                index = next(batches)
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(data.x_train[index]), data.y_train[index])
                if not torch.isfinite(loss):
                    diverged = True
                    break
                loss.backward()
                optimizer.step()
                done += 1
            losses.append(math.nan if diverged else _evaluate(model, data.x_eval, data.y_eval)[0])
            if config.cprop:
                mean, hist = scale_summary(optimizer) if done else (math.nan, None)
                scales.append(mean)
                if config.histogram:
                    histograms.append([] if hist is None else [float(v) for v in hist])
            if progress is not None:
                progress.update(checkpoint - reported)
                reported = checkpoint
        if diverged or not all(map(math.isfinite, losses)):
            diverged = True
    accuracy = math.nan if diverged else _evaluate(model, data.x_test, data.y_test)[1]
    return RunResult(
        config,
        checkpoints,
        [float(v) for v in losses],
        [float(v) for v in scales],
        float(accuracy),
        time.perf_counter() - started,
        diverged,
        histograms,
    )


def mean_and_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0
