"""Tables (terminal and Markdown), CSV and JSON of every run of an experiment.

Table columns: training loss at 10 %, 30 % and 100 % of the ``iters`` budget (mean ± sd over
seeds; full training set, eval mode), final test accuracy (mean ± sd), final mean scale (CProp
runs), and two paired comparisons with the plain twin (same seed), each a geometric mean over
seeds, below 1 where CProp is ahead:

- ``final/plain``: final loss(CProp run) / final loss(plain run);
- ``curve/plain``: the loss ratio averaged (geometrically) over every logged iteration after
  the start, i.e. how far below or above the plain curve the CProp curve lies on the log plot.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .suite import Experiment
from .training import RunConfig, RunResult, mean_and_sd

__all__ = [
    "summary_rows",
    "format_table",
    "write_outputs",
    "checkpoint_iterations",
    "load_experiment",
]

FRACTIONS = (0.1, 0.3, 1.0)


def checkpoint_iterations(iterations: list[int]) -> list[int]:
    """The logged iterations nearest to 10 %, 30 % and 100 % of the budget (one per fraction)."""
    last = iterations[-1]
    return [min(iterations, key=lambda i, f=f: abs(i - f * last)) for f in FRACTIONS]


def _fmt(values: list[float], digits: int = 3) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "diverged" if values else ""
    mean, sd = mean_and_sd(finite)
    text = f"{mean:.{digits}g} ± {sd:.2g}" if len(finite) > 1 else f"{mean:.{digits}g}"
    return text + (f" ({len(values) - len(finite)} div.)" if len(finite) < len(values) else "")


def _twin(run: RunResult, runs: list[RunResult]) -> RunResult | None:
    if not run.config.cprop:
        return None
    twin = run.config.twin()
    return next((r for r in runs if r.config == twin), None)


def _log_ratios(run: RunResult, plain: RunResult, final_only: bool) -> list[float]:
    pairs = list(zip(run.train_loss, plain.train_loss))[1:]
    pairs = pairs[-1:] if final_only else pairs
    return [
        math.log(a / b) for a, b in pairs if math.isfinite(a) and math.isfinite(b) and b > 0 < a
    ]


def _paired(members: list[RunResult], runs: list[RunResult], final_only: bool) -> str:
    """Geometric mean of CProp/plain loss over seeds (and iterations), as ``x0.85``."""
    per_seed = []
    for run in members:
        plain = _twin(run, runs)
        logs = _log_ratios(run, plain, final_only) if plain is not None else []
        if logs:
            per_seed.append(np.mean(logs))
    return f"x{math.exp(np.mean(per_seed)):.2f}" if per_seed else ""


def _histogram_shares(run: RunResult) -> dict[str, str]:
    """Share of scales below 0.2 / above 0.8 after 10 steps and at the end (claim 6)."""
    out = {}
    for name, iteration in (("10 steps", 10), ("end", run.iterations[-1])):
        position = min(range(len(run.iterations)), key=lambda i: abs(run.iterations[i] - iteration))
        counts = np.asarray(run.histograms[position], dtype=float)
        if counts.sum() == 0:
            continue
        shares = counts / counts.sum()
        fifth = len(shares) // 5  # bins are equal-width on [0, 1]
        out[f"s<0.2 @{name}"] = f"{shares[:fifth].sum():.2f}"
        out[f"s>0.8 @{name}"] = f"{shares[len(shares) - fifth :].sum():.2f}"
    return out


def summary_rows(experiment: Experiment) -> list[dict[str, str]]:
    """One row per (group, method), methods in the order they were first run."""
    runs = experiment.results
    keys: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        keys.setdefault((experiment.group(run.config), run.config.label), []).append(run)
    rows = []
    for (group, label), members in keys.items():
        row = {
            "group": group,
            "method": label,
            "lr": f"{members[0].config.lr:.3g}",
            "seeds": str(len(members)),
        }
        logged = members[0].iterations
        row["iters"] = str(logged[-1])
        for fraction, iteration in zip(FRACTIONS, checkpoint_iterations(logged)):
            name = "final loss" if fraction == 1.0 else f"loss@{fraction:.0%}"
            row[name] = _fmt([m.train_loss[logged.index(iteration)] for m in members])
        row["test acc"] = _fmt([m.test_accuracy for m in members])
        scales = [m.mean_scale[-1] for m in members if m.mean_scale]
        row["mean scale"] = f"{np.mean(scales):.3f}" if scales else ""
        if members[0].histograms and members[0].histograms[-1]:
            row.update(_histogram_shares(members[0]))
        row["final/plain"] = _paired(members, runs, final_only=True)
        row["curve/plain"] = _paired(members, runs, final_only=False)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, str]], markdown: bool = False) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [columns] + [[row.get(c, "") for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(line) + " |" for line in cells]
        lines.insert(1, "|" + "|".join("---" for _ in columns) + "|")
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _curve_rows(experiment: Experiment):
    for run in experiment.results:
        config = asdict(run.config)
        config.pop("histogram")
        for index, iteration in enumerate(run.iterations):
            scale = run.mean_scale[index] if run.mean_scale else ""
            yield {
                "experiment": experiment.name,
                "group": experiment.group(run.config),
                "label": run.config.label,
                **config,
                "iteration": iteration,
                "train_loss": run.train_loss[index],
                "mean_scale": scale,
            }


def write_outputs(experiment: Experiment, out: Path) -> tuple[str, list[Path]]:
    """Write ``curves.csv``, ``runs.json``, ``summary.csv`` and ``table.md``; return the table."""
    folder = Path(out) / experiment.name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = summary_rows(experiment)
    curves = list(_curve_rows(experiment))
    if curves:
        path = folder / "curves.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(curves[0]))
            writer.writeheader()
            writer.writerows(curves)
        written.append(path)
    payload = {
        "experiment": experiment.name,
        "claim": experiment.claim,
        "extra": experiment.extra,
        "summary": rows,
        "runs": [run.to_dict() for run in experiment.results],
    }
    path = folder / "runs.json"
    path.write_text(json.dumps(_clean(payload), indent=1, allow_nan=False) + "\n")
    written.append(path)
    if rows:
        path = folder / "summary.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r))
            )
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    table = format_table(rows) if rows else _extra_table(experiment)
    markdown = format_table(rows, markdown=True) if rows else _extra_table(experiment, True)
    path = folder / "table.md"
    extra = experiment.extra
    where = f" (profile {extra['profile']}, {extra['seconds']:.0f} s)" if "profile" in extra else ""
    path.write_text(f"# {experiment.name}\n\n{experiment.claim}{where}\n\n{markdown}\n")
    written.append(path)
    return table, written


def _extra_table(experiment: Experiment, markdown: bool = False) -> str:
    """Experiments without runs (lr-search) show their ``extra`` mapping as a table."""
    rates = experiment.extra.get("lr", {})
    rows = [{"model optimizer": key, "selected lr": f"{value:.4g}"} for key, value in rates.items()]
    return format_table(rows, markdown)


def _clean(value):
    """Strict JSON: NaN and ±inf (a diverged run, no scale yet) become null."""
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value) -> float:
    return math.nan if value is None else float(value)


def load_experiment(folder: Path) -> Experiment:
    """Rebuild an experiment from its ``runs.json`` (``cprop reproduce --report-only``)."""
    path = Path(folder) / "runs.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved runs; run the experiment first")
    payload = json.loads(path.read_text())
    results = []
    for run in payload["runs"]:
        results.append(
            RunResult(
                config=RunConfig(**run["config"]),
                iterations=run["iterations"],
                train_loss=[_number(v) for v in run["train_loss"]],
                mean_scale=[_number(v) for v in run["mean_scale"]],
                test_accuracy=_number(run["test_accuracy"]),
                seconds=run["seconds"],
                diverged=run["diverged"],
                histograms=run["histograms"],
            )
        )
    return Experiment(payload["experiment"], payload["claim"], results, payload["extra"])
