"""``cprop reproduce``: the paper's experiments on real data, with tables, CSV/JSON and plots.

cprop reproduce --quick                      # all experiments on digits, < 5 min on 2 cores
cprop reproduce train-speed --seeds 3        # one experiment
cprop reproduce --profile paper --data ~/fashion-mnist   # IDX folder (gz or raw) or .npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .profiles import PROFILES, get_profile
from .suite import EXPERIMENTS, ORDER

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument(
        "experiments",
        nargs="*",
        metavar="EXPERIMENT",
        help=f"any of {', '.join(ORDER)} (default: all)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--quick", action="store_true", help="the quick profile (default; what `make demo` runs)"
    )
    budget.add_argument(
        "--profile", choices=sorted(PROFILES), default=None, help="budget profile (default quick)"
    )
    parser.add_argument(
        "--data",
        default="digits",
        help="'digits' (bundled, default), a folder of MNIST-style IDX files, or a .npz with x/y",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--seeds", type=int, help="seeds per configuration (overrides profile)")
    parser.add_argument("--iterations", type=int, help="training iterations (overrides profile)")
    parser.add_argument("--lr-budget", type=int, help="iterations per lr-search candidate")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="runs in parallel worker processes (default: 2, or 1 on a single core)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads per run (default 1)"
    )
    parser.add_argument(
        "--eval-samples", type=int, default=10_000, help="training images in the loss curve"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild tables and plots from the runs.json files in --out",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _positive(args: argparse.Namespace) -> str | None:
    for name in ("seeds", "iterations", "lr_budget", "jobs", "threads", "eval_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')} must be at least 1, got {value}"
    unknown = [name for name in args.experiments if name not in EXPERIMENTS]
    if unknown:
        return f"unknown experiment(s) {unknown}; choose from {', '.join(ORDER)}"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _positive(args)
    if problem:
        print(f"cprop reproduce: error: {problem}", file=sys.stderr)
        return 2
    import torch

    from .data import DataError, load_dataset
    from .plots import plot_experiment
    from .report import load_experiment, write_outputs
    from .runner import Runner
    from .training import to_tensors

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    profile = get_profile(
        args.profile or "quick",
        seeds=args.seeds,
        side_seeds=args.seeds,
        iterations=args.iterations,
        cnn_iterations=args.iterations,
        lr_budget=args.lr_budget,
    )
    try:
        data = load_dataset(args.data)
    except DataError as error:
        print(f"cprop reproduce: error: {error}", file=sys.stderr)
        return 2
    names = [name for name in ORDER if name in (args.experiments or ORDER)]
    what = "report only" if args.report_only else f"profile {profile.name}"
    print(f"{data.describe()}; {what}; experiments: {', '.join(names)}")
    runner = Runner(
        to_tensors(data, args.eval_samples),
        profile,
        args.out,
        data.name,
        progress=not args.no_progress,
        jobs=args.jobs,
        threads=args.threads,
    )
    started = time.perf_counter()
    sections = []
    with runner:
        for name in names:
            try:
                if args.report_only:
                    experiment = load_experiment(args.out / name)
                else:
                    begun = time.perf_counter()
                    experiment = EXPERIMENTS[name](runner)
                    experiment.extra.update(
                        profile=profile.name, seconds=round(time.perf_counter() - begun, 1)
                    )
            except (RuntimeError, FileNotFoundError) as error:  # e.g. no torch CProp backend
                print(f"cprop reproduce: error in {name}: {error}", file=sys.stderr)
                return 1
            table, _ = write_outputs(experiment, args.out)
            if not args.no_plots:
                plot_experiment(experiment, args.out)
            print(f"\n== {name}: {experiment.claim}\n{table}", flush=True)
            markdown = (args.out / name / "table.md").read_text().split("\n", 2)[2]
            sections.append(f"## {name}\n\n{markdown}")
    seconds = time.perf_counter() - started
    what = "tables rebuilt from saved runs" if args.report_only else f"profile {profile.name}"
    header = f"# cprop reproduce: {data.describe()}, {what}, {seconds:.0f} s\n\n"
    (args.out / "summary.md").write_text(header + "\n".join(sections))
    print(f"\nwrote {args.out}/ (summary.md, per experiment CSV/JSON/PNG) in {seconds:.1f} s")
    return 0
