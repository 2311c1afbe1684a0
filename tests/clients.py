"""Loopback HTTP clients of the fault tests (a bounded, counted load; single probes), and the record
of the figures they measure. Raw, byte-level clients are in rawhttp.py."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FIGURES = Path(__file__).resolve().parent.parent / "build" / "reliability.json"
# Bounds of the fault tests, process and container alike. They must hold on a busy CI machine (a
# replacement worker was seen serving after 3.96 s under load); the figures themselves are recorded.
REPLACED_WITHIN = 20  # s: what is guarded against is a replacement after TIMEOUT (120 s), or never
SLOWLORIS_LATENCY = 3.0  # s: a starved client would wait for its 5 s timeout


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


# One test run: scripts/reliability_table.py shows the figures of the latest run only.
RUN = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def record(name: str, **figures) -> None:
    """Keep a measured figure for docs/reliability.md's table (build/reliability.json)."""
    FIGURES.parent.mkdir(exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = {**figures, "run": RUN}
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
