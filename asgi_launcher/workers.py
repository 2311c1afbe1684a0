"""The default Gunicorn worker: ``uvicorn_worker.UvicornWorker`` with what it gets wrong put right.

- Quick stop: on SIGINT or SIGQUIT the master asks its workers for a quick exit with SIGQUIT. The
  stock worker only flipped Gunicorn's ``alive`` flag, which the Uvicorn server never reads, so each
  worker kept serving until ``graceful_timeout`` (120 s by default) ran out and it was killed. Here
  the server drops its connections and exits at once. SIGTERM keeps its meaning.
- Request limits: Gunicorn's ``limit_request_*`` settings are enforced (httptools has no limits).
- A bounded boot: Gunicorn (>= 21) never applies TIMEOUT before a worker's first heartbeat, so an
  import or a lifespan startup that hangs kept a worker that never served. ``boot_timeout`` (from
  BOOT_TIMEOUT, set by the config's post_fork hook) bounds the import plus the startup; past it the
  worker says so in one line and exits, and the master starts another. A slow model load within the
  bound is fine, whatever TIMEOUT is (tiangolo's Gunicorn 20 killed it after TIMEOUT, forever).
- Timeouts explained: when the master aborts a worker whose heartbeat stopped (TIMEOUT), the worker
  logs one line saying what it was serving, instead of dying silently.
- No double close: Uvicorn gets the plain listening sockets, not Gunicorn's wrappers, which uvloop
  closed and the wrapper closed again ("Error while closing socket [Errno 9] Bad file descriptor").
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time

import uvicorn_worker
from gunicorn.arbiter import Arbiter
from uvicorn.server import Server

from asgi_launcher.protocol import has_httptools, with_limits


class UvicornWorker(uvicorn_worker.UvicornWorker):
    boot_timeout = 0  # seconds; 0 keeps Gunicorn's behaviour (no bound)
    _server: Server | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config.http == "auto" and has_httptools():
            cfg = self.cfg
            self.config.http = with_limits(
                cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size
            )

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGABRT, self._timed_out)

    def load_wsgi(self) -> None:
        if self.boot_timeout > 0:
            threading.Thread(target=self._watch_boot, name="boot-watchdog", daemon=True).start()
        super().load_wsgi()

    def _watch_boot(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self._server is not None and self._server.started:
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

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = self._server = Server(config=self.config)
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self._quick_exit, server)
        await server.serve(sockets=[getattr(listener, "sock", listener) for listener in self.sockets])
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _quick_exit(self, server: Server) -> None:
        self.alive = False
        server.should_exit = True
        server.force_exit = True

    def _timed_out(self, sig, frame) -> None:
        """SIGABRT from the master: no heartbeat for TIMEOUT seconds. Say why, then go."""
        in_flight = getattr(getattr(self, "wsgi", None), "in_flight", None)
        serving = ", ".join(sorted(x.request_line for x in in_flight)) if in_flight else "no tracked request"
        self.log.critical(
            "Worker (pid:%s) timed out: no heartbeat for %ss (its event loop was blocked or busy); "
            "serving: %s",
            os.getpid(),
            self.cfg.timeout,  # self.timeout is half of it: the heartbeat interval
            serving,
        )
        self.cfg.worker_abort(self)
        os._exit(1)


class UvicornH11Worker(UvicornWorker):
    """The same with the pure-Python h11 parser and asyncio loop, for platforms without uvloop/httptools."""

    CONFIG_KWARGS = uvicorn_worker.UvicornH11Worker.CONFIG_KWARGS
