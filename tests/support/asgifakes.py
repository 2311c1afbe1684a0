"""A fake transport and a fake loop whose tasks and timers run only when a test says so, to drive a
protocol directly in Uvicorn's own test style; and the smallest ASGI apps and requests to drive it with."""

from __future__ import annotations

from typing import ClassVar

from uvicorn.config import Config
from uvicorn.lifespan.off import LifespanOff
from uvicorn.server import ServerState

from asgi_launcher.protocol import LimitedHttpToolsProtocol


class FakeTransport:
    """Records every write separately: how many writes a response took is part of what we test."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol


class FakeTimer:
    def __init__(self, loop: FakeLoop, delay: float, callback, args):
        self.loop, self.delay, self.callback, self.args = loop, delay, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTask:
    def __init__(self, coroutine):
        self.coroutine = coroutine
        self.cancelled = False
        self.callbacks = []

    def add_done_callback(self, callback) -> None:
        self.callbacks.append(callback)

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Tasks and timers wait until the test runs them: ``run_task`` and ``advance``."""

    made: ClassVar[list[FakeLoop]] = []

    def __init__(self):
        self.tasks: list[FakeTask] = []
        self.timers: list[FakeTimer] = []
        FakeLoop.made.append(self)

    def create_task(self, coroutine, **kwargs) -> FakeTask:
        task = FakeTask(coroutine)
        self.tasks.append(task)
        return task

    def call_later(self, delay: float, callback, *args) -> FakeTimer:
        timer = FakeTimer(self, delay, callback, args)
        self.timers.append(timer)
        return timer

    async def run_task(self):
        """Run the oldest request task to its end (its awaits are real)."""
        task = self.tasks.pop(0)
        try:
            return await task.coroutine
        finally:
            for callback in task.callbacks:
                callback(task)

    def pending(self, delay: float | None = None) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled and (delay is None or t.delay == delay)]

    def advance(self, seconds: float) -> None:
        """Fire the timers due within ``seconds`` (the loop's clock is not modelled beyond that)."""
        due = [t for t in self.timers if not t.cancelled and t.delay <= seconds]
        self.timers = [t for t in self.timers if t not in due]
        for timer in due:
            timer.callback(*timer.args)


def connect(app, protocol_class=LimitedHttpToolsProtocol, **config):
    config.setdefault("log_config", None)
    cfg = Config(app=app, **config)
    loop = FakeLoop()
    proto = protocol_class(
        config=cfg, server_state=ServerState(), app_state=LifespanOff(cfg).state, _loop=loop
    )
    transport = FakeTransport()
    proto.connection_made(transport)
    return proto, transport, loop


async def respond(send, body: bytes, status: int = 200, headers=None) -> None:
    head = [(b"content-length", str(len(body)).encode())] if headers is None else headers
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def plain(body: bytes = b"Hello", status: int = 200, headers=None):
    async def app(scope, receive, send):
        await read_body(receive)
        await respond(send, body, status, headers)

    return app


GET = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: example.org\r\n\r\n"


def post(body: bytes, path: bytes = b"/", extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (path, len(body), extra, body)
