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
LAG_WINDOW = 5.0  # seconds: the event-loop lag gauge shows the worst delay of this window and the last
# The image's HEALTHCHECK (scripts/healthcheck.sh) sends this, from inside the container.
PROBE_AGENT = b"asgi-server-healthcheck"
LOOPBACK = frozenset({"127.0.0.1", "::1"})
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
        # Uvicorn >= 0.26 puts ROOT_PATH in front of the path itself (ASGI's rule); older ones did not.
        root_path, path = self.scope.get("root_path", ""), self.scope["path"]
        path = quote(path if path.startswith(root_path) else root_path + path)
        query = self.scope.get("query_string")
        return f"{path}?{query.decode('ascii', 'replace')}" if query else path

    @property
    def request_line(self) -> str:
        return f"{self.scope['method']} {self.path}"

    @property
    def route(self) -> str:
        return getattr(self.scope.get("route"), "path", None) or UNMATCHED

    @property
    def method_label(self) -> str:
        """The method as the metrics label it: one of the standard ones, or OTHER."""
        method = self.scope["method"]
        return method if method in METHODS else "OTHER"

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


def access_fields(x: Exchange) -> dict:
    """The request as fields: the JSON access entry's, and the attributes of LOGGING_CONF's records."""
    return {
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


def json_line(x: Exchange) -> str:
    return json.dumps(
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": "access",
            "pid": os.getpid(),
            "message": uvicorn_line(x),
            **access_fields(x),
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


def access_renderer(log_format: str, fmt: str | None) -> Callable[[Exchange], str]:
    """The access line: JSON with LOG_FORMAT=json, else Gunicorn's format when one is set, else Uvicorn's."""
    if log_format == "json":
        return json_line
    return atoms_line(fmt) if fmt else uvicorn_line


def access_log_for(logger, render, enabled: bool, through_logging: bool) -> AccessLog | None:
    """With LOGGING_CONF, every line goes through ``logging`` (the file may add handlers of its own);
    otherwise the batched writer, when the access log is on."""
    if through_logging:
        has_handlers = any(not isinstance(h, logging.NullHandler) for h in logger.handlers)
        return RecordAccessLog(logger, render) if enabled or has_handlers else None
    return AccessLog(logger, render) if enabled else None


class Batched:
    """Work that is done for many requests at once: ``flush`` runs FLUSH_INTERVAL after ``_schedule``."""

    _scheduled = False
    _due: float | None = None  # when the scheduled flush should run: how late it runs is the loop's lag

    def __init__(self):
        atexit.register(self.flush)  # a worker that stops (SIGTERM, MAX_REQUESTS) writes what it holds

    def _schedule(self) -> None:
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # the flush at exit: no loop to come back to
                return
            self._scheduled = True
            self._due = loop.time() + FLUSH_INTERVAL
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


class RecordAccessLog(AccessLog):
    """The access log through ``logging`` itself, one record per request, for LOGGING_CONF: the
    user's handlers, formatters and filters all apply (the batched writer bypasses them). The
    message is the text line (Uvicorn's, or ``ACCESS_LOG_FORMAT``'s); the record also carries the
    request's fields as attributes (``record.status``, ``record.route`` ...) for filters and formats,
    and all of them as ``record.access_fields``, which ``LOG_FORMAT=json``'s formatter writes out."""

    def __init__(self, logger: logging.Logger, render: Callable[[Exchange], str]):
        super().__init__(logger, uvicorn_line if render is json_line else render)
        self._records: list[tuple[str, dict]] = []

    def record(self, exchange: Exchange) -> None:
        fields = access_fields(exchange)
        self._records.append((self.render(exchange), {**fields, "access_fields": fields}))
        self._schedule()

    def flush(self) -> None:
        self._scheduled = False
        records, self._records = self._records, []
        for line, extra in records:
            self.logger.info("%s", line, extra=extra)


def is_probe(scope: dict) -> bool:
    """The image's own healthcheck: its user agent, from the container's loopback (so that no one
    outside can hide requests from the access log by borrowing the agent)."""
    client = scope.get("client")
    if not client or client[0] not in LOOPBACK:
        return False
    for key, value in scope.get("headers", ()):
        if key == b"user-agent":
            return value == PROBE_AGENT
    return False


class RequestMetrics(Batched):
    """Latency histogram and in-flight requests.

    The request count is the histogram's own ``_count``; the exporter publishes it again as
    ``http_requests_total`` (``metrics.with_request_totals``), so no request pays for a second series.
    Under Gunicorn the values go to prometheus_client's multiprocess files; a single process serves
    ``registry``. ``registry=None`` under Gunicorn: the master collects from the files, and an app
    that defines metrics of the same names must not fail to register them.
    """

    def __init__(self, registry=None, worker: int = 0):
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
        self._probes = Histogram(
            "http_healthcheck_duration_seconds",
            "Time to answer the image's own healthcheck requests (not in the http_request_* metrics)",
            ("status",),
            registry=registry,
        )
        lag = Gauge(
            "asgi_worker_event_loop_lag_seconds",
            f"Longest delay of the worker's {FLUSH_INTERVAL * 1000:.0f} ms tick over the last "
            f"{LAG_WINDOW:.0f} to {2 * LAG_WINDOW:.0f} s (a blocked or saturated event loop)",
            ("worker",),
            multiprocess_mode="livemax",  # one live process per slot; dead ones' values are dropped
            registry=registry,
        )
        self._lag = lag.labels(str(worker))
        self._lag_value = self._window_max = self._last_window_max = 0.0
        self._lag.set(0.0)
        self._window_end = 0.0
        self._bounds = list(self._latency._upper_bounds)
        self._children: dict[tuple[str, str, int], object] = {}
        # GET from the start: a fresh worker's gauge exists, at 0, before any request finishes.
        self._in_flight_children: dict[str, object] = {"GET": self._in_flight.labels("GET")}
        self._finished: dict[tuple[str, str, int], list] = {}  # key -> [sum, count per bucket]
        self.in_flight: set[Exchange] = set()  # Observed's: counted at flush time, not per request

    def start(self) -> None:
        """Tick from now on (the worker's event loop is running): the in-flight gauge and the lag are
        written even before the first request finishes."""
        if not self._scheduled:
            self._schedule()

    def _measure_lag(self) -> None:
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return
        if self._due is None:
            return
        lag = max(now - self._due, 0.0)
        if now >= self._window_end:
            self._last_window_max, self._window_max = self._window_max, 0.0
            self._window_end = now + LAG_WINDOW
        self._window_max = max(self._window_max, lag)
        value = max(self._window_max, self._last_window_max)
        if value != self._lag_value:  # it changes a few times per window: few writes
            self._lag_value = value
            self._lag.set(value)

    def probe_finished(self, x: Exchange) -> None:
        """A healthcheck request: counted apart, written at once (one every few seconds)."""
        self._probes.labels(str(x.status)).observe(x.duration)

    def finished(self, x: Exchange) -> None:
        key = (x.method_label, x.route, x.status)
        pending = self._finished.get(key)
        if pending is None:
            pending = self._finished[key] = [0.0, [0] * len(self._bounds)]
        pending[0] += x.duration
        pending[1][bisect.bisect_left(self._bounds, x.duration)] += 1

    def flush(self) -> None:
        self._scheduled = False
        self._measure_lag()
        active = dict.fromkeys(self._in_flight_children, 0)
        for x in self.in_flight:
            active[x.method_label] = active.get(x.method_label, 0) + 1
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

    def __init__(
        self,
        app,
        access_log: AccessLog | None,
        metrics: RequestMetrics | None,
        log_probes: bool = False,
    ):
        self.app = app
        self.access_log = access_log
        self.metrics = metrics
        self.log_probes = log_probes  # ACCESS_LOG_PROBES: the healthcheck's lines in the access log
        # Named by the worker when it times out; counted by the metrics for the in-flight gauge.
        self.in_flight: set[Exchange] = metrics.in_flight if metrics else set()

    async def __call__(self, scope, receive, send):
        metrics = self.metrics
        if scope["type"] != "http":
            if metrics is not None and scope["type"] == "lifespan":
                metrics.start()  # the worker's loop runs: tick before any request comes
            return await self.app(scope, receive, send)
        if metrics is not None and not metrics._scheduled:
            metrics.start()  # no lifespan (LIFESPAN off): the first request starts the tick
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
            if is_probe(scope):
                if metrics:
                    metrics.probe_finished(exchange)
                if self.access_log and self.log_probes:
                    self.access_log.record(exchange)
            else:
                if metrics:
                    metrics.finished(exchange)
                if self.access_log:
                    self.access_log.record(exchange)
