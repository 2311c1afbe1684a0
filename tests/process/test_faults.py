"""Faults injected for real into real processes: reloads, crashes, hangs, slow imports, bad input."""

from __future__ import annotations

import re
import signal
import threading
import time

import httpx
import pytest
from support.apps import PROBE_APP
from support.clients import (
    REPLACED_WITHIN,
    SLOWLORIS_LATENCY,
    Load,
    answering_pid,
    get_ignoring_errors,
    record,
)
from support.files import write
from support.proc import START, Launched, wait_for
from support.rawhttp import BAD_REQUESTS, GOOD_REQUESTS, assert_outcome, normal_latencies_under_slowloris


def wait_replaced(server, old: set[int], count: int, timeout: float = 30) -> set[int]:
    def replaced():
        now = server.worker_pids()
        return now if len(now) == count and not now & old else None

    return wait_for(replaced, timeout, f"{count} workers, none of {sorted(old)}")


def test_sighup_reload_under_load_fails_no_request(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2")
    server.wait_ready()
    old = server.worker_pids()
    with Load(server.url, clients=4) as load:
        load.wait_requests(300)
        server.signal(signal.SIGHUP)
        new = wait_replaced(server, old, 2)
        served = load.outcome.ok
        load.wait_requests(served + 300)
    outcome = load.outcome
    record("SIGHUP reload (process)", load="4 keep-alive clients", requests=outcome.ok, failed=outcome.failed)
    assert outcome.failed == 0, outcome.errors[:5]
    assert new & outcome.pids, "the new workers served"


def test_max_requests_recycles_workers_under_load(probe_app, launch):
    """Also the keep-alive drain's test: each recycling closes the idle keep-alive connections of a
    worker while their clients are sending their next request. Without the drain (Uvicorn's own
    shutdown) such a run loses a dozen or more requests; with it, none."""
    server = launch(probe_app, WEB_CONCURRENCY="2", MAX_REQUESTS="25", MAX_REQUESTS_JITTER="5")
    server.wait_ready()
    clients = 8
    with Load(server.url, clients=clients) as load:
        load.wait_requests(1500, timeout=120)
    outcome = load.outcome
    record(
        "MAX_REQUESTS=25 recycling (process)",
        load=f"{clients} keep-alive clients",
        requests=outcome.ok,
        failed=outcome.failed,
        workers_seen=len(outcome.pids),
    )
    assert outcome.failed == 0, outcome.errors[:5]
    assert len(outcome.pids) >= 6  # 1,500 requests at <= 30 per worker: recycled many times


def test_killed_worker_is_replaced_quickly(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2")
    server.wait_ready()
    old = server.worker_pids()
    clients = 8
    with Load(server.url, clients=clients) as load:
        load.wait_requests(300)
        victim = server.workers()[0]
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        # The load's keep-alive clients stay where they reconnected: probe with fresh connections.
        wait_for(
            lambda: answering_pid(server.url) not in old | {None},
            REPLACED_WITHIN,
            "a request served by the replacement",
            interval=0.01,
        )
        replaced_after = time.monotonic() - killed_at
        load.wait_requests(load.outcome.ok + 300)
    outcome = load.outcome
    record(
        "kill -9 of a worker (process)",
        load=f"{clients} keep-alive clients",
        requests=outcome.ok,
        failed=outcome.failed,
        replacement_serving_after_s=round(replaced_after, 2),
    )
    # Only what was in flight on the killed worker may fail: at most one request per client.
    assert outcome.failed <= clients, outcome.errors


def test_hung_worker_is_replaced_while_the_others_serve(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2", TIMEOUT="3")
    server.wait_ready()
    old = server.worker_pids()
    hung = threading.Thread(target=get_ignoring_errors, args=(server.url + "/block?seconds=60",), daemon=True)
    hung.start()
    with Load(server.url, clients=2, keepalive=False) as load:
        new = wait_for(
            lambda: (old - server.worker_pids()) and len(server.workers()) == 2, 20, "the replacement"
        )
        load.wait_requests(load.outcome.ok + 50)
    outcome = load.outcome
    record(
        "worker blocked past TIMEOUT=3 (process)",
        load="2 clients, new connection per request",
        requests=outcome.ok,
        failed=outcome.failed,
    )
    assert new
    # A connection the hung worker accepted just before blocking dies with it: at most one per client.
    assert outcome.failed <= 2, outcome.errors[:5]
    (victim,) = old - server.worker_pids()
    assert f"WORKER TIMEOUT (pid:{victim})" in server.output
    assert (
        f"Worker (pid:{victim}) timed out: no heartbeat for 3s (its event loop was blocked or busy); "
        "serving: GET /block?seconds=60"
    ) in server.output


SLOW_IMPORT = """\
import os
import time

from fastapi import FastAPI

time.sleep(5)  # a model being loaded
app = FastAPI()


@app.get("/")
def root():
    return {"Hello": "slow", "pid": os.getpid()}
"""


@pytest.mark.parametrize("env", [{}, {"PRELOAD_APP": "true"}], ids=["default", "preload"])
def test_import_slower_than_timeout_does_not_respawn(tmp_path, launch, env):
    """tiangolo's users saw model loads longer than TIMEOUT killed and respawned forever."""
    write(tmp_path / "slow" / "main.py", SLOW_IMPORT)
    server = launch(tmp_path / "slow", WEB_CONCURRENCY="2", TIMEOUT="2", **env)
    assert server.wait_ready(timeout=40).json()["Hello"] == "slow"
    # Both workers answering (fresh connections spread over them) means each lived through an import
    # longer than TIMEOUT. Then the output is made final by stopping: nothing can be written after.
    pids: set[int] = set()

    def both_answered() -> bool:
        pids.add(httpx.get(server.url, timeout=10).json()["pid"])
        return len(pids) == 2

    wait_for(both_answered, 30, "both workers to answer")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    assert "WORKER TIMEOUT" not in server.output
    assert server.output.count("Booting worker") == 2


def test_boot_timeout_bounds_a_hung_import(tmp_path, launch):
    write(tmp_path / "slow" / "main.py", SLOW_IMPORT)
    server = launch(tmp_path / "slow", WEB_CONCURRENCY="1", BOOT_TIMEOUT="2")
    booted = wait_for(lambda: re.findall(r"Booting worker with pid: (\d+)", server.output), 10, "a worker")
    line = (
        f"Worker (pid:{booted[0]}) did not boot within BOOT_TIMEOUT=2s (importing main:app and running "
        "its startup); exiting so that the master starts another"
    )
    wait_for(lambda: line in server.output, 15, "the boot timeout line")
    wait_for(lambda: len(re.findall(r"Booting worker with pid", server.output)) > 1, 10, "another worker")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-http")
    write(root / "app" / "__init__.py", "")
    write(root / "app" / "main.py", PROBE_APP)
    server = Launched(START, root, {"WEB_CONCURRENCY": "2"}, root / "output.log")
    server.wait_ready()
    yield server
    server.kill()


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_http_input_is_refused_and_the_next_request_served(shared_server, name):
    assert_outcome(shared_server.port, BAD_REQUESTS[name], name)  # a 4xx and the connection closed
    assert_outcome(shared_server.port, GOOD_REQUESTS["valid GET"], "the next request")


@pytest.mark.parametrize("name", GOOD_REQUESTS)
def test_valid_http_sent_the_same_way_is_served(shared_server, name):
    """The positive controls of the test above, through the same reader: valid requests, some just
    inside each limit, are answered and their connection kept open."""
    assert_outcome(shared_server.port, GOOD_REQUESTS[name], name)


def test_slow_clients_do_not_starve_a_normal_one(shared_server):
    latencies = normal_latencies_under_slowloris(
        shared_server.port, lambda: httpx.get(shared_server.url + "/", timeout=5).status_code
    )
    record(
        "200 slowloris connections (process)",
        normal_requests=len(latencies),
        worst_latency_ms=round(max(latencies) * 1000, 1),
    )
    assert max(latencies) < SLOWLORIS_LATENCY, latencies
