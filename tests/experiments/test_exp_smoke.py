"""Every experiment of ``cprop reproduce`` end to end on the ``tiny`` budget, with CProp."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
backend = pytest.importorskip("cprop_core.backends.torch")
if not hasattr(backend, "CProp"):
    pytest.skip("cprop_core.backends.torch.CProp is not built yet", allow_module_level=True)

from cprop_core.cli.main import main  # noqa: E402
from cprop_core.experiments.data import load_dataset  # noqa: E402
from cprop_core.experiments.suite import ORDER  # noqa: E402
from cprop_core.experiments.training import RunConfig, to_tensors, train  # noqa: E402


@pytest.fixture(scope="module")
def tensors():
    torch.set_num_threads(1)
    return to_tensors(load_dataset("digits"), eval_samples=200)


@pytest.mark.parametrize("name", [n for n in ORDER if n != "train-speed"])
def test_experiment_runs_alone(tmp_path, name, capsys):
    code = main(
        [
            "reproduce",
            name,
            "--profile",
            "tiny",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--jobs",
            "1",
            "--no-plots",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"== {name}" in printed
    payload = json.loads((tmp_path / name / "runs.json").read_text())
    assert payload["experiment"] == name
    assert (tmp_path / "lr_cache.json").is_file()
    if name != "lr-search":
        with (tmp_path / name / "curves.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows and {"label", "seed", "iteration", "train_loss", "mean_scale"} <= set(rows[0])
        assert "curve/plain" in printed or name == "scale-histogram"


def test_train_speed_with_plots_and_cached_lr(tmp_path, capsys):
    args = [
        "reproduce",
        "train-speed",
        "--profile",
        "tiny",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--jobs",
        "1",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "CProp-SGD" in first and "CProp-Adam" in first and "mean scale" in first
    assert sorted(p.name for p in (tmp_path / "train-speed").glob("*.png")) == [
        "train-speed_cnn.png",
        "train-speed_fc.png",
    ]
    cache = (tmp_path / "lr_cache.json").read_text()
    assert main(args + ["--no-plots"]) == 0  # second call: lr from the cache, same table
    table = lambda out: out.split("== ")[1].split("\nwrote")[0]  # noqa: E731
    assert table(capsys.readouterr().out) == table(first)
    assert (tmp_path / "lr_cache.json").read_text() == cache
    assert main(args + ["--report-only"]) == 0  # tables and plots rebuilt from runs.json
    assert table(capsys.readouterr().out) == table(first)


def test_histogram_plot(tmp_path):
    assert (
        main(
            [
                "reproduce",
                "scale-histogram",
                "--profile",
                "tiny",
                "--out",
                str(tmp_path),
                "--no-progress",
                "--jobs",
                "1",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "scale-histogram").glob("histogram_*.png"))) == 1


def test_cprop_twin_shares_weights_and_batches(tensors):
    """With a huge c every scale is 1 (SGD), so CProp-SGD retraces plain SGD: same start, order."""
    plain = RunConfig(optimizer="sgd", lr=0.1, iterations=8, log_points=4, seed=5)
    cprop = RunConfig(
        optimizer="sgd", lr=0.1, iterations=8, log_points=4, seed=5, cprop=True, c=1e12
    )
    assert train(cprop, tensors).train_loss == pytest.approx(
        train(plain, tensors).train_loss, rel=1e-5
    )


@pytest.mark.parametrize("rule", ["cprop", "moment_rate", "relative_rate"])
def test_cprop_runs_report_scales(tensors, rule):
    config = RunConfig(
        optimizer="adam", lr=1e-3, iterations=6, log_points=3, cprop=True, rule=rule, histogram=True
    )
    result = train(config, tensors)
    assert len(result.mean_scale) == 6 and all(0.0 <= s <= 1.0 for s in result.mean_scale[1:])
    assert result.histograms[-1] and sum(result.histograms[-1]) > 0


def test_parallel_runs_equal_sequential(tmp_path):
    """``--jobs 2`` changes the wall time only: same curves, same order."""
    from cprop_core.experiments.profiles import get_profile
    from cprop_core.experiments.runner import Runner

    tensors = to_tensors(load_dataset("digits"), eval_samples=200)
    configs = [
        RunConfig(optimizer=name, lr=lr, iterations=5, log_points=2, seed=seed, cprop=cprop)
        for name, lr in (("sgd", 0.1), ("adam", 1e-3))
        for seed in (0, 1)
        for cprop in (False, True)
    ]
    profile = get_profile("tiny")
    sequential = Runner(tensors, profile, tmp_path, "digits", progress=False).run(configs, "s")
    with Runner(tensors, profile, tmp_path, "digits", progress=False, jobs=2) as runner:
        parallel = runner.run(configs, "p")
    assert [r.config for r in parallel] == configs
    assert [r.train_loss for r in parallel] == [r.train_loss for r in sequential]
    for first, second in zip(parallel, sequential):  # NaN (no scale before step 1) equals NaN
        np.testing.assert_array_equal(first.mean_scale, second.mean_scale)
