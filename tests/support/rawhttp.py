"""HTTP written and read byte by byte, for what no client library sends: malformed requests, oversized
heads, smuggling attempts, slow clients. Shared by the process and the container fault tests.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """What came back on one connection."""

    responses: list[Response] = field(default_factory=list)
    closed: bool = False  # the server closed the connection (a FIN or a reset)
    reset: bool = False  # ...with a reset
    timed_out: bool = False  # the deadline passed first
    raw: bytes = b""

    @property
    def statuses(self) -> list[int]:
        return [response.status for response in self.responses]

    def __str__(self) -> str:
        how = (
            "timed out" if self.timed_out else "reset" if self.reset else "closed" if self.closed else "open"
        )
        return f"statuses {self.statuses}, connection {how}, {len(self.raw)} bytes: {self.raw[:300]!r}"


def parse_responses(data: bytes) -> list[Response]:
    """The complete responses at the start of ``data`` (bodies framed by Content-Length)."""
    responses, start = [], 0
    while (end := data.find(b"\r\n\r\n", start)) >= 0:
        status_line, *lines = data[start:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise AssertionError(f"a chunked response, which this reader does not frame: {data[:300]!r}")
        body_end = end + 4 + int(headers.get("content-length", "0"))
        if body_end > len(data):
            break
        responses.append(Response(int(status_line.split()[1]), headers, data[end + 4 : body_end]))
        start = body_end
    return responses


def send_raw(port: int, payload: bytes, responses: int = 1, timeout: float = 10, host: str = "127.0.0.1"):
    """Send ``payload`` on a new connection while reading the answer, and return it as an Answer.

    Reading goes on until ``responses`` complete responses have arrived and, if the last of them says
    ``Connection: close``, until the server closes; or until the server closes earlier; or until
    ``timeout``. The connection is never half-closed: Uvicorn answers a client that has stopped
    sending by closing, which would look like a refusal even for a valid request. Sending and reading
    overlap, so that a server answering before it has read a large payload is heard.
    """
    answer = Answer()
    received = bytearray()
    sent = 0
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock, selectors.DefaultSelector() as sel:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while not answer.closed:
            answer.responses = parse_responses(bytes(received))
            last = answer.responses[-1] if answer.responses else None
            if len(answer.responses) >= responses and last.headers.get("connection") != "close":
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                answer.timed_out = True
                break
            for _, events in sel.select(remaining):
                if events & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        answer.closed = answer.reset = True
                        break
                    received += chunk
                    answer.closed = not chunk
                if events & selectors.EVENT_WRITE:
                    try:
                        sent += sock.send(payload[sent : sent + 65536])
                    except (BrokenPipeError, ConnectionResetError):
                        sent = len(payload)  # the server stopped reading: keep listening for its answer
                    if sent == len(payload):
                        sel.modify(sock, selectors.EVENT_READ)
    answer.raw = bytes(received)
    answer.responses = parse_responses(answer.raw)
    return answer


def request(path: str = "/", method: str = "GET", headers: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


@dataclass(frozen=True)
class Case:
    payload: bytes
    statuses: tuple[int, ...]  # of the responses the server sends, in order
    closed: bool  # whether it then closes the connection


REFUSED = (400,)
URI_TOO_LONG = (414,)  # Gunicorn's answers to a head over its limits (RFC 9110, RFC 6585)
FIELDS_TOO_LARGE = (431,)
# Bad input and what the server does with it. Each bad head gets a 4xx and a closed connection: 414 or
# 431 for a head over a limit, 400 for one that does not parse.
BAD_REQUESTS = {
    "malformed request line": Case(b"GARBAGE / NOT-HTTP\r\n\r\n", REFUSED, True),
    "header over limit_request_field_size (9 KB)": Case(
        request("/items/1", headers=f"X-Big: {'a' * 9000}\r\n"), FIELDS_TOO_LARGE, True
    ),
    "one huge header line (1 MB)": Case(
        request("/items/1", headers=f"X-Big: {'a' * 1_000_000}\r\n"), FIELDS_TOO_LARGE, True
    ),
    # Refused while it is still arriving: the head is counted before httptools has a whole field to show.
    "a header line that never ends (1 MB)": Case(
        b"GET /items/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000, FIELDS_TOO_LARGE, True
    ),
    "too many headers (151 fields)": Case(
        request("/items/1", headers="".join(f"X-{i}: v\r\n" for i in range(150))), FIELDS_TOO_LARGE, True
    ),
    "request line over limit_request_line (5 KB)": Case(request("/" + "a" * 5000), URI_TOO_LONG, True),
    "Content-Length and Transfer-Encoding": Case(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        REFUSED,
        True,
    ),
    "broken chunked body": Case(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
        REFUSED,
        True,
    ),
    # The bytes after the announced body are parsed as the next request, in the same read: they get
    # the 400, and the connection closes before the first request is answered.
    "body longer than announced": Case(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcdefghijklmn", REFUSED, True
    ),
    "non-HTTP bytes": Case(bytes(range(256)) * 8, REFUSED, True),
}
# The positive controls, through the same helper: valid requests, some just inside each limit.
GOOD_REQUESTS = {
    "valid GET": Case(request("/items/1"), (200,), False),
    "header inside limit_request_field_size (8 KB)": Case(
        request("/items/1", headers=f"X-Big: {'a' * 8000}\r\n"), (200,), False
    ),
    "100 header fields (the limit)": Case(
        request("/items/1", headers="".join(f"X-{i}: v\r\n" for i in range(99))), (200,), False
    ),
    "request line inside limit_request_line (4 KB)": Case(request("/items/1?q=" + "a" * 4000), (200,), False),
    "POST with a body": Case(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", (200,), False
    ),
    "two pipelined requests": Case(request("/items/1") + request("/items/2"), (200, 200), False),
}


def assert_outcome(port: int, case: Case, name: str = "") -> Answer:
    answer = send_raw(port, case.payload, responses=len(case.statuses))
    expected = f"statuses {list(case.statuses)}, connection {'closed' if case.closed else 'open'}"
    assert (tuple(answer.statuses), answer.closed) == (case.statuses, case.closed), (
        f"{name}: expected {expected}, got {answer}"
    )
    return answer


def normal_latencies_under_slowloris(
    port: int, get: Callable[[], int], connections: int = 200, seconds: float = 6
) -> list[float]:
    """Latencies of ``get`` (a normal request returning its status) while ``connections`` others send
    their heads a byte every 0.1 s."""
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
            assert get() == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.2)
    finally:
        stop.set()
        trickler.join(5)
        for s in slow:
            s.close()
    return latencies
