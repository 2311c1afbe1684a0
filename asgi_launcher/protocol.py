"""Uvicorn's httptools protocol with request-head limits, a head timeout, one write per response,
a drain on graceful stops, and stops that close unfinished requests rather than answer them 500.

Limits: httptools has none, so a 1 MB header line or 10,000 header fields were read into memory and
served. These are Gunicorn's settings (``limit_request_line``, ``limit_request_fields``,
``limit_request_field_size``, settable through GUNICORN_CMD_ARGS); a request over them is answered as
Gunicorn answers it, 414 for the request line and 431 for a header field too large or too many of
them (400 stays for a head that does not parse), and its connection is closed. Only the head is
counted: a body is not.

Head timeout (HEADER_TIMEOUT): Uvicorn waits for a request head forever, so slow clients sending a
byte now and then each keep a connection. A head must arrive within this many seconds of the
connection being accepted, or of its first byte on a kept-alive connection; else the connection is
closed (with a 408 if part of a head came) and ``http_request_head_timeouts_total`` counts it.

One write per response: Uvicorn writes a response's head and its body separately, and uvloop sends
each at once: two system calls and two TCP segments per response, and a client woken twice. Here the
head waits for the first body write (or the response's end) and both leave in one write; later body
writes go straight out. A head never waits longer than the end of the event-loop iteration in which
it was written, so a response whose body comes later (server-sent events, a slow stream) shows its
head at once.

Drain: when a worker stops gracefully (SIGTERM, SIGHUP reload, MAX_REQUESTS recycling), Uvicorn closed
idle keep-alive connections at once, so a request the client was sending at that moment met a reset.
Here such a connection gets ``drain_grace`` seconds: a request arriving meanwhile is served with
``Connection: close``, and the client reconnects to a live worker.

MAX_REQUESTS: Uvicorn checks the count every 0.1 s, and meanwhile accepted connections and kept them
alive, so a busy worker served far past its limit. Here, when the requests served and in flight reach
the limit, the worker stops accepting connections at once and every response closes its connection:
past the limit, each connection it still holds carries at most one request.

Stops: requests still running when GRACEFUL_TIMEOUT runs out, or at a quick stop, have their
connections closed (the client sees the connection end, never an invented 500 for work that may have
been done), and one line says how many there were and what they were.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter

from asgi_launcher.settings import SETTINGS, ConfigError, read

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools missing: has_httptools() is False and Uvicorn's h11 protocol is used
    HttpToolsProtocol = asyncio.Protocol  # type: ignore[assignment,misc]

# nginx's client_header_timeout is 60 s; most servers use less. The registry holds the default.
HEADER_TIMEOUT_DEFAULT = SETTINGS["HEADER_TIMEOUT"].default
logger = logging.getLogger("uvicorn.error")


def read_header_timeout(env) -> int:
    """HEADER_TIMEOUT from the environment; ConfigError with the operator's one line when it is bad."""
    return read(env, "HEADER_TIMEOUT")


class CoalescingTransport:
    """Holds a response's head until its first body write, and sends both in one ``write``.

    The protocol sets ``expect_head`` when a response may begin; the next write (other than an
    interim ``100 Continue``) is that response's head.
    """

    join_below = 1 << 16  # bytes: a larger first body chunk is not copied just to save a system call

    def __init__(self, transport, loop):
        self.transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self.expect_head = True

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if self.transport.is_closing():
                return
            if len(data) < self.join_below:
                self.transport.write(head + data)
                return
            self.transport.write(head)
        elif self.expect_head and not data.startswith(b"HTTP/1.1 1"):
            self.expect_head = False
            self._head = data
            # A body coming later must not keep the head: it leaves at the latest on the loop's next
            # iteration (uvloop runs a zero delay as call_soon).
            self._loop.call_later(0, self.flush)
            return
        if not self.transport.is_closing():
            self.transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self.transport.is_closing():
                self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def drop(self) -> None:
        """Close without sending a held head: the response it starts will not be finished."""
        self._head = None
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    # The calls Uvicorn makes on every request, without __getattr__'s detour.
    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def __getattr__(self, name):
        return getattr(self.transport, name)


class RequestTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parser error, which Uvicorn answers
    through ``send_400_response``; the protocol answers the status set with it instead."""


URI_TOO_LONG = (b"HTTP/1.1 414 URI Too Long\r\n", "Request line too long.")
FIELDS_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n", "Request header fields too large.")


class _Process:
    """What the stop paths and the watchdogs see of this process's server (one per process)."""

    server_state = None  # Uvicorn's ServerState: its connections and request tasks
    stopping = None  # the ServerState whose graceful stop has begun
    head_timeouts = None  # a prometheus_client counter, when metrics are on
    request_limit: int | None = None  # the server's MAX_REQUESTS with its jitter, when the worker knows it
    stop_accepting = None  # closes the server's listening sockets, when the worker can
    quiet = False  # request tasks cancelled at a stop are not logged one traceback each
    after_response = None  # called after each response: the worker's own memory check, when it has one
    retired = False  # past MAX_WORKER_MEMORY: no new connection, no further request on an open one


PROCESS = _Process()


def _stop_accepting() -> None:
    if PROCESS.stop_accepting is not None:
        PROCESS.stop_accepting()
        PROCESS.stop_accepting = None


def retire() -> None:
    """This worker takes no more work (it passed MAX_WORKER_MEMORY): its listeners close, and each open
    connection is answered once more at most, with Connection: close. What it serves, it finishes; the
    master replaces it, one worker at a time, and new connections go to the other workers meanwhile."""
    PROCESS.retired = True
    PROCESS.after_response = None
    _stop_accepting()


def count_head_timeouts(registry=None) -> None:
    """Count head timeouts in ``http_request_head_timeouts_total`` (metrics on). ``registry=None``
    under Gunicorn: the value goes to the multiprocess files, which the master collects."""
    from prometheus_client import Counter as PromCounter

    PROCESS.head_timeouts = PromCounter(
        "http_request_head_timeouts",
        "Connections closed because a request head did not arrive within HEADER_TIMEOUT",
        registry=registry,
    )


def request_line(scope) -> str:
    query = scope.get("query_string") or b""
    path = scope.get("path", "?") + ("?" + query.decode("ascii", "replace") if query else "")
    return f"{scope.get('method', '?')} {path}"


def in_flight() -> list:
    """The connections whose current request is still being answered."""
    state = PROCESS.server_state
    try:
        connections = list(state.connections) if state is not None else []
    except RuntimeError:  # read from another thread while the loop changed the set
        return []
    return [c for c in connections if getattr(c, "cycle", None) and not c.cycle.response_complete]


def describe(connections) -> str:
    lines = Counter(request_line(c.cycle.scope) for c in connections)
    return ", ".join(f"{line} (x{n})" if n > 1 else line for line, n in sorted(lines.items()))


class _QuietCancellations(logging.Filter):
    """At a stop that cancels tasks, Uvicorn logs a traceback for every request task cancelled, and
    Starlette's lifespan, cancelled too, reports ``lifespan.shutdown.failed`` with the traceback as its
    message text (no ``exc_info``), which Uvicorn logs as an error. We log one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            return False
        text = record.getMessage().rstrip()
        return not (text.startswith("Traceback (most recent call last)") and text.endswith("CancelledError"))


def quiet_cancellations() -> None:
    """From now on in this process, a cancellation is not logged as an error (once installed)."""
    if not PROCESS.quiet:
        PROCESS.quiet = True
        logger.addFilter(_QuietCancellations())


def abandon(reason: str, cancel_tasks: bool) -> int:
    """Close the connections of unfinished requests, log one line, and optionally cancel their tasks."""
    unfinished = in_flight()
    if not unfinished:
        return 0
    quiet_cancellations()
    logger.warning(
        "Worker (pid:%s) %s: closing %d connection(s) with a request unfinished: %s",
        os.getpid(),
        reason,
        len(unfinished),
        describe(unfinished),
    )
    for connection in unfinished:
        transport = connection.transport
        (transport.drop if isinstance(transport, CoalescingTransport) else transport.close)()
    if cancel_tasks:
        for task in list(PROCESS.server_state.tasks):
            task.cancel()
    return len(unfinished)


def _graceful_timeout_ran_out(timeout) -> None:
    abandon(f"stopping: GRACEFUL_TIMEOUT={timeout}s ran out", cancel_tasks=True)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limit_request_line = 4094  # Gunicorn's defaults; 0 means no limit, as in Gunicorn
    limit_request_fields = 100
    limit_request_field_size = 8190
    header_timeout: int | None = None  # None: HEADER_TIMEOUT from the environment, read once
    drain_grace = 0.3  # long enough for a busy client's next request, short enough for a quick stop
    linger = 2.0  # seconds a refused request's remaining bytes are read and dropped
    _draining = False
    _lingering = False
    _upgraded = False
    _head_timer: asyncio.TimerHandle | None = None
    _refusal: tuple[bytes, str] | None = None  # the answer to a head over a limit, instead of a 400

    def connection_made(self, transport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))
        PROCESS.server_state = self.server_state
        self._head_bytes = 0
        self._in_head = True
        timeout = self._header_timeout()
        if timeout:
            self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    @classmethod
    def _header_timeout(cls) -> int:
        if cls.header_timeout is None:
            try:
                cls.header_timeout = read_header_timeout(os.environ)
            except ConfigError as error:  # checked at start; a protocol used on its own keeps the default
                logger.error("%s; using %ss", error, HEADER_TIMEOUT_DEFAULT)
                cls.header_timeout = HEADER_TIMEOUT_DEFAULT
        return cls.header_timeout

    @property
    def head_budget(self) -> int:
        """The largest head the three limits allow; 0 when one of them is off."""
        if not (self.limit_request_line and self.limit_request_fields and self.limit_request_field_size):
            return 0
        return (
            self.limit_request_line + 4 + self.limit_request_fields * (self.limit_request_field_size + 2) + 2
        )

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused request: read and dropped
        if not self._in_head:
            super().data_received(data)
            return
        # A single huge field arrives in many reads before httptools calls on_header: count the head's
        # bytes, and feed no more than the budget allows until the head is complete.
        budget = self.head_budget
        room = budget - self._head_bytes
        if budget and len(data) > room:
            self._head_bytes = budget
            super().data_received(data[:room])
            if self._in_head and self._head_bytes == budget:  # still in the same head: too large
                if not self.transport.is_closing() and not self._lingering:
                    self.logger.warning("Request head larger than %d bytes: refused", budget)
                    self._refuse_and_linger(*FIELDS_TOO_LARGE)
                return
            if self.transport.is_closing() or self._upgraded or self._lingering:
                return
            self.data_received(data[room:])  # the body, or the next pipelined request
            return
        self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_timer is None and self._idle() and self._header_timeout():
            # A head begun on a kept-alive connection: it gets HEADER_TIMEOUT from now.
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _head_timed_out(self) -> None:
        self._head_timer = None
        # A response under way (pipelining) is not cut: Uvicorn's keep-alive timeout follows it.
        if not self._in_head or self._lingering or self.transport.is_closing() or not self._idle():
            return
        if PROCESS.head_timeouts is not None:
            PROCESS.head_timeouts.inc()
        if self._head_bytes:
            self.logger.debug("Request head not received within %ss: 408", self.header_timeout)
            self._send_and_close(b"HTTP/1.1 408 Request Timeout\r\n", "Request head timed out.")
        else:
            self.transport.close()  # nothing came at all: as an idle keep-alive connection

    def _send_and_close(self, status_line: bytes, message: str) -> None:
        self._send(status_line, message)
        self.transport.close()

    def _send(self, status_line: bytes, message: str) -> None:
        content = [status_line]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        body = message.encode("ascii")
        content.append(
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body)
        )
        content.append(body)
        self.transport.write(b"".join(content))

    def _refuse_and_linger(self, status_line: bytes, message: str) -> None:
        """Answer, then keep reading (and dropping) what the client is still sending, until it stops or
        ``linger`` seconds pass. Closing with unread data would send a reset, which can reach the client
        before it has read the answer."""
        self._cancel_head_timer()
        self._send(status_line, message)
        can_write_eof = getattr(self.transport, "can_write_eof", None)
        if can_write_eof is None or not can_write_eof():
            self.transport.close()
            return
        self._lingering = True
        self.transport.write_eof()  # the answer, then FIN; eof_received closes once the client is done
        self.loop.call_later(self.linger, self._stop_lingering)

    def _stop_lingering(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        self._cancel_head_timer()
        self.transport.flush()
        self.transport.expect_head = False  # WebSocket frames go straight through
        super().handle_websocket_upgrade()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if self.limit_request_line and len(self.url) > self.limit_request_line:
            self._refusal = URI_TOO_LONG
            raise RequestTooLarge(f"request line longer than {self.limit_request_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.limit_request_field_size and len(name) + len(value) + 2 > self.limit_request_field_size:
            self._refusal = FIELDS_TOO_LARGE
            raise RequestTooLarge(f"header field larger than {self.limit_request_field_size} bytes")
        if self.limit_request_fields and len(self.headers) >= self.limit_request_fields:
            self._refusal = FIELDS_TOO_LARGE
            raise RequestTooLarge(f"more than {self.limit_request_fields} header fields")
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        """Uvicorn's answer to a head httptools could not parse: ours when a limit stopped it."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        refusal, self._refusal = self._refusal, None
        self._refuse_and_linger(*refusal)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        if self.cycle is not None and (self._draining or PROCESS.retired or self._past_request_limit()):
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def _past_request_limit(self) -> bool:
        limit = PROCESS.request_limit or self.config.limit_max_requests
        if limit is None or self.server_state.total_requests + len(self.tasks) < limit:
            return False
        # Uvicorn stops at its next check (every 0.1 s); until then no new connection is accepted, and
        # no open one is kept for another request.
        _stop_accepting()
        return True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        self.transport.flush()  # a head without body writes (HEAD, 204, 304) is complete now
        self.transport.expect_head = not self._upgraded
        super().on_response_complete()
        if PROCESS.after_response is not None:
            PROCESS.after_response()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._start_graceful_deadline()
        if not self._idle():
            return super().shutdown()  # busy: Uvicorn closes it after this response
        self._draining = True
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(self.drain_grace, self.timeout_keep_alive_handler)

    def _start_graceful_deadline(self) -> None:
        """Uvicorn calls shutdown() on every connection when a graceful stop begins: from then on,
        requests get the graceful timeout, less a margin in which the worker exits before its master
        kills it."""
        timeout = self.config.timeout_graceful_shutdown
        if timeout is None or PROCESS.stopping is self.server_state:
            return
        PROCESS.stopping = self.server_state
        self.loop.call_later(max(timeout - 1, timeout * 0.8), _graceful_timeout_ran_out, timeout)


def with_limits(
    line: int, fields: int, field_size: int, header_timeout: int | None = None
) -> type[LimitedHttpToolsProtocol]:
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "limit_request_line": line,
            "limit_request_fields": fields,
            "limit_request_field_size": field_size,
            "header_timeout": header_timeout,
        },
    )


def has_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True
