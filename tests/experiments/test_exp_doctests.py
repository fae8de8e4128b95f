"""The docstring examples of ``cprop_core.experiments`` run."""

from __future__ import annotations

import doctest
import importlib

import pytest

pytest.importorskip("sklearn")


@pytest.mark.parametrize("module", ["data", "lr_search"])
def test_docstring_examples(module):
    imported = importlib.import_module(f"cprop_core.experiments.{module}")
    failures, tried = doctest.testmod(imported, verbose=False)
    assert tried > 0 and failures == 0
