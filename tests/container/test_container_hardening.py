"""The worker's protections in the real image (its Python, uvloop and Docker's signals): the
orchestrator's restart after TIMEOUT in one-process mode, a quick stop, slow heads, MAX_REQUESTS."""

from __future__ import annotations

import threading
import time

import httpx
from support.clients import CLIENT_TIMEOUT, POLL_DEADLINE, SlowHeads, count_per_worker, fetch, record
from support.dockerutil import docker, timestamp
from support.proc import wait_for


def test_one_process_timeout_restarts_the_container(probe_image, run_container):
    c = run_container(
        probe_image, args=["--restart", "on-failure"], env={"PROCESS_MANAGER": "uvicorn", "TIMEOUT": "3"}
    )
    c.wait_ready()
    threading.Thread(target=fetch, args=(c.url + "/block?seconds=60", []), daemon=True).start()
    wait_for(lambda: c.inspect()["RestartCount"] >= 1, 60, lambda: f"a restart\n{c.logs()}", interval=0.2)
    assert c.wait_ready().json() == {"Hello": "World"}  # the restarted process serves
    assert "serving: GET /block?seconds=60; exiting with status 1 so that it is restarted" in c.logs()


def test_quick_stop_in_the_container(probe_image, run_container):
    c = run_container(probe_image, env={"WEB_CONCURRENCY": "1", "GRACEFUL_TIMEOUT": "30"})
    c.wait_ready()
    outcomes: list = []
    threads = [threading.Thread(target=fetch, args=(c.url + "/slow?seconds=30", outcomes)) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: c.logs().count("slow request started") == 2, POLL_DEADLINE, "two requests in flight")
    started = time.time()
    docker("kill", "-s", "QUIT", c.name)
    assert c.wait_exit(60) == 0
    # The engine's own exit time, not when a `docker inspect` of a busy engine first saw it.
    took = timestamp(c.inspect()["State"]["FinishedAt"]) - started
    for t in threads:
        t.join(CLIENT_TIMEOUT)
    assert outcomes == ["RemoteProtocolError"] * 2
    assert took < 5, took
    assert (
        "quick stop: closing 2 connection(s) with a request unfinished: GET /slow?seconds=30 (x2)" in c.logs()
    )


def test_slow_heads_are_closed_in_the_container(probe_image, run_container):
    c = run_container(probe_image, env={"WEB_CONCURRENCY": "2", "HEADER_TIMEOUT": "2"})
    c.wait_ready()
    with SlowHeads(c.port, 200) as heads:
        wait_for(lambda: heads.open == 0, POLL_DEADLINE, "the slow heads to be closed", interval=0.2)
        closed = sorted(heads.closed_at.values())
    assert httpx.get(c.url + "/", timeout=CLIENT_TIMEOUT).status_code == 200
    record("200 slow request heads, HEADER_TIMEOUT=2 (container)", first_closed_s=round(closed[0], 2),
           all_closed_s=round(closed[-1], 2))  # fmt: skip
    assert closed[0] > 1.5


def test_max_requests_overshoot_in_the_container(probe_image, run_container):
    c = run_container(probe_image, env={"WEB_CONCURRENCY": "2", "MAX_REQUESTS": "100"})
    c.wait_ready()
    counts, failed = count_per_worker(c.url, clients=4, requests=800)
    # In the container the pids are the container's own: the worker answering is what counts. Workers
    # still alive at the end may have served fewer; none may have served more than the bound.
    assert failed == []
    assert len(counts) >= 5, counts
    assert max(counts.values()) <= 100 + 4, counts
