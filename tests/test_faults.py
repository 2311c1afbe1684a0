"""Faults injected for real into real processes: reloads, crashes, hangs, slow imports, bad input."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time

import httpx
import pytest
from conftest import write
from load import Load, record
from proc import wait_for


def worker_pids(server) -> set[int]:
    return {w.pid for w in server.workers()}


def get_ignoring_errors(url: str) -> None:
    """A request expected to die with its worker."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=70)


def fresh_pid(server) -> int | None:
    try:
        return httpx.get(server.url + "/pid", timeout=2).json()["pid"]
    except httpx.HTTPError:
        return None


def wait_replaced(server, old: set[int], count: int, timeout: float = 30) -> set[int]:
    def replaced():
        now = worker_pids(server)
        return now if len(now) == count and not now & old else None

    return wait_for(replaced, timeout, f"{count} workers, none of {sorted(old)}")


def test_sighup_reload_under_load_fails_no_request(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2")
    server.wait_ready()
    old = worker_pids(server)
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
    server = launch(probe_app, WEB_CONCURRENCY="2", MAX_REQUESTS="100", MAX_REQUESTS_JITTER="20")
    server.wait_ready()
    with Load(server.url, clients=4) as load:
        load.wait_requests(1200, timeout=60)
    outcome = load.outcome
    record(
        "MAX_REQUESTS=100 recycling (process)",
        load="4 keep-alive clients",
        requests=outcome.ok,
        failed=outcome.failed,
        workers_seen=len(outcome.pids),
    )
    assert outcome.failed == 0, outcome.errors[:5]
    assert len(outcome.pids) >= 6  # 1,200 requests at <= 120 per worker: recycled many times


def test_killed_worker_is_replaced_quickly(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2")
    server.wait_ready()
    old = worker_pids(server)
    clients = 8
    with Load(server.url, clients=clients) as load:
        load.wait_requests(300)
        victim = server.workers()[0]
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        # The load's keep-alive clients stay where they reconnected: probe with fresh connections.
        wait_for(
            lambda: fresh_pid(server) not in old, 10, "a request served by the replacement", interval=0.01
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
    assert replaced_after < 2, replaced_after
    # Only what was in flight on the killed worker may fail: at most one request per client.
    assert outcome.failed <= clients, outcome.errors


def test_hung_worker_is_replaced_while_the_others_serve(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="2", TIMEOUT="3")
    server.wait_ready()
    old = worker_pids(server)
    hung = threading.Thread(target=get_ignoring_errors, args=(server.url + "/block?seconds=60",), daemon=True)
    hung.start()
    with Load(server.url, clients=2, keepalive=False) as load:
        new = wait_for(
            lambda: (old - worker_pids(server)) and len(server.workers()) == 2, 20, "the replacement"
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
    (victim,) = old - worker_pids(server)
    assert f"WORKER TIMEOUT (pid:{victim})" in server.output
    assert (
        f"Worker (pid:{victim}) timed out: no heartbeat for 3s (its event loop was blocked or busy); "
        "serving: GET /block?seconds=60"
    ) in server.output


SLOW_IMPORT = """\
import time

from fastapi import FastAPI

time.sleep(5)  # a model being loaded
app = FastAPI()


@app.get("/")
def root():
    return {"Hello": "slow"}
"""


@pytest.mark.parametrize("env", [{}, {"PRELOAD_APP": "true"}], ids=["default", "preload"])
def test_import_slower_than_timeout_does_not_respawn(tmp_path, launch, env):
    """tiangolo's users saw model loads longer than TIMEOUT killed and respawned forever."""
    write(tmp_path / "slow" / "main.py", SLOW_IMPORT)
    server = launch(tmp_path / "slow", WEB_CONCURRENCY="2", TIMEOUT="2", **env)
    assert server.wait_ready(timeout=40).json() == {"Hello": "slow"}
    time.sleep(3)  # longer than TIMEOUT: a respawn loop would show by now
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


BAD_REQUESTS = {
    "malformed request line": b"GARBAGE / NOT-HTTP\r\n\r\n",
    "header over limit_request_field_size": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * 9000
    + b"\r\n\r\n",
    "one huge header line (1 MB)": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
    "too many headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(150))
    + b"\r\n",
    "request line over limit": b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "Content-Length and Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "broken chunked body": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n"
    ),
    "body longer than announced": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcdefghijklmn"
    ),
    "non-HTTP bytes": bytes(range(256)) * 8,
}


def send_raw(port: int, payload: bytes, timeout: float = 5) -> bytes:
    """The server's whole answer to ``payload`` (until it closes), or b'' if it reset the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def assert_refused(answer: bytes) -> None:
    """A 4xx status for the first response, or a connection closed without an answer."""
    if answer:
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 4"), answer[:200]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    from conftest import PROBE_APP
    from proc import START, Launched

    root = tmp_path_factory.mktemp("bad-http")
    write(root / "app" / "__init__.py", "")
    write(root / "app" / "main.py", PROBE_APP)
    server = Launched(START, root, {"WEB_CONCURRENCY": "2"}, root / "output.log")
    server.wait_ready()
    yield server
    server.kill()


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_http_input_is_refused_and_the_next_request_served(shared_server, name):
    assert_refused(send_raw(shared_server.port, BAD_REQUESTS[name]))
    assert httpx.get(shared_server.url + "/items/1", timeout=5).json() == {"item_id": 1}


def normal_latencies_under_slowloris(port: int, url: str, connections: int = 200, seconds: float = 6):
    """Latencies of a normal client while ``connections`` send their headers a byte every 0.1 s."""
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    stop = threading.Event()

    def trickle():
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 1000
        for i in range(len(head)):
            if stop.wait(0.1):
                return
            for s in slow:
                with contextlib.suppress(OSError):  # the server may close a slow connection
                    s.send(head[i : i + 1])

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    latencies = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert httpx.get(url + "/", timeout=5).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.2)
    finally:
        stop.set()
        trickler.join(5)
        for s in slow:
            s.close()
    return latencies


def test_slow_clients_do_not_starve_a_normal_one(shared_server):
    latencies = normal_latencies_under_slowloris(shared_server.port, shared_server.url)
    record(
        "200 slowloris connections (process)",
        normal_requests=len(latencies),
        worst_latency_ms=round(max(latencies) * 1000, 1),
    )
    assert max(latencies) < 1.0, latencies
