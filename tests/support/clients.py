"""Loopback HTTP clients of the fault and hardening tests (a bounded, counted load; answers counted
per worker; slow request heads; single probes), and the record of the figures they measure. Raw,
byte-level clients are in rawhttp.py."""

from __future__ import annotations

import collections
import contextlib
import json
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FIGURES = Path(__file__).resolve().parents[2] / "build" / "reliability.json"
# Bounds of the fault tests, process and container alike. They must hold on a busy CI machine (a
# replacement worker was seen serving after 3.96 s under load); the figures themselves are recorded.
REPLACED_WITHIN = 20  # s: what is guarded against is a replacement after TIMEOUT (120 s), or never
SLOWLORIS_LATENCY = 3.0  # s: a starved client would wait for its 5 s timeout
# A loaded CI host (two cores, image builds beside the suite) can hold a request back for seconds. The
# client timeouts of the hardening tests only catch a hang; what a test bounds (latencies, stop times)
# it measures and asserts itself.
CLIENT_TIMEOUT = 30
# How long a poll waits for something that takes well under a second on an idle machine.
POLL_DEADLINE = 30


@dataclass
class Outcome:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)


class Load:
    """``clients`` threads, each on its own keep-alive connection (or a new connection per request
    with ``keepalive=False``), requesting ``path`` until stopped.

    ``verify`` may be a function making a TLS context: one per client, as httpcore sets the ALPN
    protocols of the context on every new connection (shared by threads, a ClientHello was once sent
    malformed and the server refused it with a decode_error alert).

    Bounded twice: by ``max_seconds`` and by ``max_requests`` per client. With ``path='/pid'`` the
    answering worker of every request is recorded.
    """

    def __init__(
        self,
        url: str,
        path: str = "/pid",
        clients: int = 4,
        max_seconds: float = 60,
        max_requests: int = 20_000,
        timeout: float = 10,
        keepalive: bool = True,
        verify: bool | Callable[[], ssl.SSLContext] = True,
    ):
        self.url, self.path, self.timeout, self.keepalive, self.verify = url, path, timeout, keepalive, verify
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.outcome = Outcome()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> Outcome:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.outcome

    def wait_requests(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.outcome.ok + self.outcome.failed < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.outcome.ok} requests in {timeout}s")
            time.sleep(0.05)

    def _client(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        limits = httpx.Limits(max_keepalive_connections=1 if self.keepalive else 0)
        verify = self.verify() if callable(self.verify) else self.verify
        with httpx.Client(base_url=self.url, timeout=self.timeout, limits=limits, verify=verify) as client:
            for _ in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    response = client.get(self.path)
                    good = response.status_code == 200
                    detail = f"status {response.status_code}"
                    pid = response.json().get("pid") if good and self.path == "/pid" else None
                except httpx.HTTPError as error:
                    good, detail, pid = False, f"{type(error).__name__}: {error}", None
                with self._lock:
                    if good:
                        self.outcome.ok += 1
                        if pid:
                            self.outcome.pids.add(pid)
                    else:
                        self.outcome.failed += 1
                        self.outcome.errors.append(detail)


def answering_pid(url: str) -> int | None:
    """The pid of the worker that answers a new connection (the probe app's /pid), None if none did."""
    try:
        return httpx.get(url + "/pid", timeout=2).json()["pid"]
    except httpx.HTTPError:
        return None


def port_answer(port: int, path: str = "/", host: str = "127.0.0.1") -> str:
    """``refused`` when nothing listens on ``port``, else the status GET ``path`` gets there. One probe
    for both sides of a test that a port is closed."""
    with socket.socket() as probe:
        try:
            probe.connect((host, port))
        except ConnectionRefusedError:
            return "refused"
    return str(httpx.get(f"http://{host}:{port}{path}", timeout=5).status_code)


def get_ignoring_errors(url: str, timeout: float = 70) -> None:
    """A request expected to die with its worker."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=timeout)


def fetch(url: str, outcomes: list, timeout: float = 60) -> None:
    """GET ``url``; its status, or the name of the error it ended with, is appended to ``outcomes``."""
    try:
        response = httpx.get(url, timeout=timeout)
        outcomes.append(response.status_code)
    except httpx.HTTPError as error:
        outcomes.append(type(error).__name__)


def count_per_worker(
    url: str, clients: int, requests: int, timeout: float = 180, request_timeout: float = 60
):
    """``clients`` keep-alive clients requesting /pid until ``requests`` answers: answers per worker pid.

    A request can wait for a retired worker's successor to boot, seconds on a loaded host, hence the
    generous ``request_timeout``. Fails if ``timeout`` runs out before ``requests`` are made."""
    counts: collections.Counter[int] = collections.Counter()
    failed: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def client():
        with httpx.Client(base_url=url, timeout=request_timeout) as http:
            while time.monotonic() < deadline:
                with lock:
                    if counts.total() + len(failed) >= requests:
                        return
                try:
                    pid = http.get("/pid").json()["pid"]
                except httpx.HTTPError as error:
                    with lock:
                        failed.append(repr(error))
                    continue
                with lock:
                    counts[pid] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        # A client starts no request after the deadline, and its last one ends within request_timeout.
        t.join(max(0.0, deadline - time.monotonic()) + request_timeout + 10)
    made = counts.total() + len(failed)
    assert made >= requests, f"{made} of {requests} requests within {timeout}s: {counts}, {failed[:5]}"
    return counts, failed


class SlowHeads:
    """``count`` connections sending a request head one byte a second, never finishing it; records when
    the server closes each (and whether it said 408 first)."""

    HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 1000

    def __init__(self, port: int, count: int):
        self.sockets = [
            socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) for _ in range(count)
        ]
        self.started = time.monotonic()
        self.closed_at: dict[int, float] = {}
        self.answered_408 = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowHeads:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.sockets:
            s.close()

    @property
    def open(self) -> int:
        return len(self.sockets) - len(self.closed_at)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for i, s in enumerate(self.sockets):
                s.setblocking(False)
                selector.register(s, selectors.EVENT_READ, i)
            sent = 0
            next_byte = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_byte and sent < len(self.HEAD):
                    for i, s in enumerate(self.sockets):
                        if i not in self.closed_at:
                            with contextlib.suppress(OSError):  # closed by the server meanwhile
                                s.send(self.HEAD[sent : sent + 1])
                    sent += 1
                    next_byte += 1
                for key, _ in selector.select(timeout=max(0.0, min(0.2, next_byte - time.monotonic()))):
                    try:
                        data = key.fileobj.recv(4096)
                    except OSError:  # reset: closed too
                        data = b""
                    if data.startswith(b"HTTP/1.1 408"):
                        self.answered_408 += 1
                    if not data or data.startswith(b"HTTP/1.1 408"):
                        self.closed_at[key.data] = time.monotonic() - self.started
                        selector.unregister(key.fileobj)


# One test run: scripts/reliability_table.py shows the figures of the latest run only.
RUN = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def record(name: str, **figures) -> None:
    """Keep a measured figure for docs/reliability.md's table (build/reliability.json)."""
    FIGURES.parent.mkdir(exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = {**figures, "run": RUN}
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
