"""What each worker does per request, in one ASGI wrapper: the access log line and the request metrics.

Uvicorn's own access log goes through ``logging`` and a write per request. Here a request only
appends its line, or adds its latency to an in-memory tally; both are written out together every
FLUSH_INTERVAL (and at exit), which is what keeps them cheap under load. Gunicorn's
``access_log_format`` is honoured (Uvicorn's worker ignores it).
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import json
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

from asgi_launcher.metrics import LABELS

FLUSH_INTERVAL = 0.05  # seconds: how stale a log line or a scraped value may be
UNMATCHED = "<unmatched>"  # every path no route matched shares one label: scans cannot add series
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})


class Exchange:
    """One finished HTTP request as the log and the metrics see it."""

    __slots__ = ("duration", "response_headers", "response_size", "scope", "status")

    def __init__(self, scope: dict):
        self.scope = scope
        self.status = 500  # what Uvicorn answers if the app fails before starting a response
        self.response_size = 0
        self.response_headers: list | None = None
        self.duration = 0.0

    @property
    def client(self) -> str:
        client = self.scope.get("client")
        return f"{client[0]}:{client[1]}" if client else "-"

    @property
    def path(self) -> str:
        path = quote(self.scope.get("root_path", "") + self.scope["path"])
        query = self.scope.get("query_string")
        return f"{path}?{query.decode('ascii', 'replace')}" if query else path

    @property
    def request_line(self) -> str:
        return f"{self.scope['method']} {self.path}"

    @property
    def route(self) -> str:
        return getattr(self.scope.get("route"), "path", None) or UNMATCHED

    def request_header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", ()):
            if key == name:
                return value.decode("latin-1")
        return None

    def response_header(self, name: bytes) -> str | None:
        for key, value in self.response_headers or ():
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    @property
    def request_size(self) -> int | None:
        length = self.request_header(b"content-length")
        return int(length) if length and length.isdigit() else None


def uvicorn_line(x: Exchange) -> str:
    """The line Uvicorn's worker writes, so that log expectations from tiangolo's image still hold."""
    return f'{x.client} - "{x.scope["method"]} {x.path} HTTP/{x.scope["http_version"]}" {x.status}'


def json_line(x: Exchange) -> str:
    return json.dumps(
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": "access",
            "pid": os.getpid(),
            "message": uvicorn_line(x),
            "client": x.client,
            "scheme": x.scope.get("scheme", "http"),
            "method": x.scope["method"],
            "path": x.path,
            "route": x.route,
            "http_version": x.scope["http_version"],
            "status": x.status,
            "duration_ms": round(x.duration * 1000, 3),
            "request_size": x.request_size,
            "response_size": x.response_size,
            "user_agent": x.request_header(b"user-agent"),
        }
    )


_ATOMS: dict[str, Callable[[Exchange], object]] = {
    "h": lambda x: (x.scope.get("client") or ("-",))[0],
    "l": lambda x: "-",
    "u": lambda x: "-",
    "t": lambda x: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda x: f"{x.scope['method']} {x.path} HTTP/{x.scope['http_version']}",
    "m": lambda x: x.scope["method"],
    "U": lambda x: quote(x.scope["path"]),
    "q": lambda x: x.scope.get("query_string", b"").decode("ascii", "replace"),
    "H": lambda x: f"HTTP/{x.scope['http_version']}",
    "s": lambda x: x.status,
    "B": lambda x: x.response_size,
    "b": lambda x: x.response_size or "-",
    "f": lambda x: x.request_header(b"referer") or "-",
    "a": lambda x: x.request_header(b"user-agent") or "-",
    "T": lambda x: int(x.duration),
    "M": lambda x: int(x.duration * 1000),
    "D": lambda x: int(x.duration * 1_000_000),
    "L": lambda x: f"{x.duration:.6f}",
    "p": lambda x: f"<{os.getpid()}>",
    "R": lambda x: x.route,  # ours: the route template
}
_ATOM = re.compile(r"%\(([^)]*)\)")


def atoms_line(fmt: str) -> Callable[[Exchange], str]:
    """Gunicorn's access_log_format: its atoms, plus {header}i and {header}o; unknown atoms print '-'."""
    getters: dict[str, Callable[[Exchange], object]] = {}
    for name in set(_ATOM.findall(fmt)):
        if name in _ATOMS:
            getters[name] = _ATOMS[name]
        elif name.startswith("{") and name.endswith("}i"):
            header = name[1:-2].lower().encode("latin-1")
            getters[name] = lambda x, h=header: x.request_header(h) or "-"
        elif name.startswith("{") and name.endswith("}o"):
            header = name[1:-2].lower().encode("latin-1")
            getters[name] = lambda x, h=header: x.response_header(h) or "-"
        else:
            getters[name] = lambda x: "-"

    def render(x: Exchange) -> str:
        return fmt % {name: get(x) for name, get in getters.items()}

    return render


class Batched:
    """Work that is done for many requests at once: ``flush`` runs FLUSH_INTERVAL after ``_schedule``."""

    _scheduled = False

    def __init__(self):
        atexit.register(self.flush)  # a worker that stops (SIGTERM, MAX_REQUESTS) writes what it holds

    def _schedule(self) -> None:
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # the flush at exit: no loop to come back to
                return
            self._scheduled = True
            loop.call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        raise NotImplementedError


class AccessLog(Batched):
    """Lines for Gunicorn's access log handlers."""

    def __init__(self, logger: logging.Logger, render: Callable[[Exchange], str]):
        super().__init__()
        self.logger = logger
        self.render = render
        self._pending: list[str] = []

    def record(self, exchange: Exchange) -> None:
        self._pending.append(self.render(exchange) + "\n")
        self._schedule()

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        for handler in self.logger.handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None:
                with handler.lock:  # Gunicorn swaps the stream under this lock when USR1 reopens files
                    stream.write(text)
                    stream.flush()
            elif handler.level <= logging.INFO:
                # Not a stream (syslog, say): a record per line, to this handler alone. (The logger
                # would hand each record to every handler, the streams just written included.)
                for line in text.splitlines():
                    handler.handle(
                        self.logger.makeRecord(self.logger.name, logging.INFO, "", 0, line, None, None)
                    )


class RequestMetrics(Batched):
    """Latency histogram and in-flight requests.

    The request count is the histogram's own ``_count``; the exporter publishes it again as
    ``http_requests_total`` (``metrics.with_request_totals``), so no request pays for a second series.
    Under Gunicorn the values go to prometheus_client's multiprocess files; a single process serves
    ``registry``. ``registry=None`` under Gunicorn: the master collects from the files, and an app
    that defines metrics of the same names must not fail to register them.
    """

    def __init__(self, registry=None):
        from prometheus_client import Gauge, Histogram

        super().__init__()
        self._latency = Histogram(
            "http_request_duration_seconds", "Time to answer HTTP requests", LABELS, registry=registry
        )
        self._in_flight = Gauge(
            "http_requests_in_progress",
            "HTTP requests being answered",
            ("method",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._bounds = list(self._latency._upper_bounds)
        self._children: dict[tuple[str, str, int], object] = {}
        self._in_flight_children: dict[str, object] = {}
        self._finished: dict[tuple[str, str, int], list] = {}  # key -> [sum, count per bucket]
        self.in_flight: set[Exchange] = set()  # Observed's: counted at flush time, not per request

    def finished(self, x: Exchange) -> None:
        method = x.scope["method"]
        route = getattr(x.scope.get("route"), "path", None) or UNMATCHED
        key = (method if method in METHODS else "OTHER", route, x.status)
        pending = self._finished.get(key)
        if pending is None:
            pending = self._finished[key] = [0.0, [0] * len(self._bounds)]
            self._start_ticking()
        pending[0] += x.duration
        pending[1][bisect.bisect_left(self._bounds, x.duration)] += 1

    def _start_ticking(self) -> None:
        """Flush every FLUSH_INTERVAL from the first request on: requests then do no scheduling."""
        if not self._scheduled:
            self._schedule()

    def flush(self) -> None:
        self._scheduled = False
        active = dict.fromkeys(self._in_flight_children, 0)
        for x in self.in_flight:
            method = x.scope["method"]
            method = method if method in METHODS else "OTHER"
            active[method] = active.get(method, 0) + 1
        for method, count in active.items():
            child = self._in_flight_children.get(method)
            if child is None:
                child = self._in_flight_children[method] = self._in_flight.labels(method)
            child.set(count)
        for key, (total, counts) in self._finished.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._latency.labels(key[0], key[1], str(key[2]))
            child._sum.inc(total)  # the same per-bucket values observe() keeps, added in one go
            for bucket, count in zip(child._buckets, counts, strict=True):
                if count:
                    bucket.inc(count)
        self._finished.clear()
        self._schedule()  # the next tick: 20 wake-ups a second, idle or not


class Observed:
    """Wraps the app: ``Observed(app, access_log, metrics)``; either of the two may be None."""

    def __init__(self, app, access_log: AccessLog | None, metrics: RequestMetrics | None):
        self.app = app
        self.access_log = access_log
        self.metrics = metrics
        # Named by the worker when it times out; counted by the metrics for the in-flight gauge.
        self.in_flight: set[Exchange] = metrics.in_flight if metrics else set()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        exchange = Exchange(scope)
        started = time.perf_counter()

        async def observing_send(message):
            kind = message["type"]
            if kind == "http.response.body":
                exchange.response_size += len(message.get("body", b""))
            elif kind == "http.response.start":
                exchange.status = message["status"]
                exchange.response_headers = message.get("headers")
            await send(message)

        self.in_flight.add(exchange)
        try:
            await self.app(scope, receive, observing_send)
        finally:
            self.in_flight.discard(exchange)
            exchange.duration = time.perf_counter() - started
            if self.metrics:
                self.metrics.finished(exchange)
            if self.access_log:
                self.access_log.record(exchange)
