"""The suite's rules for its own layout, checked like everything else."""

from __future__ import annotations

import ast
from pathlib import Path

from support.proc import REPO

TESTS = REPO / "tests"
BENCHMARKS = REPO / "benchmarks"


def imported(path: Path) -> set[str]:
    """The top-level names a Python file imports (absolute imports; a relative one stays in its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_tests_import_no_benchmark_module():
    """benchmarks/ is not on the tests' path (pytest's pythonpath is tests/ alone): a test importing a
    benchmark tool would pass only in a run where benchmarks/tests had put it there. What both use is
    the support package, which the benchmark scripts reach through the symlink benchmarks/support."""
    tools = {path.stem for path in BENCHMARKS.glob("*.py")}
    found = {
        str(path.relative_to(REPO)): sorted(imported(path) & tools)
        for path in TESTS.rglob("*.py")
        if imported(path) & tools
    }
    assert found == {}
    assert (BENCHMARKS / "support").resolve() == TESTS / "support"
    # benchmarks/tests puts benchmarks/ on the path beside tests/: a name in both would resolve to the
    # first found, and the other side would silently import the wrong module.
    helpers = {path.stem for path in TESTS.glob("*.py")}
    helpers |= {path.parent.name for path in TESTS.glob("*/__init__.py")}
    assert helpers & tools == set()
