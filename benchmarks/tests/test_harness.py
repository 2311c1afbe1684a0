"""The benchmark harness end to end in --quick mode: every server starts, serves and stops, and the
result files are written; the curves script likewise with tiny settings. They assert that the figures
exist and are clean, never how fast. The interval arithmetic and the goal verdicts are unit-tested on
fixed data. The benchmark modules are imported inside the tests, where benchmarks/ is on the path
(conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SERVERS = ["ours", "ours-preload", "tiangolo", "uvicorn-worker", "uvicorn", "fastapi-run", "granian"]
PATHS = ["/", "/items/5?q=somequery"]


def run_harness(command: list[str], timeout: float) -> str:
    if not shutil.which("wrk"):
        pytest.fail("the benchmark smoke test needs wrk (Debian: apt-get install wrk); .ci/run installs it")
    harness = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = harness.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        harness.terminate()  # on SIGTERM the harness stops every server it started
        output, _ = harness.communicate(timeout=60)
        pytest.fail(f"{command[1]} took more than {timeout:.0f} s:\n{output}")
    assert harness.returncode == 0, output
    return output


@pytest.mark.timeout(600)
def test_quick_run_writes_clean_results(tmp_path):
    servers = [*SERVERS, "ours-stock-worker"]
    command = [sys.executable, "benchmarks/run.py", "--quick", "--no-container", "--out", str(tmp_path)]
    output = run_harness([*command, "--servers", ",".join(servers)], timeout=480)

    for name in ("results.json", "results.md", "chart.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()
    assert list(results["servers"]) == servers
    assert results["settings"]["concurrency"] == [1, 16]
    assert results["settings"]["paths"] == PATHS
    for name, server in results["servers"].items():
        assert "error" not in server, (name, server["error"])
        assert server["start_s"] > 0, name
        assert server["stop_s"] > 0, name
        assert server["stop_ok"], name
        assert server["memory"]["rss_bytes"] > 0, name
        for path in PATHS:
            for level in ("1", "16"):
                figures = server["paths"][path][level]
                assert figures["requests_per_s"] > 0, (name, path, level)
                assert figures["socket_errors_total"] == 0, (name, path, level, figures["socket_errors"])
                assert figures["non_2xx"] == 0, (name, path, level)
                assert path in figures["command"], (name, path)
        # Stopped while streaming an answer, which arrived whole, before the server exited.
        inflight = results["rounds"][name][0]["inflight"]
        assert inflight["answered"], (name, inflight)
        assert inflight["exit_after_answer_s"] >= 0, (name, inflight)
        compare = server["compare"]
        assert compare["paths"]["/"]["16"]["requests_per_s"]["vs_uvicorn"]["ratio"] > 0, name
        assert compare["start_s"]["vs_tiangolo"]["ratio"] > 0, name
        assert f"| {name} |" in markdown, name
        assert (tmp_path / "raw" / f"{name}-r1.log").exists(), name
        assert (tmp_path / "raw" / f"{name}-inflight-r1.log").exists(), name
    # The best peer of a level is a peer, the one with the highest median.
    best = results["best_peer"]["paths"]["/"]["16"]["requests_per_s"]
    assert not best.startswith("ours")
    peers = {
        n: s["paths"]["/"]["16"]["requests_per_s"] for n, s in results["servers"].items() if n[:4] != "ours"
    }
    assert peers[best] == max(peers.values())
    # One round: no verdict is claimed from it.
    ratio_goals = [goal for goal in results["goals"] if goal["kind"] == "ratio"]
    assert len(ratio_goals) == 2 * 2 * 2 + 1  # requests/s and p99 per path and level, and the start
    assert {goal["verdict"] for goal in ratio_goals} == {"not judged"}
    assert "## Goals of the performance issue" in markdown
    assert "== goals for ours" in output
    # Each server ran as described: tiangolo's start script, the stock workers.
    raw = tmp_path / "raw"
    tiangolo = (raw / "tiangolo-r1.log").read_text()
    assert "Checking for script in" in tiangolo
    assert "Using worker: uvicorn.workers.UvicornWorker" in tiangolo
    assert "Using worker: uvicorn_worker.UvicornWorker" in (raw / "uvicorn-worker-r1.log").read_text()
    stock = (raw / "ours-stock-worker-r1.log").read_text()
    assert "Using worker: uvicorn.workers.UvicornWorker" in stock
    assert "Using worker: asgi_launcher.workers.UvicornWorker" in (raw / "ours-r1.log").read_text()
    assert results["container"] == {"skipped": "--no-container"}
    # One probe of the host's speed before each server of each round, reported in results.md.
    assert len(results["host_probe_ms"]) == len(servers) * results["settings"]["rounds"]
    assert all(probe > 0 for probe in results["host_probe_ms"])
    assert "- Host probe " in markdown


@pytest.mark.timeout(600)
def test_quick_curves_write_a_table_and_a_chart_per_curve(tmp_path):
    command = [sys.executable, "benchmarks/curves.py", "--quick", "--servers", "ours,uvicorn"]
    run_harness([*command, "--out", str(tmp_path)], timeout=480)

    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()
    assert results["errors"] == []
    for curve, points in (("response", [100, 100_000]), ("body", [1_000, 100_000]), ("workers", [1, 2])):
        assert (tmp_path / f"chart-{curve}.png").stat().st_size > 0, curve
        for name in ("ours", "uvicorn"):
            for point in points:
                [figures] = results["curves"][curve][name][str(point)]
                assert figures["requests_per_s"] > 0, (curve, name, point)
                assert figures["socket_errors_total"] == 0, (curve, name, point, figures["socket_errors"])
                assert figures["non_2xx"] == 0, (curve, name, point)
        ratio = results["summary"][curve]["uvicorn"][str(points[0])]["ours_vs"]["ours"]["requests_per_s"]
        assert ratio["ratio"] > 0, curve

    # Each point got what it says: the answers of /bytes/100000 were that long, and the app answered
    # the length of the body it read: "100000" against "1000", 2 bytes more per answer (the headers
    # are alike, Content-Length 6 against 4), which only a whole 100 kB body gives.
    def per_answer(curve: str, point: int) -> float:
        [figures] = results["curves"][curve]["ours"][str(point)]
        return figures["bytes_read"] / figures["requests"]

    assert per_answer("response", 100_000) > 100_000
    assert per_answer("body", 100_000) - per_answer("body", 1_000) == pytest.approx(2, abs=0.5)
    # Memory: ours with and without preloading, each app, each worker count; the slope per worker.
    assert (tmp_path / "chart-memory.png").stat().st_size > 0
    memory = results["summary"]["memory"]
    assert list(memory) == ["ours", "ours-preload", "uvicorn"]
    for name, summary in memory.items():
        for app in ("seed", "model"):
            assert summary["points"][f"{app}/2"]["pss_bytes"]["median"] > 0, (name, app)
            assert summary["per_worker"][app]["rss_bytes"]["median"] > 0, (name, app)
    for title in ("## Response size", "## Request body size", "## Worker count", "## Memory per worker"):
        assert title in markdown


def test_payload_app_answers_each_size_and_body():
    """The curves' app, in process: sizes, the upload, the streamed answer, the model's bytes."""
    from fastapi.testclient import TestClient
    from payload_app import app

    client = TestClient(app)
    assert len(client.get("/bytes/100000").content) == 100_000
    assert client.get(f"/bytes/{2**30}").status_code == 400
    assert client.post("/upload", content=b"x" * 123_456).text == "123456"
    assert client.get("/slow/1").text == "started\nfinished\n"


def test_inflight_answer_counts_only_when_whole():
    """servers.InFlight: a streamed answer counts as answered only with its last chunk and its end."""
    from servers import InFlight

    request = InFlight.__new__(InFlight)
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    request.received = head + b"8\r\nstarted\n\r\n"
    assert not request.complete()
    request.received += b"9\r\nfinished\n\r\n"
    assert not request.complete()  # no terminating chunk yet
    request.received += b"0\r\n\r\n"
    assert request.complete()
    request.received = request.received.replace(b"200 OK", b"500 Internal Server Error")
    assert not request.complete()
    request.received = b"HTTP/1.1 200 OK\r\n\r\nstarted\nfinished\n"  # no length: ends with the close
    assert not request.complete()
    assert request.complete(closed=True)


# ---- interval arithmetic and verdicts, on fixed data


def test_bootstrap_interval_of_a_ratio_is_paired_seeded_and_bounded():
    import intervals

    values, references = [10, 12, 11, 13, 9], [10, 10, 10, 10, 10]
    interval = intervals.ratio(values, references)
    assert interval["ratio"] == pytest.approx(1.1)
    assert (interval["min"], interval["max"]) == (pytest.approx(0.9), pytest.approx(1.3))
    assert 0.9 <= interval["low"] < 1.1 < interval["high"] <= 1.3
    assert intervals.ratio(values, references) == interval  # seeded: the same figures, the same interval
    # Paired: a slow round that hits both servers alike moves neither the ratio nor its interval.
    steady = intervals.ratio([11, 11, 5.5, 11, 11], [10, 10, 5, 10, 10])
    assert (steady["low"], steady["high"]) == (pytest.approx(1.1), pytest.approx(1.1))
    # A failed round (None) is left out of both sides.
    assert intervals.ratio([11, None, 11], [10, 10, 10])["rounds"] == 2
    assert intervals.ratio([None], [10]) is None


def test_bootstrap_interval_of_a_median_matches_the_exact_distribution():
    """Three rounds 1, 2, 3: a resample's median is 1 or 3 with probability 7/27 each (at least two
    of three draws on that round), so the 2.5th and 97.5th percentiles are exactly 1 and 3."""
    import intervals

    interval = intervals.value([1.0, 2.0, 3.0])
    assert interval["median"] == 2.0
    assert (interval["low"], interval["high"]) == (1.0, 3.0)
    assert intervals.value([5.0] * 5) == {"median": 5, "low": 5, "high": 5, "min": 5, "max": 5, "rounds": 5}
    # Five rounds: the lowest round is a resample's median with probability 5.8 % (> 2.5 %), so the
    # interval is the range; seven rounds: 1.0 %, so it leaves the extreme rounds out.
    five, seven = intervals.value([1.0, 2.0, 3.0, 4.0, 5.0]), intervals.value([1.0, 2, 3, 4, 5, 6, 7])
    assert (five["low"], five["high"]) == (1.0, 5.0)
    assert (seven["low"], seven["high"]) == (2.0, 6.0)
    assert intervals.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


@pytest.mark.parametrize(
    ("low", "high", "higher_is_better", "expected"),
    [
        (1.01, 1.10, True, "met"),
        (1.00, 1.10, True, "met"),
        (0.97, 1.05, True, "within noise"),
        (0.90, 0.99, True, "not met"),
        (0.90, 0.99, False, "met"),
        (0.95, 1.02, False, "within noise"),
        (1.01, 1.20, False, "not met"),
    ],
)
def test_verdict_reads_the_whole_interval(low, high, higher_is_better, expected):
    import intervals

    interval = {"ratio": (low + high) / 2, "low": low, "high": high, "rounds": 5}
    assert intervals.verdict(interval, 1.0, higher_is_better) == expected
    assert intervals.verdict({**interval, "rounds": 2}, 1.0, higher_is_better) == "not judged"


def synthetic_results() -> dict:
    """Five rounds of ours and two peers, at one path and level: ours 10 % above the best peer
    (granian) in every round, p99 level with it; uvicorn below both."""

    def measured(rps: float, p99: float, start: float, stop: float) -> dict:
        figures = {"requests_per_s": rps, "p50_ms": p99 / 4, "p99_ms": p99}
        return {
            "start_s": start,
            "stop_s": stop,
            "paths": {"/": {"64": figures}},
            "memory": {"rss_bytes": 100, "pss_bytes": 80},
            "inflight": {"answered": True, "stop_s": 0.4, "exit_after_answer_s": 0.1},
        }

    speeds = [1.0, 0.9, 1.05, 0.8, 1.0]  # the machine's speed, round by round
    rounds = {
        "ours": [measured(1100 * s, 20 / s, 0.5, 0.05) for s in speeds],
        "granian": [measured(1000 * s, 20 / s, 0.6, 0.04) for s in speeds],
        "uvicorn": [measured(900 * s, 25 / s, 0.4, 0.4) for s in speeds],
        "tiangolo": [measured(800 * s, 30 / s, 0.45, 0.35) for s in speeds],
    }
    rounds["ours"][3]["inflight"] = {"answered": False, "failure": "incomplete answer"}
    return {
        "settings": {"paths": ["/"], "concurrency": [64]},
        "servers": {name: {} for name in rounds},
        "rounds": rounds,
        "container": {"skipped": "--no-container"},
    }


def test_goals_compare_ours_with_the_best_peer_of_the_run():
    from report import add_comparisons

    results = synthetic_results()
    add_comparisons(results)
    assert results["best_peer"]["paths"]["/"]["64"] == {"requests_per_s": "granian", "p99_ms": "granian"}
    assert results["best_peer"]["stop_s"] == "granian"
    goals = {goal["goal"]: goal for goal in results["goals"]}
    throughput = goals["requests/s `/` c=64 >= the best peer's"]
    assert throughput["against"] == "granian"
    assert throughput["interval"]["ratio"] == pytest.approx(1.1)
    assert throughput["verdict"] == "met"
    assert goals["p99 `/` c=64 <= the best peer's"]["verdict"] == "met"  # level in every round: 1.00x
    assert goals["idle stop (SIGTERM to exit) <= 0.1 s"]["verdict"] == "met"
    inflight = goals["a request in flight at SIGTERM is answered, then the server exits"]
    assert inflight["verdict"] == "not met"
    assert inflight["measured"] == "4 of 5 answered"
    start = goals["start to first 200 <= tiangolo's start script"]
    assert start["interval"]["ratio"] == pytest.approx(0.5 / 0.45)
    assert start["verdict"] == "not met"
    assert goals["`docker stop`, idle, <= 0.25 s"]["verdict"] == "not judged"  # no container part
    vs_uvicorn = results["servers"]["ours"]["compare"]["paths"]["/"]["64"]["requests_per_s"]["vs_uvicorn"]
    assert vs_uvicorn["ratio"] == pytest.approx(1100 / 900)


def test_a_server_that_answers_but_must_be_killed_misses_the_inflight_goal():
    from report import add_comparisons

    results = synthetic_results()
    results["rounds"]["ours"][3]["inflight"] = {
        "answered": True,
        "exit_after_answer_s": 29.7,
        "stop_ok": False,
    }
    add_comparisons(results)
    [inflight] = [
        goal for goal in results["goals"] if goal["goal"].startswith("a request in flight at SIGTERM")
    ]
    assert inflight["measured"] == "5 of 5 answered, 1 not stopped (killed)"
    assert inflight["verdict"] == "not met"
    for round_ in results["rounds"]["ours"]:
        round_["inflight"] = {
            "answered": True,
            "exit_after_answer_s": 0.1,
            "stop_ok": True,
        }  # positive control
    add_comparisons(results)
    [inflight] = [
        goal for goal in results["goals"] if goal["goal"].startswith("a request in flight at SIGTERM")
    ]
    assert (inflight["measured"], inflight["verdict"]) == ("5 of 5 answered", "met")


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


def test_readme_blocks_are_filled_from_the_results_sections():
    import readme

    results = "# Run\n\nintro\n\n## Goals\n\n| a | b |\n\n### detail\n\nkept\n\n## Next\n\nnot taken\n"
    assert readme.section(results, "## Goals") == "| a | b |\n\n### detail\n\nkept\n"
    block = '<!-- include results/x.md "## Goals" -->\nold\n<!-- end include -->'
    pattern = readme.BLOCK
    match = pattern.search(block)
    assert (match.group(2), match.group(3), match.group(4)) == ("results/x.md", "## Goals", "old\n")


def test_readme_fill_links_charts_from_the_results_directory(tmp_path, monkeypatch):
    import readme

    (tmp_path / "results" / "x").mkdir(parents=True)
    (tmp_path / "results" / "x" / "results.md").write_text(
        "## Curve\n\n![Curve](chart.png) and [wrk](https://github.com/wg/wrk)\n"
    )
    monkeypatch.setattr(readme, "HERE", tmp_path)
    filled = readme.fill('<!-- include results/x/results.md "## Curve" -->\nold\n<!-- end include -->')
    assert filled == (
        '<!-- include results/x/results.md "## Curve" -->\n'
        "![Curve](results/x/chart.png) and [wrk](https://github.com/wg/wrk)\n<!-- end include -->"
    )
