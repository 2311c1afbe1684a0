"""A bounded, counted load from loopback clients, and a record of the figures fault tests measure."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FIGURES = Path(__file__).resolve().parent.parent / "build" / "reliability.json"


@dataclass
class Outcome:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)


class Load:
    """``clients`` threads, each on its own keep-alive connection (or a new connection per request
    with ``keepalive=False``), requesting ``path`` until stopped.

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
        verify: bool = True,
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
        with httpx.Client(
            base_url=self.url, timeout=self.timeout, limits=limits, verify=self.verify
        ) as client:
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


def record(name: str, **figures) -> None:
    """Keep a measured figure for the README's reliability table (build/reliability.json)."""
    FIGURES.parent.mkdir(exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
