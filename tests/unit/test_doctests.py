"""The runnable examples in the public API's docstrings run and show what they say.

Examples that need the network, a hub model or a service are marked ``+SKIP`` in place; the
modules below hold runnable ones (tiny random-weight models built offline).
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "crossrank.rerank",
    "crossrank.retrieval.index",
    "crossrank.retrieval.pipeline",
    "crossrank.evaluate.metrics",
    "fakes",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=True, verbose=False)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
