"""Uvicorn's httptools protocol with request-head limits and a drain on shutdown.

Limits: httptools has none, so a 1 MB header line or 10,000 header fields were read into memory and
served. These are Gunicorn's settings (``limit_request_line``, ``limit_request_fields``,
``limit_request_field_size``, settable through GUNICORN_CMD_ARGS); a request over them gets a 400 and
its connection is closed.

Coalescing: Uvicorn writes a response's head and its body separately, and uvloop sends each at once:
two system calls and two TCP segments per response, and a client woken twice. Writes made in one
event-loop step now leave together.

Drain: when a worker stops gracefully (SIGTERM, SIGHUP reload, MAX_REQUESTS recycling), Uvicorn closed
idle keep-alive connections at once, so a request the client was sending at that moment met a reset.
Here such a connection gets ``drain_grace`` seconds: a request arriving meanwhile is served with
``Connection: close``, and the client reconnects to a live worker.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes of one event-loop step go out in one ``write`` at the step's end."""

    flush_at = 1 << 16  # bytes: a body streamed in one step must not pile up in memory

    def __init__(self, transport, loop):
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name):
        return getattr(self.transport, name)


class RequestTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parser error, answered with a 400."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limit_request_line = 4094  # Gunicorn's defaults; 0 means no limit, as in Gunicorn
    limit_request_fields = 100
    limit_request_field_size = 8190
    drain_grace = 0.3  # long enough for a busy client's next request, short enough for a quick stop
    _draining = False

    def connection_made(self, transport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._head_bytes = 0
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        # A single huge field arrives in many reads before httptools calls on_header: count the bytes.
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_budget() and self._head_bytes > self._head_budget():
                self.logger.warning("Request head larger than %d bytes: refused", self._head_budget())
                self.send_400_response("Request header fields too large.")
                return
        super().data_received(data)

    def _head_budget(self) -> int:
        if not (self.limit_request_line and self.limit_request_fields and self.limit_request_field_size):
            return 0
        return (
            self.limit_request_line + 4 + self.limit_request_fields * (self.limit_request_field_size + 2) + 2
        )

    def handle_websocket_upgrade(self) -> None:
        self.transport.flush()  # the WebSocket protocol writes to the socket's own transport
        self.transport = self.transport.transport
        super().handle_websocket_upgrade()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if self.limit_request_line and len(self.url) > self.limit_request_line:
            raise RequestTooLarge(f"request line longer than {self.limit_request_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.limit_request_field_size and len(name) + len(value) + 2 > self.limit_request_field_size:
            raise RequestTooLarge(f"header field larger than {self.limit_request_field_size} bytes")
        if self.limit_request_fields and len(self.headers) >= self.limit_request_fields:
            raise RequestTooLarge(f"more than {self.limit_request_fields} header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            return super().shutdown()  # busy: Uvicorn closes it after this response
        self._draining = True
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(self.drain_grace, self.timeout_keep_alive_handler)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0


def with_limits(line: int, fields: int, field_size: int) -> type[LimitedHttpToolsProtocol]:
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limit_request_line": line, "limit_request_fields": fields, "limit_request_field_size": field_size},
    )


def has_httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True
