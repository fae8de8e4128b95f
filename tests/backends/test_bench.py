"""Smoke test of ``cprop bench``: tiny sizes, the JSON has the expected rows (no timing asserts)."""

from __future__ import annotations

import json

import pytest
from cprop_core.cli.main import main


@pytest.mark.numpy
def test_bench_quick_writes_expected_rows(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert (
        main(["bench", "--quick", "--sizes", "1000,3000", "--repeat", "1", "--json", str(path)])
        == 0
    )
    report = json.loads(path.read_text())
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    names = {(row["size"], row["name"], row["baseline"]) for row in report["rows"]}
    for size in (1000, 3000):
        assert (size, "numpy fast path (pure numpy)", "roofline") in names
        assert (size, "core cprop_step (numpy)", "roofline") in names
    for row in report["rows"]:
        assert row["seconds"] > 0 and row["ratio"] > 0
    memory = {row["name"]: row for row in report["memory"]}
    assert memory["numpy fast path (pure numpy)"]["extra_floats_per_parameter"] >= 2.0
    assert "roofline" in capsys.readouterr().out


@pytest.mark.numpy
@pytest.mark.torch
def test_bench_includes_torch_optimizers(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "bench.json"
    assert main(["bench", "--sizes", "2000", "--repeat", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    names = {row["name"] for row in report["rows"]}
    assert {"core cprop_step (torch)", "torch Adam foreach", "torch Adam fused"} <= names


def test_bench_rejects_bad_sizes():
    with pytest.raises(SystemExit):
        main(["bench", "--sizes", "ten"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--repeat", "0"], "--repeat"),
        (["--threads", "0"], "--threads"),
        (["--json", "/nonexistent-folder/x.json"], "--json"),
    ],
)
def test_bench_refuses_bad_arguments_before_running(argv, message):
    from cprop_core.cli.main import main

    with pytest.raises(SystemExit, match=message):
        main(["bench", "--quick", *argv])
