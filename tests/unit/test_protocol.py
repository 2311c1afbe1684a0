"""asgi_launcher.protocol driven directly, in Uvicorn's own test style: a fake transport and a fake loop
whose tasks and timers run only when a test says so (support/asgifakes.py). Real sockets only for what
only they can show (arrival over time, WebSockets, large transfers): an in-process Uvicorn server on
loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from support.asgifakes import GET, HEAD, FakeLoop, FakeTransport, connect, plain, post, read_body, respond
from support.proc import free_port, wait_for
from uvicorn.config import Config
from uvicorn.server import Server, ServerState

from asgi_launcher import protocol
from asgi_launcher.protocol import CoalescingTransport, LimitedHttpToolsProtocol, with_limits
from asgi_launcher.settings import ConfigError

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def fresh_process_state():
    """The protocol module keeps what the stop paths need per process; each test is its own process."""
    saved = dict(vars(protocol.PROCESS))
    LimitedHttpToolsProtocol.header_timeout = 10
    yield
    for loop in FakeLoop.made:  # request tasks a test had no need to run
        for task in loop.tasks:
            task.coroutine.close()
    FakeLoop.made.clear()
    vars(protocol.PROCESS).clear()
    vars(protocol.PROCESS).update(saved)
    LimitedHttpToolsProtocol.header_timeout = None


# ---- one write per response --------------------------------------------------------------------------


async def test_head_and_body_leave_in_one_write():
    proto, transport, loop = connect(plain(b"Hello, world"))
    proto.data_received(GET)
    await loop.run_task()
    (write,) = transport.writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n")
    assert write.endswith(b"\r\n\r\nHello, world")
    assert not transport.closed


async def test_stock_protocol_writes_twice():
    """The control: the same exchange through Uvicorn's own protocol takes two writes."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    proto, transport, loop = connect(plain(b"Hello, world"), HttpToolsProtocol)
    proto.data_received(GET)
    await loop.run_task()
    assert len(transport.writes) == 2


@pytest.mark.parametrize(
    ("request_bytes", "app", "expected"),
    [
        (HEAD, plain(b"Hello"), b"content-length: 5\r\n\r\n"),
        (GET, plain(b"", status=204, headers=[]), b"HTTP/1.1 204 No Content"),
        (GET, plain(b"", status=304, headers=[]), b"HTTP/1.1 304 Not Modified"),
        (GET, plain(b""), b"content-length: 0\r\n\r\n"),
    ],
    ids=["HEAD", "204", "304", "empty body"],
)
async def test_a_head_without_body_leaves_at_the_end_of_the_response(request_bytes, app, expected):
    proto, transport, loop = connect(app)
    proto.data_received(request_bytes)
    await loop.run_task()
    (write,) = transport.writes
    assert expected in write
    assert write.endswith(b"\r\n\r\n")  # and nothing after the head


async def test_a_head_whose_body_is_late_leaves_at_the_next_loop_iteration():
    """The rule: a head waits for its body at most until the end of the loop iteration it was written
    in (a zero-delay timer; uvloop runs those as call_soon). Server-sent events need their head at once."""
    first_chunk = asyncio.Event()

    async def stream(scope, receive, send):
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await first_chunk.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})

    proto, transport, loop = connect(stream)
    proto.data_received(GET)
    task = asyncio.ensure_future(loop.run_task())
    await asyncio.sleep(0.01)
    assert transport.writes == []  # held within the iteration...
    (_flush,) = loop.pending(delay=0)
    loop.advance(0)  # ...and out at the next one
    (head,) = transport.writes
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert head.endswith(b"transfer-encoding: chunked\r\n\r\n")
    first_chunk.set()
    await task
    assert transport.writes[1:] == [b"9\r\ndata: 1\n\n\r\n", b"9\r\ndata: 2\n\n\r\n0\r\n\r\n"]


async def test_100_continue_is_not_held():
    proto, transport, loop = connect(plain(b"ok"))
    proto.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    task = asyncio.ensure_future(loop.run_task())
    await asyncio.sleep(0.01)  # the app waits in receive() for a body the client holds back
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # out at once
    proto.data_received(b"hi")
    await task
    assert len(transport.writes) == 2
    assert transport.writes[1].endswith(b"\r\n\r\nok")


async def test_pipelined_requests_each_one_write_in_order():
    async def echo_path(scope, receive, send):
        body = scope["path"].encode()
        await plain(body)(scope, receive, send)

    proto, transport, loop = connect(echo_path)
    proto.data_received(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
    for _ in range(3):
        await loop.run_task()
    assert [w.rsplit(b"\r\n\r\n", 1)[1] for w in transport.writes] == [b"/0", b"/1", b"/2"]


async def test_a_large_first_body_chunk_is_not_copied_into_the_head():
    body = b"x" * (1 << 20)
    proto, transport, loop = connect(plain(body))
    proto.data_received(GET)
    await loop.run_task()
    head, sent = transport.writes
    assert head.endswith(b"content-length: 1048576\r\n\r\n")
    assert sent is body  # handed over as is


async def test_streamed_body_after_the_first_chunk_goes_straight_through():
    async def stream(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(4):
            await send({"type": "http.response.body", "body": b"%d" % i, "more_body": i < 3})

    proto, transport, loop = connect(stream)
    proto.data_received(GET)
    await loop.run_task()
    assert len(transport.writes) == 4  # head with chunk 0, then one write per chunk
    assert transport.writes[0].endswith(b"\r\n\r\n1\r\n0\r\n")


async def test_close_sends_a_held_head_first():
    async def fails_after_head(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("boom")

    proto, transport, loop = connect(fails_after_head)
    proto.data_received(GET)
    await loop.run_task()
    assert transport.closed
    assert transport.data.startswith(b"HTTP/1.1 200 OK")  # the client sees a truncated response


def test_write_after_close_is_dropped():
    raw = FakeTransport()
    coalescing = CoalescingTransport(raw, FakeLoop())
    coalescing.close()
    coalescing.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    coalescing.flush()
    assert raw.writes == []


# ---- request-head limits -------------------------------------------------------------------------------


async def test_only_the_head_counts_towards_the_head_limit():
    """Issue 12: with 10 fields of 200 bytes allowed, a valid 7 KB POST was refused as a large head."""
    body = b"b" * 7000
    small = with_limits(4094, 10, 200)

    async def size(scope, receive, send):
        await respond(send, b"%d" % len(await read_body(receive)))

    proto, transport, loop = connect(size, small)
    proto.data_received(post(body) + GET)  # a pipelined request after the body, in the same read
    await loop.run_task()
    await loop.run_task()
    responses = transport.data.split(b"HTTP/1.1 ")[1:]
    assert [r.split(b"\r\n", 1)[0] for r in responses] == [b"200 OK", b"200 OK"]
    assert responses[0].endswith(b"\r\n\r\n7000")


@pytest.mark.parametrize("reads", [1, 7], ids=["one read", "split across reads"])
def test_a_head_over_the_limits_is_refused(reads):
    """One field larger than the whole head may be: refused before httptools has buffered it all."""
    small = with_limits(4094, 10, 200)  # a head budget of 6,120 bytes
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 7000
    proto, transport, loop = connect(plain(), small)
    step = len(head) // reads + 1
    for start in range(0, len(head), step):
        proto.data_received(head[start : start + step])
    assert transport.data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert b"Request header fields too large." in transport.data
    assert transport.closed
    assert loop.tasks == []  # never reached the app


def test_a_refused_head_is_answered_then_the_rest_read_and_dropped():
    class HalfClosable(FakeTransport):
        eof_written = False

        def can_write_eof(self) -> bool:
            return True

        def write_eof(self) -> None:
            self.eof_written = True

    small = with_limits(4094, 10, 200)
    proto, _, loop = connect(plain(), small)
    transport = HalfClosable()
    proto.connection_made(transport)
    proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 7000)
    assert transport.data.startswith(b"HTTP/1.1 431 ")
    assert transport.eof_written
    assert not transport.closed  # still reading: closing with unread data would reset the connection
    proto.data_received(b"v" * 100_000)
    assert transport.data.count(b"HTTP/1.1") == 1
    loop.advance(proto.linger)
    assert transport.closed


def test_a_head_just_under_the_budget_split_across_reads_is_served():
    small = with_limits(4094, 10, 200)
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 190) for i in range(9)) + b"\r\n"
    proto, transport, loop = connect(plain(), small)
    for i in range(0, len(head), 100):
        proto.data_received(head[i : i + 100])
    assert not transport.closed
    assert len(loop.tasks) == 1


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414 URI Too Long"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            b"431 Request Header Fields Too Large",
        ),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
            b"431 Request Header Fields Too Large",
        ),
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", b"400 Bad Request"),  # garbage: still a 400
    ],
    ids=["request line", "field size", "field count", "garbage"],
)
def test_each_gunicorn_limit_answers_gunicorns_status(head, status):
    """RFC 9110's 414 for the request line, RFC 6585's 431 for the fields, as Gunicorn answers."""
    proto, transport, loop = connect(plain())
    proto.data_received(head)
    assert transport.data.startswith(b"HTTP/1.1 " + status + b"\r\n")
    assert loop.tasks == []


def test_an_oversized_websocket_upgrade_is_refused_with_431():
    proto, transport, loop = connect(plain())
    cookie = b"Cookie: " + b"c" * 9000 + b"\r\n"
    proto.data_received(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n" + cookie + b"\r\n"
    )
    assert transport.data.startswith(b"HTTP/1.1 431 ")
    assert loop.tasks == []


# ---- head timeout ------------------------------------------------------------------------------------


@pytest.fixture
def head_timeouts():
    counter = Counter("http_request_head_timeouts", "test", registry=CollectorRegistry())
    protocol.PROCESS.head_timeouts = counter
    return lambda: counter._value.get()


def test_a_connection_that_sends_nothing_is_closed_silently(head_timeouts):
    _proto, transport, loop = connect(plain())
    loop.advance(9)
    assert not transport.closed
    loop.advance(10)
    assert transport.closed
    assert transport.writes == []
    assert head_timeouts() == 1


def test_a_partial_head_gets_408(head_timeouts):
    proto, transport, loop = connect(plain())
    proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: zz")
    loop.advance(10)
    assert transport.data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in transport.data
    assert transport.closed
    assert head_timeouts() == 1


async def test_a_complete_head_stops_the_clock(head_timeouts):
    proto, transport, loop = connect(plain())
    proto.data_received(GET)
    assert loop.pending(delay=10) == []
    await loop.run_task()
    loop.advance(10)  # the keep-alive timeout closes it meanwhile: not a head timeout
    assert b"408" not in transport.data
    assert head_timeouts() == 0


async def test_a_kept_alive_connection_gets_the_timeout_from_its_next_heads_first_byte(head_timeouts):
    proto, transport, loop = connect(plain())
    proto.data_received(GET)
    await loop.run_task()
    proto.data_received(GET)  # a whole head in one read: no timer at all
    await loop.run_task()
    assert loop.pending(delay=10) == []
    proto.data_received(b"GET / HT")
    assert len(loop.pending(delay=10)) == 1
    loop.advance(10)
    assert transport.writes[-1].startswith(b"HTTP/1.1 408")
    assert head_timeouts() == 1


async def test_a_response_under_way_is_not_cut_by_a_pipelined_partial_head(head_timeouts):
    release = asyncio.Event()

    async def slow(scope, receive, send):
        await release.wait()
        await plain()(scope, receive, send)

    proto, transport, loop = connect(slow)
    proto.data_received(GET + b"GET / HT")
    task = asyncio.ensure_future(loop.run_task())
    await asyncio.sleep(0.01)
    loop.advance(10)
    assert not transport.closed
    release.set()
    await task
    assert transport.data.startswith(b"HTTP/1.1 200 OK")
    assert head_timeouts() == 0


def test_header_timeout_zero_disables_it():
    off = with_limits(4094, 100, 8190, header_timeout=0)
    proto, _transport, loop = connect(plain(), off)
    proto.data_received(b"GET / HT")
    assert loop.pending() == []


@pytest.mark.parametrize(("value", "expected"), [(None, 10), ("", 10), ("0", 0), ("25", 25)])
def test_header_timeout_setting(value, expected):
    env = {} if value is None else {"HEADER_TIMEOUT": value}
    assert protocol.read_header_timeout(env) == expected


@pytest.mark.parametrize("value", ["-1", "1.5", "ten"])
def test_header_timeout_setting_refused(value):
    with pytest.raises(
        ConfigError, match=rf"^HEADER_TIMEOUT='{value}' is not valid: expected a whole number >= 0$"
    ):
        protocol.read_header_timeout({"HEADER_TIMEOUT": value})


# ---- MAX_REQUESTS, drain, stops ------------------------------------------------------------------------


async def test_past_the_request_limit_every_response_closes_its_connection():
    connections = []
    state = ServerState()
    cfg = Config(app=plain(), limit_max_requests=3, log_config=None)
    loop = FakeLoop()
    for _ in range(2):
        proto = LimitedHttpToolsProtocol(config=cfg, server_state=state, app_state={}, _loop=loop)
        proto.connection_made(FakeTransport())
        connections.append(proto)
    a, b = connections
    a.data_received(GET)
    await loop.run_task()
    b.data_received(GET)
    await loop.run_task()
    assert not a.transport.is_closing()
    assert not b.transport.is_closing()
    a.data_received(GET)  # the third: the limit
    await loop.run_task()
    assert a.transport.is_closing()
    assert b"connection: close" in a.transport.transport.writes[-1]
    b.data_received(GET)  # past it: served, and closed too
    await loop.run_task()
    assert b.transport.is_closing()
    assert b.transport.transport.writes[-1].endswith(b"Hello")


async def test_a_retired_worker_closes_its_listeners_and_answers_each_connection_once_more():
    """Past MAX_WORKER_MEMORY (asgi_launcher.recycling.OwnMemoryCheck): no new connection, and an open
    one gets its next answer with Connection: close. The control: the same connection before."""
    closed = []
    protocol.PROCESS.stop_accepting = lambda: closed.append("listeners")
    proto, transport, loop = connect(plain())
    proto.data_received(GET)
    await loop.run_task()
    assert not transport.closed
    assert b"connection: close" not in transport.writes[-1]
    protocol.retire()
    protocol.retire()  # the listeners close once
    assert closed == ["listeners"]
    proto.data_received(GET)
    await loop.run_task()
    assert b"connection: close" in transport.writes[-1]
    assert transport.writes[-1].endswith(b"Hello")  # served in full
    assert proto.transport.is_closing()


async def test_the_memory_check_runs_after_each_response():
    calls = []
    protocol.PROCESS.after_response = lambda: calls.append(1)
    proto, _transport, loop = connect(plain())
    for _ in range(3):
        proto.data_received(GET)
        await loop.run_task()
    assert calls == [1, 1, 1]


async def test_drain_serves_a_request_arriving_on_an_idle_connection_then_closes():
    proto, transport, loop = connect(plain())
    proto.data_received(GET)
    await loop.run_task()
    proto.shutdown()
    assert not transport.closed  # Uvicorn closes it here; a request may be on its way
    proto.data_received(GET)
    await loop.run_task()
    assert b"connection: close" in transport.writes[-1]
    assert transport.closed


def test_drain_closes_an_idle_connection_after_its_grace():
    proto, transport, loop = connect(plain())
    proto.shutdown()
    loop.advance(proto.drain_grace)
    assert transport.closed
    assert transport.writes == []


async def test_requests_unfinished_when_graceful_timeout_runs_out_are_closed_and_counted(caplog):
    never = asyncio.Event()

    async def forever(scope, receive, send):
        await never.wait()

    proto, transport, loop = connect(forever, timeout_graceful_shutdown=5)
    proto.data_received(b"GET /slow?seconds=8 HTTP/1.1\r\nHost: x\r\n\r\n")
    (task,) = loop.tasks
    proto.shutdown()
    (_deadline,) = loop.pending(delay=4)  # the graceful timeout less a margin to exit in
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    loop.advance(4)
    assert transport.closed
    assert transport.writes == []
    assert task.cancelled
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.endswith(
        "stopping: GRACEFUL_TIMEOUT=5s ran out: closing 1 connection(s) with a request unfinished: "
        "GET /slow?seconds=8"
    )


async def test_an_abandoned_request_is_not_answered_500_when_its_task_is_cancelled(caplog):
    started = asyncio.Event()

    async def forever(scope, receive, send):
        started.set()
        await asyncio.Event().wait()

    proto, transport, loop = connect(forever)
    proto.data_received(GET)
    task = asyncio.ensure_future(loop.run_task())
    await started.wait()
    assert protocol.abandon("quick stop", cancel_tasks=False) == 1
    task.cancel()  # what asyncio.run does to what is left
    await asyncio.gather(task, return_exceptions=True)
    assert transport.closed
    assert b"500" not in transport.data
    assert "Exception in ASGI application" not in caplog.text  # one line, not a traceback each


def test_nothing_to_abandon_logs_nothing(caplog):
    connect(plain())
    assert protocol.abandon("quick stop", cancel_tasks=False) == 0
    assert caplog.records == []


# ---- real sockets: what only they can show ---------------------------------------------------------------


@contextlib.contextmanager
def serving(app, **config):
    port = free_port()
    server = Server(
        Config(app=app, port=port, http=LimitedHttpToolsProtocol, lifespan="off", log_config=None, **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the server to start")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def read_until(sock: socket.socket, marker: bytes, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


async def events(scope, receive, send):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    for i in range(3):
        await asyncio.sleep(0.4)
        await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_server_sent_events_arrive_one_by_one():
    with serving(events) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        arrivals = {}
        data = b""
        for marker in (b"\r\n\r\n", b"data: 0", b"data: 1", b"data: 2"):
            data += read_until(sock, marker) if marker not in data else b""
            arrivals[marker] = time.monotonic() - started
    assert arrivals[b"\r\n\r\n"] < 0.3  # the head did not wait for the first event (0.4 s later)
    assert arrivals[b"data: 0"] >= 0.35
    assert arrivals[b"data: 1"] - arrivals[b"data: 0"] > 0.2  # not batched
    assert arrivals[b"data: 2"] - arrivals[b"data: 1"] > 0.2


def test_pipelined_requests_over_a_socket():
    async def echo_path(scope, receive, send):
        await plain(scope["path"].encode())(scope, receive, send)

    with serving(echo_path) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
        data = read_until(sock, b"/r4")
    assert [part.rsplit(b"\r\n\r\n", 1)[1][:3] for part in data.split(b"HTTP/1.1 200 OK")[1:]] == [
        b"/r0",
        b"/r1",
        b"/r2",
        b"/r3",
        b"/r4",
    ]


def test_large_bodies_both_ways():
    big = bytes(range(256)) * 20_000  # 5 MB

    async def app(scope, receive, send):
        received = await read_body(receive)
        await respond(send, big if scope["method"] == "GET" else json.dumps({"size": len(received)}).encode())

    with serving(app) as port:
        url = f"http://127.0.0.1:{port}/"
        assert httpx.get(url, timeout=10).content == big
        assert httpx.post(url, content=big, timeout=10).json() == {"size": len(big)}


def test_websocket_through_the_protocol():
    from websockets.sync.client import connect as ws_connect

    async def echo(scope, receive, send):
        if scope["type"] == "http":
            return await plain(b"plain")(scope, receive, send)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"].upper()})

    with serving(echo) as port:
        with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            for word in ("one", "two", "three"):
                ws.send(word)
                assert ws.recv(timeout=5) == word.upper()
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "plain"


@pytest.fixture
def anyio_backend():
    return "asyncio"
