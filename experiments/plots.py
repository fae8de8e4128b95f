"""PNG plots in the paper's style.

- Curves: per group one figure, one row per base optimizer; left the training loss (log scale,
  mean over seeds with a ±1 sd band), right the mean CProp scale.
- Scale histogram over time: per run, the share of parameters in each scale bin (colour, log)
  against the iteration, with the mean scale drawn on top.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from .suite import Experiment  # noqa: E402
from .training import RunResult  # noqa: E402

__all__ = ["plot_experiment"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _stack(runs: list[RunResult], field: str) -> np.ndarray:
    return np.array([getattr(run, field) for run in runs], dtype=float)


def _band(axis, x, values: np.ndarray, label: str, color, log: bool) -> None:
    with warnings.catch_warnings():  # all-NaN columns: no scale before the first step
        warnings.simplefilter("ignore", RuntimeWarning)
        if log:  # mean ± sd of the loss itself, drawn on a log axis
            values = np.where(values > 0, values, np.nan)
        mean = np.nanmean(values, axis=0)
        sd = np.nanstd(values, axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
    sd = np.nan_to_num(sd)
    axis.plot(x, mean, color=color, label=label, linestyle="-" if "-" in label else "--")
    lower = np.maximum(mean - sd, mean * 0.05) if log else mean - sd
    axis.fill_between(x, lower, mean + sd, color=color, alpha=0.2, linewidth=0)


def _curves_figure(experiment: Experiment, group: str, runs: list[RunResult]) -> plt.Figure:
    panels: dict[str, dict[str, list[RunResult]]] = {}
    for run in runs:
        panel = panels.setdefault(experiment.panel(run.config), {})
        panel.setdefault(run.config.label, []).append(run)
    figure, axes = plt.subplots(len(panels), 2, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for row, (panel, methods) in enumerate(panels.items()):
        loss_axis, scale_axis = axes[row]
        for index, (label, members) in enumerate(methods.items()):
            color = plt.cm.tab10(index % 10)
            x = members[0].iterations
            _band(loss_axis, x, _stack(members, "train_loss"), label, color, log=True)
            if members[0].mean_scale:
                _band(scale_axis, x, _stack(members, "mean_scale"), label, color, log=False)
        loss_axis.set_yscale("log")
        loss_axis.set_ylabel("training loss")
        loss_axis.set_title(f"{experiment.name}, {group}: {panel}", fontsize=9)
        loss_axis.legend(fontsize=7)
        scale_axis.set_ylim(0, 1.02)
        scale_axis.set_ylabel("mean scale")
        scale_axis.set_title("mean CProp scale", fontsize=9)
        if scale_axis.get_legend_handles_labels()[0]:
            scale_axis.legend(fontsize=7)
        for axis in axes[row]:
            axis.set_xlabel("iteration")
            axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _histogram_figure(run: RunResult) -> plt.Figure:
    """Left: share of parameters per scale bin over time. Right: the histogram at five times."""
    logged = [(i, h) for i, h in zip(run.iterations, run.histograms) if h]
    x = [i for i, _ in logged]
    counts = np.array([h for _, h in logged], dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    edges = np.linspace(0.0, 1.0, shares.shape[1] + 1)
    figure, (heat, lines) = plt.subplots(1, 2, figsize=(11, 3.6), width_ratios=(3, 2))
    image = heat.pcolormesh(
        np.arange(len(x) + 1) - 0.5,  # one column per logged step, labelled below
        edges,
        np.where(shares.T > 0, shares.T, np.nan),
        norm=LogNorm(vmin=1e-3, vmax=1.0),
        cmap="viridis",
        shading="flat",
    )
    mean = [s for s, h in zip(run.mean_scale, run.histograms) if h]  # same columns as x
    heat.plot(range(len(mean)), mean, color="white", lw=1.5, label="mean scale")
    ticks = sorted({0, min(3, len(x) - 1), len(x) // 2, len(x) - 1})
    heat.set_xticks(ticks, [str(x[k]) for k in ticks])
    figure.colorbar(image, ax=heat, label="share of parameters")
    heat.set_xlabel("iteration (logged steps)")
    heat.set_ylabel("scale")
    heat.set_title(
        f"scale histogram over time: {run.config.label} ({run.config.model})", fontsize=9
    )
    heat.legend(fontsize=7, loc="upper right")
    centres = (edges[:-1] + edges[1:]) / 2
    for k in sorted({0, 2, len(x) // 10, len(x) // 3, len(x) - 1}):
        lines.plot(centres, shares[k], marker=".", label=f"iteration {x[k]}")
    lines.set_yscale("log")
    lines.set_xlabel("scale")
    lines.set_ylabel("share of parameters")
    lines.set_title("histogram at selected iterations", fontsize=9)
    lines.legend(fontsize=7)
    lines.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_experiment(experiment: Experiment, out: Path) -> list[Path]:
    """Write the experiment's PNGs into ``out/<experiment>/`` and return their paths."""
    folder = Path(out) / experiment.name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    groups: dict[str, list[RunResult]] = {}
    for run in experiment.results:
        groups.setdefault(experiment.group(run.config), []).append(run)
    for group, runs in groups.items():
        figure = _curves_figure(experiment, group, runs)
        path = folder / f"{experiment.name}_{_slug(group)}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    for run in experiment.results:
        if any(run.histograms):
            figure = _histogram_figure(run)
            path = folder / f"histogram_{_slug(run.config.label)}_{run.config.model}.png"
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
    return written
