"""The default Gunicorn worker: ``uvicorn_worker.UvicornWorker`` with Gunicorn's fast stop honoured."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time

import uvicorn_worker
from gunicorn.arbiter import Arbiter
from uvicorn.server import Server


class UvicornWorker(uvicorn_worker.UvicornWorker):
    """Two fixes over the stock worker.

    On SIGINT or SIGQUIT the Gunicorn master asks its workers for a quick exit with SIGQUIT. The stock
    worker only flips Gunicorn's ``alive`` flag, which the Uvicorn server never reads, so each worker
    kept serving until the master's ``graceful_timeout`` (120 s by default) ran out and it was killed.
    Here SIGQUIT makes the server drop its connections and exit at once; SIGTERM keeps its meaning
    (finish in-flight requests, then exit).

    Uvicorn gets the plain listening sockets rather than Gunicorn's wrappers: with the wrappers, uvloop
    closed the descriptor and the wrapper closed it again at shutdown ("Error while closing socket
    [Errno 9] Bad file descriptor"), a double close that could hit a descriptor reused meanwhile.

    And a third: while the app is imported (``boot_timeout``, set from BOOT_TIMEOUT by the config's
    post_fork hook), a thread keeps the heartbeat going, so that an import slower than TIMEOUT (a model
    being loaded) is not killed and respawned forever. Past ``boot_timeout`` the beat stops and
    TIMEOUT applies again, so an import that hangs is still killed.
    """

    boot_timeout = 0  # seconds; 0 keeps Gunicorn's behaviour

    def load_wsgi(self) -> None:
        if self.boot_timeout <= 0 or self.timeout <= 0:
            return super().load_wsgi()
        loaded = threading.Event()

        def beat() -> None:
            deadline = time.monotonic() + self.boot_timeout
            while not loaded.wait(min(1.0, self.timeout / 4)) and time.monotonic() < deadline:
                self.notify()

        threading.Thread(target=beat, name="boot-heartbeat", daemon=True).start()
        try:
            super().load_wsgi()
        finally:
            loaded.set()

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = Server(config=self.config)
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, self._quick_exit, server)
        await server.serve(sockets=[getattr(listener, "sock", listener) for listener in self.sockets])
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _quick_exit(self, server: Server) -> None:
        self.alive = False
        server.should_exit = True
        server.force_exit = True


class UvicornH11Worker(UvicornWorker):
    """The same with the pure-Python h11 parser and asyncio loop, for platforms without uvloop/httptools."""

    CONFIG_KWARGS = uvicorn_worker.UvicornH11Worker.CONFIG_KWARGS
