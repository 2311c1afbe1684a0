"""An evaluation, not part of the image: granian's Rust HTTP engine in a Gunicorn worker.

    PYTHONPATH=benchmarks gunicorn -k granian_worker.GranianWorker -w 2 app.main:app
    (benchmarks/run.py --servers granian-worker,...)

Gunicorn owns the sockets, the processes, the heartbeat and TIMEOUT, MAX_REQUESTS and the signals;
granian parses HTTP and drives the ASGI app on this process's asyncio loop, as granian.server.embed
does, but on the socket the arbiter shares (embed binds its own and takes no descriptor). Nothing of
it is public API (granian 2.8.7):

- granian._granian.ASGIWorker, SocketHolder, WorkerSignal: the Rust extension (its .pyi stub is
  stale for ASGIWorker: it lacks the ipc and metrics arguments);
- granian._futures._future_watcher_wrapper, _new_cbscheduler: private helpers of the embed server;
- granian.asgi.LifespanProtocol, and the (scope, proto) callback contract.

benchmarks/README.md says why it was not kept (slower than our worker at every level measured, the
request-head limits lost, an exit that has to skip Python's to avoid a Rust panic).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time

from granian._futures import _future_watcher_wrapper, _new_cbscheduler
from granian._granian import ASGIWorker, SocketHolder, WorkerSignal
from granian.asgi import LifespanProtocol
from granian.http import HTTP1Settings
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker


def _settle(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _closing(send):
    async def closing_send(message):
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing_send


class GranianWorker(Worker):
    in_flight = 0
    handled = 0

    # Gunicorn's TERM/QUIT/INT handlers are replaced by loop handlers in run(); the rest (USR1, WINCH,
    # ABRT) stay Gunicorn's.
    def run(self) -> None:
        asyncio.run(self._main())
        # granian's callback (which settled our future) runs in a Rust thread that still has to drop the
        # GIL and end; Python's exit racing it aborts the process ("panic in a function that cannot
        # unwind", seen 2 times in ~10 stops). Wait for native (non-Python) threads to end, bounded.
        deadline = time.monotonic() + 2
        while len(os.listdir("/proc/self/task")) > threading.active_count() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.log.info("Worker exiting (pid: %s, handled %d requests)", self.pid, self.handled)

    def _runner(self, state: dict):
        app = self.wsgi

        async def runner(
            scope, proto
        ):  # granian's (scope, proto) contract, as granian.asgi._callback_wrapper
            scope.update(root_path="", state=state.copy())
            send = proto.send
            if scope["type"] == "http":
                self.handled += 1
                if self.handled >= self.max_requests and self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self._graceful()  # granian's stop reaches the connection asynchronously: also say
                    send = _closing(send)  # Connection: close on this response (hyper honours it)
            self.in_flight += 1
            try:
                return await app(scope, proto.receive, send)
            finally:
                self.in_flight -= 1

        return runner

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        for sig in (signal.SIGTERM,):
            loop.add_signal_handler(sig, self._graceful)
        for sig in (signal.SIGQUIT, signal.SIGINT):
            loop.add_signal_handler(sig, self._quick)

        lifespan = LifespanProtocol(self.wsgi)
        await lifespan.startup()
        if lifespan.interrupt:
            self.log.error("ASGI lifespan startup failed", exc_info=lifespan.exc)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

        callback = _future_watcher_wrapper(self._runner(lifespan.state))
        h1 = HTTP1Settings(header_read_timeout=int(os.environ.get("HEADER_TIMEOUT", "30")) * 1000)
        self._signals, done = [], []
        for i, listener in enumerate(self.sockets):
            sock = getattr(listener, "sock", listener)
            uds = sock.family == socket.AF_UNIX
            # A dup: granian turns the fd into an owned TcpListener and closes it when it stops; Gunicorn's
            # wrapper keeps (and later closes) the original. granian calls listen(backlog) on it again.
            holder = SocketHolder(os.dup(sock.fileno()), uds, self.cfg.backlog)
            wsig = WorkerSignal()  # one per serve call: the Rust side takes its receiver once
            fut = loop.create_future()
            wsig.add_cb(lambda fut=fut: loop.call_soon_threadsafe(_settle, fut))  # after granian drained
            worker = ASGIWorker(
                self.pid * 10 + i,  # worker_id: only used in granian's log lines
                (None, holder),
                None,  # ipc (granian's metrics pipe)
                threads=1,
                blocking_threads=512,
                py_threads=1,
                py_threads_idle_timeout=30,
                backpressure=self.cfg.worker_connections,  # max open connections in this worker
                http_mode="1",
                http1_opts=h1,
                http2_opts=None,
                websockets_enabled=True,
                static_files=None,
                metrics=(None, None),
            )
            serve = worker.serve_async_uds if uds else worker.serve_async
            serve(_new_cbscheduler(loop, callback, impl_asyncio=True), loop, wsig)
            self._signals.append(wsig)
            done.append(fut)

        # Heartbeat for Gunicorn's TIMEOUT (it stops if the loop is blocked, as with Uvicorn's worker).
        all_done = asyncio.gather(*done)
        while not all_done.done():
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                self._graceful()
            await asyncio.wait([all_done], timeout=min(1.0, self.timeout))
        await lifespan.shutdown()

    def init_signals(self) -> None:
        super().init_signals()
        # Gunicorn's handle_abort raises SystemExit in whatever runs, here the app's coroutine: granian
        # catches it, answers 500 and the worker lives on. Leave for good instead.
        signal.signal(signal.SIGABRT, self._timed_out)

    def _timed_out(self, sig, frame) -> None:
        self.log.critical(
            "Worker (pid:%s) timed out (no heartbeat): %d request(s) unfinished", self.pid, self.in_flight
        )
        self.cfg.worker_abort(self)
        logging.shutdown()
        os._exit(1)

    _stopping = False

    def _graceful(self) -> None:
        """SIGTERM, MAX_REQUESTS: stop accepting, let granian finish what is in flight (hyper's graceful
        shutdown: idle keep-alive connections close, busy ones answer with Connection: close)."""
        self.alive = False
        if self._stopping:
            return
        self._stopping = True
        for wsig in self._signals:
            wsig.set()

    def _quick(self) -> None:
        """SIGQUIT/SIGINT: go now. The unfinished requests' connections are closed by the kernel (no
        invented 500); Python's exit is skipped because granian's Rust threads are still running."""
        self.alive = False
        self.log.info("Worker quick stop (pid: %s): %d request(s) unfinished", self.pid, self.in_flight)
        self.cfg.worker_int(self)
        logging.shutdown()
        os._exit(0)
