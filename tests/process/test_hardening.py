"""The worker's and the protocol's protections, on real processes: slow request heads, MAX_REQUESTS
overshoot, requests cut by GRACEFUL_TIMEOUT, quick stops, head limits that count only the head, the
boot watchdog, and TIMEOUT in one-process mode.
"""

from __future__ import annotations

import collections
import re
import resource
import signal
import socket
import threading
import time

import httpx
import pytest
from support.clients import CLIENT_TIMEOUT, POLL_DEADLINE, SlowHeads, count_per_worker, fetch, record
from support.files import write
from support.logs import json_lines
from support.metrics import scrape, total
from support.proc import wait_for

# ---- slow request heads (HEADER_TIMEOUT) -----------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"this test needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def normal_client_latencies(url: str, seconds: float) -> list[tuple[float, float]]:
    """(time since start, latency) of a request on a new connection every 0.2 s."""
    started = time.monotonic()
    out = []
    while (now := time.monotonic()) - started < seconds:
        assert httpx.get(url + "/", timeout=CLIENT_TIMEOUT).status_code == 200
        out.append((now - started, time.monotonic() - now))
        time.sleep(0.2)
    return out


@pytest.mark.parametrize("header_timeout", ["5", "0"], ids=["timeout 5s", "no timeout (control)"])
def test_slow_heads_are_closed_and_normal_clients_keep_their_latency(probe_app, launch, header_timeout):
    slow = 2000
    raise_fd_limit(2 * slow + 1000)  # the test's sockets, and the server's, which inherit the limit
    server = launch(probe_app, WEB_CONCURRENCY="2", HEADER_TIMEOUT=header_timeout)
    server.wait_ready()
    server.wait_workers(2)
    with SlowHeads(server.port, slow) as heads:
        latencies = normal_client_latencies(server.url, seconds=10)
        still_open = heads.open
        closed_at = sorted(heads.closed_at.values())
        answered_408 = heads.answered_408
    timeouts = total(scrape(server), "http_request_head_timeouts_total")
    worst = max(latency for _, latency in latencies)
    all_closed_by = closed_at[-1] if len(closed_at) == slow else None
    worst_after = max((lat for t, lat in latencies if all_closed_by and t > all_closed_by), default=None)
    record(
        f"{slow} slow request heads, HEADER_TIMEOUT={header_timeout} (process)",
        closed=len(closed_at),
        answered_408=answered_408,
        first_closed_s=round(closed_at[0], 2) if closed_at else None,
        all_closed_s=round(all_closed_by, 2) if all_closed_by else None,
        still_open_after_10s=still_open,
        head_timeouts_metric=timeouts,
        normal_requests=len(latencies),
        worst_latency_ms=round(worst * 1000, 1),
        worst_latency_after_closing_ms=round(worst_after * 1000, 1) if worst_after else None,
    )
    if header_timeout == "0":
        assert still_open == slow  # the control: without the timeout every slow head stays
        assert timeouts == 0
        return
    assert still_open == 0
    assert closed_at[0] > 4.5, closed_at[0]  # HEADER_TIMEOUT=5, not before
    assert all_closed_by < 9, all_closed_by
    assert timeouts == slow  # each counted once, summed over both workers
    # Generous: the figures are in build/reliability.json; on a busy machine a single request can stall.
    assert worst < 2.0, latencies
    assert worst_after < 1.0, latencies


# ---- request-head limits: the head only ------------------------------------------------------------------


def test_the_body_does_not_count_towards_the_head_limits(probe_app, launch):
    """A 7 KB POST is served under limits of 10 fields of 200 bytes, which its head is well within (a
    valid POST like it was once refused as a large head: issue 12)."""
    server = launch(
        probe_app,
        WEB_CONCURRENCY="1",
        GUNICORN_CMD_ARGS="--limit-request-fields 10 --limit-request-field_size 200",
    )
    server.wait_ready()
    response = httpx.post(server.url + "/echo", content=b"x" * 7000, timeout=CLIENT_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json() == {"size": 7000}
    # The limits are in force: a header of 300 bytes is refused.
    refused = httpx.get(server.url + "/", headers={"X-Long": "v" * 300}, timeout=CLIENT_TIMEOUT)
    assert refused.status_code == 431


def test_a_refused_huge_head_is_answered_not_reset(probe_app, launch):
    """The server stops reading a head over the limits while the client is still sending it: closing
    then would reset the connection, and the reset can beat the 431 to the client. It answers, then
    reads and drops the rest (linger) until the client is done."""
    server = launch(probe_app, WEB_CONCURRENCY="1")
    server.wait_ready()
    payload = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    answers = []
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT) as s:
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            except OSError as error:  # ECONNRESET, EPIPE, ENOTCONN: reset before the answer was read
                answer = repr(error).encode()
        answers.append(answer.split(b"\r\n", 1)[0])
    assert answers == [b"HTTP/1.1 431 Request Header Fields Too Large"] * 20, collections.Counter(answers)


# ---- MAX_REQUESTS overshoot --------------------------------------------------------------------------------


def test_max_requests_overshoot_is_bounded(probe_app, launch):
    limit, clients = 200, 4
    server = launch(probe_app, WEB_CONCURRENCY="2", MAX_REQUESTS=str(limit))
    server.wait_ready()
    server.wait_workers(2)
    counts, failed = count_per_worker(server.url, clients, requests=2000)
    alive = {w.pid for w in server.workers()}
    retired = {pid: n for pid, n in counts.items() if pid not in alive}
    logged = [int(n) for n in re.findall(r"Maximum request limit of (\d+) exceeded", server.output)]
    record(
        f"MAX_REQUESTS={limit} overshoot (process)",
        load=f"{clients} keep-alive clients",
        requests=counts.total(),
        failed=len(failed),
        retired_workers=len(retired),
        served_by_retired=sorted(retired.values()),
        logged_limits=sorted(set(logged)),
    )
    assert failed == []
    assert len(retired) >= 5, counts
    assert set(logged) == {limit}
    # The bound: at the limit the worker stops accepting, and each connection it holds (one per client
    # at most) carries at most one more request.
    assert max(retired.values()) <= limit + clients, retired


# ---- GRACEFUL_TIMEOUT and quick stops ---------------------------------------------------------------------


def requests_in_flight(server, paths: list[str], started: int) -> tuple[list, list[threading.Thread]]:
    outcomes: list = []
    threads = [threading.Thread(target=fetch, args=(server.url + p, outcomes), daemon=True) for p in paths]
    for t in threads:
        t.start()
    wait_for(
        lambda: server.output.count("slow request started") >= started,
        POLL_DEADLINE,
        f"{started} requests to start",
    )
    return outcomes, threads


def test_requests_cut_by_graceful_timeout_are_closed_and_logged(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT="3")
    server.wait_ready()
    (worker,) = server.wait_workers(1)
    long, short = "/slow?seconds=8", "/slow?seconds=1"
    outcomes, threads = requests_in_flight(server, [long, long, long, short], started=4)
    stopped = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    took = time.monotonic() - stopped
    for t in threads:
        t.join(CLIENT_TIMEOUT)
    record("3 requests longer than GRACEFUL_TIMEOUT=3 (process)", outcomes=sorted(map(str, outcomes)))
    assert sorted(map(str, outcomes)) == ["200"] + ["RemoteProtocolError"] * 3
    assert 2 < took < 6, took  # waited for them, then stopped before the 8 s they wanted
    assert (
        f"Worker (pid:{worker.pid}) stopping: GRACEFUL_TIMEOUT=3s ran out: closing 3 connection(s) with a "
        "request unfinished: GET /slow?seconds=8 (x3)"
    ) in server.output
    assert "Exception in ASGI application" not in server.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_quick_stop_closes_requests_in_flight_rather_than_answer_500(probe_app, launch, sig):
    server = launch(probe_app, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT="30")
    server.wait_ready()
    (worker,) = server.wait_workers(1)
    outcomes, threads = requests_in_flight(server, ["/slow?seconds=30"] * 2, started=2)
    stopped = time.monotonic()
    server.signal(sig)
    assert server.wait_exit(15) == 0
    took = time.monotonic() - stopped
    for t in threads:
        t.join(CLIENT_TIMEOUT)
    assert outcomes == ["RemoteProtocolError"] * 2  # not 500: the requests were not answered
    assert took < 5, took  # not the 30 s of GRACEFUL_TIMEOUT
    assert (
        f"Worker (pid:{worker.pid}) quick stop: closing 2 connection(s) with a request unfinished: "
        "GET /slow?seconds=30 (x2)"
    ) in server.output
    assert "Exception in ASGI application" not in server.output


LIFESPAN_APP = """\
import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI


@asynccontextmanager
async def lifespan(app):
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/")
def root():
    return {}


@app.get("/slow")
async def slow():
    print("slow request started", flush=True)
    await asyncio.sleep(30)
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("in_flight", [1, 0], ids=["a request in flight", "idle"])
def test_a_quick_stop_with_a_lifespan_app_says_one_line(tmp_path, launch, log_format, in_flight):
    """Starlette's lifespan, cancelled by the quick stop, reports its traceback as message text."""
    root = tmp_path / "lifespan"
    write(root / "app" / "__init__.py", "")
    write(root / "app" / "main.py", LIFESPAN_APP)
    server = launch(root, WEB_CONCURRENCY="1", LOG_FORMAT=log_format)
    server.wait_ready()
    server.wait_workers(1)
    requests_in_flight(server, ["/slow"] * in_flight, started=in_flight)
    server.signal(signal.SIGINT)
    assert server.wait_exit(15) == 0
    lines = json_lines(server.output) if log_format == "json" else server.output.splitlines()
    text = "\n".join(map(str, lines))
    assert "Handling signal: int" in text  # the control: this is the log of the stop
    assert "Traceback" not in text
    assert "CancelledError" not in text
    said = [line for line in lines if "quick stop: closing" in str(line)]
    assert len(said) == in_flight


def test_sigterm_in_the_same_setup_answers_the_requests(probe_app, launch):
    """The control for the two above: the same helper sees answers when the stop is graceful."""
    server = launch(probe_app, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT="30")
    server.wait_ready()
    outcomes, threads = requests_in_flight(server, ["/slow?seconds=2"] * 2, started=2)
    server.signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    for t in threads:
        t.join(CLIENT_TIMEOUT)
    assert outcomes == [200, 200]
    assert "closing" not in server.output


# ---- the boot watchdog ------------------------------------------------------------------------------------


def test_a_healthy_worker_outlives_boot_timeout(probe_app, launch):
    """Its boot ends with its first heartbeat; an idle, healthy worker is not taken for a hung import."""
    server = launch(probe_app, WEB_CONCURRENCY="1", BOOT_TIMEOUT="2")
    server.wait_ready()
    (worker,) = server.wait_workers(1)
    watched_until = time.monotonic() + 5  # well past BOOT_TIMEOUT
    while time.monotonic() < watched_until:
        assert [w.pid for w in server.workers()] == [worker.pid], server.output
        time.sleep(0.2)
    assert server.get("/pid", timeout=CLIENT_TIMEOUT).json() == {"pid": worker.pid}
    assert "did not boot within BOOT_TIMEOUT" not in server.output


def test_bad_header_timeout_is_one_line_and_a_failed_start(probe_app, launch):
    server = launch(probe_app, WEB_CONCURRENCY="1", HEADER_TIMEOUT="ten")
    assert server.wait_exit(20) != 0
    assert "HEADER_TIMEOUT='ten' is not valid: expected a whole number >= 0" in server.output
    assert "Traceback" not in server.output


# ---- TIMEOUT in one-process mode ---------------------------------------------------------------------------


def test_one_process_mode_exits_when_its_loop_is_blocked_past_timeout(probe_app, launch):
    server = launch(probe_app, PROCESS_MANAGER="uvicorn", TIMEOUT="4")
    server.wait_ready()
    # The control: busy, but never past TIMEOUT.
    for _ in range(3):
        assert server.get("/block?seconds=1.5", timeout=CLIENT_TIMEOUT).json() == {"blocked": 1.5}
    assert server.proc.poll() is None
    blocked = time.monotonic()
    threading.Thread(target=fetch, args=(server.url + "/block?seconds=30", []), daemon=True).start()
    assert server.wait_exit(20) == 1
    took = time.monotonic() - blocked
    record("one process, loop blocked past TIMEOUT=4", exited_after_s=round(took, 2))
    assert 3.5 < took < 10, took
    assert re.search(
        r"Process \(pid:\d+\) timed out: no event-loop progress for 4s \(TIMEOUT; blocked or busy\); "
        r"serving: GET /block\?seconds=30; exiting with status 1 so that it is restarted",
        server.output,
    ), server.output


def test_one_process_mode_slow_startup_is_not_a_timeout(tmp_path, launch):
    """As with Gunicorn, TIMEOUT starts once the app's startup is over."""
    write(
        tmp_path / "slow" / "main.py",
        """\
        import time
        from contextlib import asynccontextmanager

        from fastapi import FastAPI


        @asynccontextmanager
        async def lifespan(app):
            time.sleep(4)  # a model loaded in the startup, blocking the loop
            yield


        app = FastAPI(lifespan=lifespan)


        @app.get("/")
        def root():
            return {"Hello": "slow"}
        """,
    )
    server = launch(tmp_path / "slow", PROCESS_MANAGER="uvicorn", TIMEOUT="2")
    assert server.wait_ready(timeout=30).json() == {"Hello": "slow"}
    assert "timed out" not in server.output
