"""benchmarks/ on the path for these tests only, as it is sys.path[0] for the scripts themselves
(`python benchmarks/run.py`); the test suite proper never sees the benchmark modules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def benchmarks_on_path(monkeypatch):
    """benchmarks/ first on the path during the test; the benchmark modules it imported are forgotten
    after it, so that no later test finds them already imported."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if file and Path(file).parent == BENCHMARKS:
            del sys.modules[name]
