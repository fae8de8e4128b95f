"""Every ```python block in README.md and docs/*.md runs, and every docstring example passes."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    for page in PAGES:
        for index, match in enumerate(BLOCK.finditer(page.read_text())):
            yield pytest.param(match.group(1), id=f"{page.name}#{index}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_markdown_python_block_runs(code, tmp_path, monkeypatch):
    if "import torch" in code:
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<markdown>", "exec"), {"__name__": "__doc_example__"})


MODULES = [
    "cprop_core.step",
    "cprop_core.erf",
    "cprop_core.hyperparams",
    "cprop_core.scale",
    "cprop_core.moments",
    "cprop_core.reference._cprop",
    "cprop_core.backends.numpy",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
