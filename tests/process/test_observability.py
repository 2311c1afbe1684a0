"""Metrics across workers, access and JSON logs, and proxy headers, on real processes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading

import gunicorn
import httpx
import pytest
from support.clients import port_answer
from support.logs import json_lines
from support.metrics import scrape, total
from support.proc import startup_json, wait_for


def fresh_connection_get(server, path: str) -> httpx.Response:
    """A new connection per request, so that the kernel spreads them over the workers."""
    with httpx.Client(timeout=10) as client:
        return client.get(server.url + path)


def metrics_dir(server) -> str:
    return os.path.join("/dev/shm", f"asgi-metrics-{server.proc.pid}")


# ---- metrics --------------------------------------------------------------------------------------


def test_counters_sum_exactly_over_workers_and_use_route_templates(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="3", LOG_FORMAT="json")
    server.wait_ready()
    server.wait_workers(3)
    n = 60
    for i in range(n):
        assert fresh_connection_get(server, f"/items/{i}").status_code == 200
    for i in range(10):
        assert fresh_connection_get(server, f"/random-scan-{i}/x").status_code == 404

    def counted():  # each worker writes its tally every 50 ms
        samples = scrape(server)
        items = total(samples, "http_requests_total", route="/items/{item_id}", status="200", method="GET")
        return (
            samples
            if items == n and total(samples, "http_requests_total", route="<unmatched>") == 10
            else None
        )

    samples = wait_for(counted, 10, f"{n} + 10 counted requests")
    # wait_ready's GET / are the only others: nothing counted twice, nothing lost.
    assert total(samples, "http_requests_total") == n + 10 + total(samples, "http_requests_total", route="/")
    assert total(samples, "http_requests_total", route="<unmatched>", status="404") == 10
    assert total(samples, "http_request_duration_seconds_count", route="/items/{item_id}") == n
    routes = {dict(labels).get("route") for (name, labels) in samples if name == "http_requests_total"}
    assert routes == {"/", "/items/{item_id}", "<unmatched>"}  # no raw paths, no series per scanned URL
    # The requests really were spread: the access entries name more than one worker pid.
    pids = {
        entry["pid"]
        for entry in json_lines(server.output)
        if entry.get("logger") == "access" and entry["path"].startswith("/items/")
    }
    assert len(pids) >= 2, pids


def test_non_standard_methods_share_one_label(probe_app, launch):
    """A scan with WebDAV and other methods (which the HTTP parser accepts) adds one series, not one
    per method; unmatched paths likewise share one route label (also checked above)."""
    server = launch(probe_app, WEB_CONCURRENCY="1")
    server.wait_ready()
    methods = ["PROPFIND", "PURGE", "MKCOL", "LOCK", "REPORT", "SEARCH"]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for method in methods:
            assert client.request(method, "/items/1").status_code == 405
            assert client.request(method, f"/scan-{method}").status_code == 404
        assert client.get("/items/1").status_code == 200  # the positive control: a standard method

    def counted():  # by status, which the labels under test do not change
        samples = scrape(server)
        refused = total(samples, "http_requests_total", status="405") + total(
            samples, "http_requests_total", status="404"
        )
        served = total(samples, "http_requests_total", route="/items/{item_id}", status="200")
        return samples if (refused, served) == (2 * len(methods), 1) else None

    samples = wait_for(counted, 10, "the requests counted")
    labels = {dict(labels)["method"] for (name, labels) in samples if name == "http_requests_total"}
    assert labels == {"GET", "OTHER"}
    assert total(samples, "http_requests_total", method="OTHER", route="/items/{item_id}", status="405") == 6
    assert total(samples, "http_requests_total", method="OTHER", route="<unmatched>", status="404") == 6


def test_master_metrics_and_no_count_lost_when_a_worker_dies(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2")
    server.wait_ready()
    workers = server.wait_workers(2)
    for i in range(40):
        fresh_connection_get(server, f"/items/{i}")
    counted = wait_for(
        lambda: (c := total(scrape(server), "http_requests_total")) >= 40 and c, 10, "40 counted requests"
    )
    samples = scrape(server)
    assert total(samples, "gunicorn_workers") == 2
    assert total(samples, "gunicorn_worker_starts_total") == 2
    directory = metrics_dir(server)
    live = sorted(os.listdir(directory))
    for worker in workers:  # the positive control of the check on dead workers' files below
        assert [f for f in live if f.endswith(f"_{worker.pid}.db")], (worker.pid, live)
    kills = 4
    for _ in range(kills):  # recycle workers: their files must not pile up
        victim = server.workers()[0]
        victim.send_signal(signal.SIGKILL)
        wait_for(
            lambda v=victim: v.pid not in {w.pid for w in server.workers()} and len(server.workers()) == 2,
            20,
            "a replacement worker",
        )
        server.wait_ready()
    samples = wait_for(
        lambda: (s := scrape(server)) and total(s, "gunicorn_worker_exits_total") == kills and s,
        10,
        "the exits to be counted",
    )
    assert total(samples, "http_requests_total") >= counted  # nothing counted was lost
    assert total(samples, "gunicorn_worker_starts_total") == 2 + kills
    assert total(samples, "gunicorn_workers") == 2
    files = sorted(os.listdir(directory))
    dead = {str(w.pid) for w in workers}
    assert not [f for f in files if any(f"_{pid}.db" in f for pid in dead)], files
    assert "histogram_archive.db" in files
    # Nothing piles up: every file is an archive or a live worker's (how many kinds a worker has
    # depends on what it has served yet, so the files are matched to workers, not counted).
    live_pids = {str(w.pid) for w in server.workers()}
    stray = [f for f in files if f.endswith(".db") and not f.endswith("_archive.db")]
    assert not [f for f in stray if f.removesuffix(".db").rsplit("_", 1)[1] not in live_pids], files


def test_endpoint_answers_while_every_worker_is_blocked(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2")
    server.wait_ready()
    server.wait_workers(2)
    blockers = [
        threading.Thread(target=lambda: httpx.get(server.url + "/block?seconds=4", timeout=30), daemon=True)
        for _ in range(4)
    ]
    for thread in blockers:
        thread.start()

    def app_stuck() -> bool:
        try:
            httpx.get(server.url + "/", timeout=0.5)
        except httpx.TimeoutException:
            return True
        return False

    wait_for(app_stuck, 3, "every worker to be blocked")
    response = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=1)
    assert response.status_code == 200
    assert "gunicorn_workers 2.0" in response.text
    for thread in blockers:
        thread.join(30)


def test_in_flight_requests(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="1")
    server.wait_ready()
    slow = threading.Thread(target=lambda: server.get("/slow?seconds=3", timeout=10))
    slow.start()
    wait_for(lambda: "slow request started" in server.output, 10, "the slow request")
    # Values reach the files within FLUSH_INTERVAL (50 ms): poll rather than read once.
    wait_for(lambda: total(scrape(server), "http_requests_in_progress", method="GET") == 1, 5, "1 in flight")
    slow.join(10)
    wait_for(lambda: total(scrape(server), "http_requests_in_progress", method="GET") == 0, 5, "0 in flight")


@pytest.mark.parametrize(("metrics", "answer"), [("on", "200"), ("off", "refused")])
def test_metrics_off_closes_the_port(package_app, launch, metrics, answer):
    server = launch(package_app, METRICS=metrics)
    server.wait_ready()  # the master opens the metrics port before it starts any worker
    expected_port = server.metrics_port if metrics == "on" else None
    assert startup_json(server.output)["metrics_port"] == expected_port
    assert port_answer(server.metrics_port, "/metrics") == answer


def test_metrics_directory_is_emptied_at_start(package_app, launch, tmp_path):
    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "counter_99999.db").write_bytes(b"stale")  # would break or skew the sums
    server = launch(package_app, PROMETHEUS_MULTIPROC_DIR=str(directory))
    server.wait_ready()
    assert not (directory / "counter_99999.db").exists()
    wait_for(lambda: total(scrape(server), "http_requests_total") >= 1, 5, "wait_ready's request counted")


# ---- logs -----------------------------------------------------------------------------------------

LOG_KEYS = {"timestamp", "level", "logger", "pid", "message"}


def test_every_line_of_a_json_run_parses(probe_app, launch):
    server = launch(probe_app, LOG_FORMAT="json")
    server.wait_ready()
    body = b"x" * 1234
    assert httpx.post(server.url + "/echo?k=v", content=body, headers={"User-Agent": "probe/1"}).json() == {
        "size": 1234
    }
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    entries = json_lines(server.output)  # fails on any line that is not JSON
    config = [e for e in entries if "workers_rule" in e]
    assert len(config) == 1
    others = [e for e in entries if "workers_rule" not in e]
    for entry in others:
        assert entry.keys() >= LOG_KEYS, entry
    messages = [e["message"] for e in others]
    assert any(m.startswith("Checking for script in") for m in messages)
    assert f"Starting gunicorn {gunicorn.__version__}" in messages  # the same environment as the server
    assert messages[-1] == "Shutting down: Master"
    (access,) = [e for e in others if e["logger"] == "access" and e["method"] == "POST"]
    assert access["path"] == "/echo?k=v"
    assert access["route"] == "/echo"
    assert access["status"] == 200
    assert access["request_size"] == 1234
    assert access["response_size"] == len('{"size":1234}')
    assert access["client"].startswith("127.0.0.1:")
    assert access["user_agent"] == "probe/1"
    assert access["duration_ms"] > 0
    assert access["pid"] in {e["pid"] for e in others if e["logger"] == "uvicorn.error"}


def json_run_entries(launch, app, **env) -> list[dict]:
    """Every entry of a JSON-logging run that served GET /items/1 and then stopped. The stop makes the
    output final (each worker writes what it holds as it exits): an absent entry is absent for good."""
    server = launch(app, LOG_FORMAT="json", **env)
    server.wait_ready()
    assert server.get("/items/1").status_code == 200
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    return json_lines(server.output)


@pytest.mark.parametrize(
    ("env", "logged"),
    [({}, True), ({"ACCESS_LOG": "", "LOG_LEVEL": "warning"}, False)],
    ids=["defaults", "switched-off"],
)
def test_json_run_respects_access_and_error_log_switches(package_app, launch, env, logged):
    entries = json_run_entries(launch, package_app, **env)
    access = [e for e in entries if e.get("logger") == "access" and e["path"] == "/items/1"]
    info = [
        e for e in entries if e.get("logger", "").startswith(("gunicorn", "uvicorn")) and e["level"] == "info"
    ]
    assert (len(access), bool(info)) == ((1, True) if logged else (0, False))


def test_json_errors_are_json_too(package_app, launch):
    server = launch(package_app, LOG_FORMAT="json", TIMEOUT="soon")
    assert server.wait_exit() == 2
    (entry,) = json_lines(server.output)
    assert entry["level"] == "error"
    assert entry["message"] == "TIMEOUT='soon' is not valid: expected a whole number >= 0"


def test_access_log_format_is_honoured(probe_app, launch):
    fmt = '%(h)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s "%(a)s" %(R)s %({x-trace}i)s %({content-type}o)s %(M)s'
    server = launch(probe_app, ACCESS_LOG_FORMAT=fmt)
    server.wait_ready()
    server.get("/items/7?q=1")
    httpx.get(server.url + "/items/8?q=2", headers={"User-Agent": "fmt-test", "X-Trace": "abc"})
    line = wait_for(
        lambda: next((x for x in server.output.splitlines() if " /items/8 " in x), None), 5, "line"
    )
    assert re.fullmatch(
        r'127\.0\.0\.1 GET /items/8 q=2 HTTP/1\.1 200 13 "fmt-test" '
        r"/items/\{item_id\} abc application/json \d+",
        line,
    ), line


def test_default_access_line_is_uvicorns(package_app, launch):
    server = launch(package_app)
    server.wait_ready()
    server.get("/items/5?q=somequery")
    wait_for(
        lambda: re.search(
            r'^127\.0\.0\.1:\d+ - "GET /items/5\?q=somequery HTTP/1\.1" 200$', server.output, re.M
        ),
        5,
        "the access line",
    )


def test_access_lines_reach_stdout_and_syslog_once_each(probe_app, launch):
    """With Gunicorn's --log-syslog, each access line goes to stdout once and to syslog once (it went
    to stdout twice: the syslog path logged through every handler again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as syslog:
        syslog.bind(("127.0.0.1", 0))
        address = f"udp://127.0.0.1:{syslog.getsockname()[1]}"
        server = launch(probe_app, GUNICORN_CMD_ARGS=f"--log-syslog --log-syslog-to {address}")
        server.wait_ready()
        paths = [f"/items/{i}?syslog=yes" for i in range(3)]
        for path in paths:
            assert server.get(path).status_code == 200
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0  # every line written: nothing more can come
        syslog.setblocking(False)
        received = []
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(syslog.recv(65536).decode(errors="replace"))
    for path in paths:
        line = f'"GET {path} HTTP/1.1" 200'
        assert server.output.count(line) == 1, server.output
        assert [r for r in received if line in r and ".access: " in r], received
        assert len([r for r in received if line in r]) == 1, received


# ---- proxies --------------------------------------------------------------------------------------

FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize(
    ("allowed", "client", "scheme"),
    [
        (None, "203.0.113.9", "https"),  # default: 127.0.0.1 (the proxy on the same host) is trusted
        ("127.0.0.1,10.0.0.0/8", "203.0.113.9", "https"),
        ("10.0.0.1", "127.0.0.1", "http"),  # untrusted peer: its headers are ignored
    ],
)
def test_forwarded_headers_only_from_trusted_proxies(probe_app, launch, allowed, client, scheme):
    env = {"FORWARDED_ALLOW_IPS": allowed} if allowed else {}
    server = launch(probe_app, **env)
    server.wait_ready()
    response = httpx.get(server.url + "/whoami", headers=FORWARDED)
    assert response.json() == {"client": client, "scheme": scheme}
    wait_for(
        lambda: re.search(rf'^{re.escape(client)}:\d+ - "GET /whoami HTTP/1\.1" 200$', server.output, re.M),
        5,
        f"an access line from {client}",
    )
