"""The suite's rules for its own helpers, checked like everything else."""

from __future__ import annotations

from proc import REPO, startup_json


def test_no_module_name_is_both_a_test_helper_and_a_benchmark_module():
    """tests/ and benchmarks/ are both on pytest's path: a name in both resolves to the first, and the
    other side silently imports the wrong module (benchmarks/breakdown.py once got the tests' load)."""
    tests = {path.stem for path in (REPO / "tests").glob("*.py")}
    benchmarks = {path.stem for path in (REPO / "benchmarks").glob("*.py")}
    assert tests & benchmarks == set()


def test_servers_start_from_a_clean_environment(package_app, launch, monkeypatch):
    """A variable in the shell running the tests does not reach the server; one the test passes does."""
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    leaked = launch(package_app)
    leaked.wait_ready()
    passed = launch(package_app, WEB_CONCURRENCY="3")
    passed.wait_ready()
    assert startup_json(leaked.output)["workers_rule"] != "web_concurrency"
    assert (startup_json(passed.output)["workers_rule"], startup_json(passed.output)["workers"]) == (
        "web_concurrency",
        3,
    )
