"""``cprop reproduce`` argument and data errors: clear messages, exit code 2, nothing trained."""

from __future__ import annotations

import pytest
from cprop_core.cli.main import main

pytestmark = pytest.mark.torch
pytest.importorskip("torch")


def test_missing_data_folder(tmp_path, capsys):
    code = main(["reproduce", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "no such folder or file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_wrong_magic_number_reaches_the_user(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (folder / stem).write_bytes(b"\x00\x00\x08\x09" + b"\x00" * 16)
    assert main(["reproduce", "--data", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert "wrong magic number" in capsys.readouterr().err


def test_unknown_experiment_and_bad_numbers(tmp_path, capsys):
    assert main(["reproduce", "train-sped", "--out", str(tmp_path)]) == 2
    assert "unknown experiment(s) ['train-sped']" in capsys.readouterr().err
    assert main(["reproduce", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_quick_and_profile_are_exclusive(tmp_path):
    with pytest.raises(SystemExit):
        main(["reproduce", "--quick", "--profile", "paper"])
