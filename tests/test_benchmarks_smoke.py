"""The benchmark harness end to end in --quick mode: every server starts, serves and stops, and the
three result files are written. It asserts that the figures exist and are clean, never how fast."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SERVERS = ["ours", "ours-preload", "tiangolo", "uvicorn", "fastapi-run", "granian"]


@pytest.mark.timeout(240)
def test_quick_run_writes_clean_results(tmp_path):
    if not shutil.which("wrk"):
        pytest.fail("the benchmark smoke test needs wrk (Debian: apt-get install wrk); .ci/run installs it")
    command = [sys.executable, "benchmarks/run.py", "--quick", "--no-container", "--out", str(tmp_path)]
    harness = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = harness.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        harness.terminate()  # on SIGTERM the harness stops every server it started
        output, _ = harness.communicate(timeout=60)
        pytest.fail(f"the quick benchmark run took more than 180 s:\n{output}")
    assert harness.returncode == 0, output

    for name in ("results.json", "results.md", "chart.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()
    assert list(results["servers"]) == SERVERS
    assert results["settings"]["concurrency"] == [1, 16]
    for name, server in results["servers"].items():
        assert "error" not in server, (name, server["error"])
        assert server["start_s"] > 0, name
        assert server["stop_s"] > 0, name
        assert server["stop_ok"], name
        assert server["memory"]["rss_bytes"] > 0, name
        for level in ("1", "16"):
            figures = server["levels"][level]
            assert figures["requests_per_s"] > 0, (name, level)
            assert figures["socket_errors_total"] == 0, (name, level, figures["socket_errors"])
            assert figures["non_2xx"] == 0, (name, level)
        assert f"| {name} |" in markdown, name
        assert (tmp_path / "raw" / f"{name}.log").exists(), name
    assert results["servers"]["ours"]["vs_uvicorn"]["levels"]["16"]["requests_per_s"] > 0
    assert results["container"] == {"skipped": "--no-container"}
    # One probe of the host's speed before each server of each round, reported in results.md.
    assert len(results["host_probe_ms"]) == len(SERVERS) * results["settings"]["rounds"]
    assert all(probe > 0 for probe in results["host_probe_ms"])
    assert "- Host probe " in markdown


def test_profile_breakdown_charges_each_sample_to_its_innermost_frame():
    """benchmarks/breakdown.py's reading of py-spy's collapsed stacks (the sampling itself needs a
    running server and is left to the opt-in command)."""
    from breakdown import summarize

    master = 'process 10:"gunicorn"'
    worker = f'{master};process 11:"gunicorn"'
    collapsed = "\n".join(
        [
            f"{worker};run (uvicorn/server.py:1);flush (asgi_launcher/protocol.py:48) 30",
            f"{worker};run (uvicorn/server.py:1);handle (starlette/routing.py:2) 40",
            f"{worker};call (asgi_launcher/observe.py:1);RequestMetrics.finished (asgi_launcher/o.py:2) 10",
            f"{worker};handle (starlette/routing.py:2);wait (threading.py:320) 15",
            f"{master};run (gunicorn/arbiter.py:3) 5",
        ]
    )
    summary = summarize(collapsed)
    assert summary["samples"] == 100
    assert summary["master_percent"] == 5
    expected = {"starlette": 40, "asgi_launcher": 40, "standard library": 15, "gunicorn": 5}
    assert summary["packages"] == expected
    assert summary["launcher_lines"] == {
        "flush (asgi_launcher/protocol.py:48)": 30,
        "RequestMetrics.finished (asgi_launcher/o.py:2)": 10,
    }
    assert next(iter(summary["top_lines"])) == "handle (starlette/routing.py:2)"
    assert summary["inclusive"] == {"metrics": 10, "our access log": 0, "Python's logging": 0}
