"""TIMEOUT for one process (PROCESS_MANAGER=uvicorn), where no Gunicorn master watches a heartbeat.

Once the app's startup is over (as in Gunicorn, where TIMEOUT starts with the first heartbeat, sent
once the server runs: a slow import or model load is not a hang), the event loop ticks a timestamp
every quarter of TIMEOUT (at most every second). A thread checks it; when the loop has made no
progress for TIMEOUT seconds it logs one line naming what was being served, as the Gunicorn worker's
timeout line does, and the process exits with status 1: the orchestrator restarts it (a blocked loop
answers nothing, and nothing inside the process can unblock it).

``uvicorn.run`` takes no ``callback_notify``, so the end of the startup is seen from the app's side:
the lifespan's ``startup.complete`` message, or the end of the lifespan call for an app without one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from asgi_launcher import protocol

logger = logging.getLogger("uvicorn.error")


class LoopWatchdog:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self.interval = min(1.0, timeout / 4)
        self.last_tick = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """From the event loop's thread; only the first call counts."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._tick()
        threading.Thread(target=self._watch, name="loop-watchdog", daemon=True).start()

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        self._loop.call_later(self.interval, self._tick)

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval)
            if time.monotonic() - self.last_tick > self.timeout:
                self._expire()
                return

    def _expire(self) -> None:
        unfinished = protocol.in_flight()
        # From a thread we need not wait for: a loop blocked inside a log write holds the handler's lock.
        line = threading.Thread(
            target=logger.critical,
            args=(
                "Process (pid:%s) timed out: no event-loop progress for %ss (TIMEOUT; blocked or busy); "
                "serving: %s; exiting with status 1 so that it is restarted",
                os.getpid(),
                self.timeout,
                protocol.describe(unfinished) if unfinished else "no tracked request",
            ),
            daemon=True,
        )
        line.start()
        line.join(2)
        os._exit(1)


class Watched:
    """The ASGI app, with the watchdog started when its startup is over."""

    def __init__(self, app, watchdog: LoopWatchdog):
        self.app = app
        self.watchdog = watchdog

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def watching_send(message):
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                self.watchdog.start()

        try:
            return await self.app(scope, receive, watching_send)
        finally:  # no lifespan support (Uvicorn's "auto" goes on without it), or shut down
            self.watchdog.start()


def watch(app, timeout: int):
    """``app`` with TIMEOUT in force (0: unchanged)."""
    return Watched(app, LoopWatchdog(timeout)) if timeout else app
