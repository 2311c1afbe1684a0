"""The default Gunicorn worker: ``uvicorn_worker.UvicornWorker`` with what it gets wrong put right.

It hooks in only where Gunicorn documents a worker may (``init_signals``, ``load_wsgi``, ``run``,
``notify``) and reads ``uvicorn_worker``'s ``config``; tests/process/test_upstream.py fails by name
when one of these goes away upstream, and runs uvicorn-worker's own tests against this class.

- Quick stop: on SIGINT or SIGQUIT the master asks its workers for a quick exit with SIGQUIT. The
  stock worker only flipped Gunicorn's ``alive`` flag, which the Uvicorn server never reads, so each
  worker kept serving until ``graceful_timeout`` (120 s by default) ran out and it was killed. Here
  the worker closes the connections of unfinished requests (no invented 500), says how many in one
  line, and exits at once. SIGTERM keeps its meaning.
- Request limits and a head timeout (HEADER_TIMEOUT): see asgi_launcher.protocol.
- GRACEFUL_TIMEOUT honoured by the worker itself: requests still running near its end are closed and
  counted in one line, and the worker exits before the master kills it (it used to vanish silently).
- A bounded boot: Gunicorn (>= 21) never applies TIMEOUT before a worker's first heartbeat, so an
  import or a lifespan startup that hangs kept a worker that never served. BOOT_TIMEOUT (from the
  settings the launcher's application carries) bounds the import plus the startup, up to the
  first heartbeat; past it the worker says so in one line and exits, and the master starts another.
  A slow model load within the bound is fine, whatever TIMEOUT is (tiangolo's Gunicorn 20 killed it
  after TIMEOUT, forever).
- Timeouts explained: when the master aborts a worker whose heartbeat stopped (TIMEOUT), the worker
  logs one line saying what it was serving, instead of dying silently.
- No double close: Uvicorn gets the plain listening sockets, not Gunicorn's wrappers, which uvloop
  closed and the wrapper closed again ("Error while closing socket [Errno 9] Bad file descriptor").
- A quick idle stop: Uvicorn's server notices SIGTERM at its next 0.1 s tick, then pauses 0.1 s for
  the open connections to see it, even when there are none. ``AwakeServer`` is woken by the signal and
  skips the pause when no connection is open; a stop with requests in flight is Uvicorn's own.

Beyond Gunicorn's API it overrides uvicorn-worker's ``_serve`` (which builds the server) and three
methods of Uvicorn's ``Server``; the canaries in tests/process/test_upstream.py check, by what they
do, that these still are what ``AwakeServer`` mirrors.

The module imports without uvicorn-worker (``UNAVAILABLE`` then says why), so that a launcher can
fall back to another worker class rather than fail on import.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import signal
import sys
import threading
import time

from uvicorn.server import Server

from asgi_launcher import protocol

try:
    from uvicorn_worker import UvicornWorker as _StockWorker

    UNAVAILABLE: str | None = None
except ImportError as error:  # an image that pins Uvicorn without uvicorn-worker
    from gunicorn.workers.base import Worker as _StockWorker

    UNAVAILABLE = f"uvicorn-worker cannot be imported ({error})"


def calling_server():
    """The Uvicorn server whose tick is calling us (the heartbeat comes from ``Server.on_tick``), or None.

    uvicorn-worker keeps its server in a local variable; the call stack is the one place to find it
    without relying on a private name."""
    from uvicorn.server import Server

    frame = inspect.currentframe()
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Server):
            return frame.f_locals["self"]
        frame = frame.f_back
    return None


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class AwakeServer(Server):
    """Uvicorn's server, woken by a stop signal rather than at its next tick, and without the pause of
    its shutdown when no connection is open: an idle worker took 0.15 to 0.2 s to stop. It returns
    from a stop signal instead of raising it again."""

    tick = 0.1  # seconds: Uvicorn's main-loop interval (the date header, the heartbeat, the exit checks)
    _tick: asyncio.Future | None = None

    def handle_exit(self, sig, frame) -> None:
        # Uvicorn's, except that the signal is not kept to be raised again once the server has shut
        # down: the worker ends as Gunicorn's own workers do, with status 0 after Python's exit (the
        # batched access log and metrics, the app's atexit handlers), rather than killed by it.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
        tick = self._tick
        if tick is not None:  # a signal handler: the loop may be asleep in its poll
            tick.get_loop().call_soon_threadsafe(_settle, tick)

    async def main_loop(self) -> None:
        # Uvicorn's loop, with a sleep that handle_exit can end.
        loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            self._tick = tick = loop.create_future()
            timer = loop.call_later(self.tick, _settle, tick)
            try:
                await tick
            finally:
                timer.cancel()
            should_exit = await self.on_tick(counter)
        self._tick = None

    async def shutdown(self, sockets=None) -> None:
        state = self.server_state
        if state.connections or state.tasks:
            await super().shutdown(sockets)  # Uvicorn's: the connections get 0.1 s to see the stop
            return
        # Nothing open: Uvicorn's steps without that pause.
        logging.getLogger("uvicorn.error").info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


class UvicornWorker(_StockWorker):
    boot_timeout = 0  # seconds; 0 keeps Gunicorn's behaviour (no bound)
    header_timeout: int | None = None  # None: HEADER_TIMEOUT from the environment (asgi_launcher.protocol)
    _booted = False
    _quick = False
    _main_task: asyncio.Task | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        # The settings the master parsed, forked with its application (asgi_launcher.application). A
        # plain `gunicorn -k asgi_launcher.workers.UvicornWorker` has none: no boot bound, and the
        # protocol reads HEADER_TIMEOUT itself.
        settings = getattr(self.app, "settings", None)
        if settings is not None:
            self.boot_timeout = settings.boot_timeout
            self.header_timeout = settings.header_timeout
        if self.config.http == "auto" and protocol.has_httptools():
            self.config.http = protocol.with_limits(
                cfg.limit_request_line,
                cfg.limit_request_fields,
                cfg.limit_request_field_size,
                self.header_timeout,
            )
        # Uvicorn waits for requests without bound on a graceful stop; the master kills the worker at
        # graceful_timeout. The protocol closes what is left a little before, and says so.
        self.config.timeout_graceful_shutdown = cfg.graceful_timeout

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGABRT, self._timed_out)

    def load_wsgi(self) -> None:
        if self.boot_timeout > 0:
            threading.Thread(target=self._watch_boot, name="boot-watchdog", daemon=True).start()
        super().load_wsgi()

    def run(self) -> None:
        self.sockets = [getattr(listener, "sock", listener) for listener in self.sockets]
        if getattr(getattr(self, "wsgi", None), "metrics", None) is not None:  # observe.Observed
            protocol.count_head_timeouts()
        try:
            super().run()
        except asyncio.CancelledError:
            if not self._quick:
                raise

    async def _serve(self) -> None:
        """uvicorn-worker's, with ``AwakeServer``; SIGQUIT before the boot ends only clears ``alive``
        (Gunicorn's ``handle_exit``), as there, and the quick stop takes over at the first heartbeat."""
        from gunicorn.arbiter import Arbiter

        self.config.app = self.wsgi
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None)
        server = AwakeServer(config=self.config)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def notify(self) -> None:
        """The heartbeat, which Uvicorn's server sends once started (Gunicorn's documented contract).
        The first one ends the boot: the app's objects are frozen out of garbage collection, the watchdog
        stands down, the quick stop is armed, and MAX_REQUESTS and MAX_WORKER_MEMORY learn how to stop
        accepting connections."""
        super().notify()
        if not self._booted:
            self._booted = True
            # What the app made at import and at startup lives as long as the worker: frozen, the
            # collector stops walking it at every full collection (15 to 20 ms with FastAPI, in the
            # middle of requests). It halved the p99 at 64 and 256 connections; PRELOAD_APP freezes
            # in the master, for the shared pages.
            gc.freeze()
            self._arm_quick_stop()
            self._arm_stop_accepting(calling_server())

    @staticmethod
    def _arm_stop_accepting(server) -> None:
        """MAX_REQUESTS (with Uvicorn's own jitter, as it checks it) and MAX_WORKER_MEMORY stop the
        worker taking connections before it leaves: the protocol closes the server's listeners."""
        if server is None:
            return

        def stop_accepting() -> None:
            for listener in getattr(server, "servers", ()):  # asyncio.Server objects: close() is public
                listener.close()

        protocol.PROCESS.request_limit = getattr(server, "limit_max_requests", None) or None
        protocol.PROCESS.stop_accepting = stop_accepting

    def _arm_quick_stop(self) -> None:
        try:
            self._main_task = asyncio.current_task()
        except RuntimeError:  # not called from the server's loop: leave the stock SIGQUIT handling
            return
        if self._main_task is None:
            return
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self._quick_stop)
        if not self.alive:  # SIGQUIT came during startup (the stock handler only cleared `alive`)
            self._quick_stop()

    def _quick_stop(self) -> None:
        self.alive = False
        self._quick = True
        protocol.quiet_cancellations()  # the lifespan is cancelled too, with or without requests
        protocol.abandon("quick stop", cancel_tasks=False)
        self._main_task.cancel()  # the server's task: asyncio.run then cancels the requests' tasks

    def _watch_boot(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self._booted:
                return
            time.sleep(0.1)
        self.log.error(
            "Worker (pid:%s) did not boot within BOOT_TIMEOUT=%ss (importing %s and running its startup); "
            "exiting so that the master starts another",
            os.getpid(),
            self.boot_timeout,
            getattr(self.app, "app_uri", None) or "the app",
        )
        os._exit(1)

    def _timed_out(self, sig, frame) -> None:
        """SIGABRT from the master: no heartbeat for TIMEOUT seconds. Say why, then go."""
        unfinished = protocol.in_flight()
        self.log.critical(
            "Worker (pid:%s) timed out: no heartbeat for %ss (its event loop was blocked or busy); "
            "serving: %s",
            os.getpid(),
            self.cfg.timeout,  # self.timeout is half of it: the heartbeat interval
            protocol.describe(unfinished) if unfinished else "no tracked request",
        )
        self.cfg.worker_abort(self)
        os._exit(1)
