"""PROCESS_MANAGER=uvicorn (one process per container) and the pre-start-only mode, as real processes."""

from __future__ import annotations

import re
import signal
import threading
import time

import httpx
import pytest
from support.clients import port_answer
from support.files import write
from support.logs import json_lines
from support.proc import startup_json, wait_for


def test_one_uvicorn_process_with_the_same_start_up(probe_app, launch):
    write(probe_app / "prestart.sh", 'echo "prestart ran"\nexport FROM_PRESTART=yes\n')
    server = launch(probe_app, PROCESS_MANAGER="uvicorn", WEB_CONCURRENCY="4")
    assert server.wait_ready().json() == {"Hello": "World"}
    assert server.get("/env/FROM_PRESTART").json() == {"value": "yes"}
    assert server.workers() == []  # no children: the process we started serves
    assert server.get("/pid").json() == {"pid": server.proc.pid}
    out = server.output
    assert out.index("Checking for script in") < out.index("prestart ran") < out.index('{"loglevel"')
    data = startup_json(out)
    assert (data["process_manager"], data["workers"], data["workers_rule"]) == (
        "uvicorn",
        1,
        "process_manager",
    )
    assert "WARNING: WEB_CONCURRENCY=4 is ignored: PROCESS_MANAGER=uvicorn is one process" in out
    server.get("/items/3?q=x")
    wait_for(
        lambda: re.search(r'^127\.0\.0\.1:\d+ - "GET /items/3\?q=x HTTP/1\.1" 200$', server.output, re.M),
        5,
        "the access line",
    )
    assert re.search(r"^\[.+\] \[\d+\] \[INFO\] Application startup complete\.$", server.output, re.M)


def test_metrics_in_one_process(probe_app, launch):
    server = launch(probe_app, PROCESS_MANAGER="uvicorn")
    server.wait_ready()
    for i in range(7):
        server.get(f"/items/{i}")
    line = 'http_requests_total{method="GET",route="/items/{item_id}",status="200"} 7.0'
    wait_for(
        lambda: line in httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics").text, 5, "7 counted"
    )


@pytest.mark.parametrize(("metrics", "answer"), [("on", "200"), ("0", "refused")])
def test_metrics_off_in_one_process(probe_app, launch, metrics, answer):
    server = launch(probe_app, PROCESS_MANAGER="uvicorn", METRICS=metrics)
    server.wait_ready()  # the metrics port opens before the app's
    assert port_answer(server.metrics_port, "/metrics") == answer


def test_json_logs_in_one_process(probe_app, launch):
    server = launch(probe_app, PROCESS_MANAGER="uvicorn", LOG_FORMAT="json")
    server.wait_ready()
    server.get("/items/4")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    entries = json_lines(server.output)
    (access,) = [e for e in entries if e.get("logger") == "access" and e["path"] == "/items/4"]
    assert (access["status"], access["route"], access["pid"]) == (200, "/items/{item_id}", server.proc.pid)
    assert entries[-1]["message"].startswith("Finished server process")


@pytest.mark.parametrize(("allowed", "client"), [(None, "203.0.113.9"), ("10.0.0.1", "127.0.0.1")])
def test_forwarded_headers_in_one_process(probe_app, launch, allowed, client):
    server = launch(
        probe_app, PROCESS_MANAGER="uvicorn", **({"FORWARDED_ALLOW_IPS": allowed} if allowed else {})
    )
    server.wait_ready()
    seen = httpx.get(server.url + "/whoami", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert seen["client"] == client


def test_sigterm_finishes_the_request_in_flight(probe_app, launch):
    server = launch(probe_app, PROCESS_MANAGER="uvicorn")
    server.wait_ready()
    result = {}
    client = threading.Thread(target=lambda: result.update(r=server.get("/slow?seconds=2", timeout=20)))
    client.start()
    wait_for(lambda: "slow request started" in server.output, 10, "the slow request")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(20) == 0
    client.join(20)
    assert result["r"].json() == {"slept": 2.0}


def test_graceful_timeout_bounds_the_wait(probe_app, launch):
    server = launch(probe_app, PROCESS_MANAGER="uvicorn", GRACEFUL_TIMEOUT="1")
    server.wait_ready()
    outcome = {}

    def slow_client():
        try:
            outcome["status"] = httpx.get(server.url + "/slow?seconds=30", timeout=40).status_code
        except httpx.HTTPError as error:
            outcome["error"] = type(error).__name__

    client = threading.Thread(target=slow_client, daemon=True)
    client.start()
    wait_for(lambda: "slow request started" in server.output, 10, "the slow request")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_exit(20)
    assert time.monotonic() - started < 10  # not the 30 s the request wanted
    client.join(10)
    assert outcome == {"error": "RemoteProtocolError"}  # its connection closed, not an invented 500


def test_two_binds_are_refused_in_one_process(probe_app, launch):
    server = launch(probe_app, PROCESS_MANAGER="uvicorn", BIND="127.0.0.1:1,127.0.0.1:2")
    assert server.wait_exit() == 2
    assert "ERROR: BIND='127.0.0.1:1,127.0.0.1:2' is not valid: expected one address" in server.output


def test_unknown_process_manager(probe_app, launch):
    server = launch(probe_app, PROCESS_MANAGER="supervisord")
    assert server.wait_exit() == 2
    assert (
        server.output
        == "ERROR: PROCESS_MANAGER='supervisord' is not valid: expected one of gunicorn, uvicorn\n"
    )


def test_prestart_only_runs_the_pre_start_and_exits(probe_app, launch, tmp_path):
    marker = tmp_path / "migrated"
    write(probe_app / "prestart.sh", f'echo "migrating"\ntouch {marker}\n')
    server = launch(probe_app, script_args=["--prestart-only"], PROCESS_MANAGER="uvicorn")
    assert server.wait_exit() == 0
    assert marker.exists()
    assert "migrating" in server.output
    assert '{"loglevel"' not in server.output  # no server was started


def test_prestart_only_reports_a_failure(probe_app, launch):
    write(probe_app / "prestart.sh", "exit 3\n")
    server = launch(probe_app, script_args=["--prestart-only"])
    assert server.wait_exit() == 3
    assert "pre-start script" in server.output


def test_empty_pre_start_path_disables_the_step(probe_app, launch, tmp_path):
    marker = tmp_path / "ran"
    write(probe_app / "prestart.sh", f"touch {marker}\n")
    server = launch(probe_app, PROCESS_MANAGER="uvicorn", PRE_START_PATH="")
    server.wait_ready()
    assert "Pre-start step disabled (PRE_START_PATH is empty)" in server.output
    assert not marker.exists()
