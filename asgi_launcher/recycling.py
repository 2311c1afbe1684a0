"""The master's side of worker recycling: slots, why each worker left, and MAX_WORKER_MEMORY.

- Slots: each worker gets the lowest number no live worker holds (``worker.slot``, set before the
  fork), the label of its resource metrics: replacing workers adds no series.
- Reasons: when a worker exits, the master says why, for ``gunicorn_worker_recycles_total``. What it
  asked for itself it knows (memory, a SIGHUP reload, its own shutdown); Gunicorn marks a worker it
  aborted for TIMEOUT (``worker.aborted``); the rest the worker tells through a pipe as it leaves in
  order (its exit status: 0 after MAX_REQUESTS). A worker that says nothing died: a crash.
- The memory guard: a thread of the master that reads each worker's memory every second and, when one
  passes MAX_WORKER_MEMORY, stops it with SIGTERM (it finishes what it is serving; the master starts
  another), one at a time. A second is long for a fast leak (100 MiB/s from the first request is enough
  to meet a cgroup limit between two polls), so each worker also reads its own RSS after a response, at
  most every 50 ms (``OwnMemoryCheck``), and, once past the limit, stops taking work and tells the
  master, whose guard wakes at once and decides as on its poll. PSS, not RSS: with PRELOAD_APP the app's
  pages are shared between the master and every worker, and RSS counts them in full in each (tens of MiB
  per worker that recycling would not free), while PSS divides them, so that the workers' PSS add up to
  what the container is charged and a leak (private pages) counts in full.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import sys
import threading
import time

from asgi_launcher import resources

REASONS = ("memory", "max_requests", "timeout", "crash", "reload", "other")
_MiB = 1 << 20


class Lifecycle:
    """Created in the master before any worker; it lives as long as the master (a SIGHUP re-reads
    the config file, not this)."""

    def __init__(self):
        self.read_fd, self._write_fd = os.pipe()
        for fd in (self.read_fd, self._write_fd):
            os.set_blocking(fd, False)  # a worker never waits on the master, nor the master on a worker
        self._lock = threading.Lock()
        self._partial = b""
        self.recycles = dict.fromkeys(REASONS, 0)
        self.booted: dict[int, int] = {}  # pid -> its memory when it began to serve
        self.exit_codes: dict[int, int] = {}
        self.memory_pids: set[int] = set()  # asked to leave for MAX_WORKER_MEMORY
        self.over: dict[int, int] = {}  # pid -> its size when it retired itself (OwnMemoryCheck)
        self.boot_usage = 0  # in a worker: its memory when it began to serve
        self.reload_pids: set[int] = set()  # alive when a SIGHUP came

    # ---- in the master
    @staticmethod
    def assign_slot(server, worker) -> None:
        taken = {getattr(w, "slot", None) for w in list(server.WORKERS.values())}
        worker.slot = next(slot for slot in itertools.count() if slot not in taken)

    def on_reload(self, server) -> None:
        self.reload_pids.update(server.WORKERS)

    def drain(self) -> None:
        """Read what the workers said: ``booted PID BYTES``, ``over PID BYTES`` and ``exit PID STATUS``."""
        with self._lock:
            while True:
                try:
                    chunk = os.read(self.read_fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                self._partial += chunk
            *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            fields = line.split()
            if len(fields) != 3 or not fields[1].isdigit() or not fields[2].lstrip(b"-").isdigit():
                continue
            kind, pid, value = fields[0], int(fields[1]), int(fields[2])
            if kind == b"booted":
                self.booted[pid] = value
            elif kind == b"over":
                self.over[pid] = value
            elif kind == b"exit":
                self.exit_codes[pid] = value

    def exited(self, server, worker) -> str | None:
        """Why ``worker`` left (counted), or None when the master itself is stopping."""
        self.drain()
        pid = worker.pid
        status = self.exit_codes.pop(pid, None)
        self.booted.pop(pid, None)
        self.over.pop(pid, None)
        reload = pid in self.reload_pids
        self.reload_pids.discard(pid)
        if pid in self.memory_pids:
            self.memory_pids.discard(pid)
            reason = "memory"
        elif getattr(worker, "aborted", False):
            reason = "timeout"
        elif not getattr(server, "LISTENERS", True):  # Gunicorn closes them first when it stops
            return None
        elif reload:
            reason = "reload"
        elif status == 0:
            reason = "max_requests" if getattr(server.cfg, "max_requests", 0) else "other"
        else:
            reason = "crash"  # killed (kill -9, the OOM killer), a failing exit status, or no word
        self.recycles[reason] += 1
        return reason

    # ---- in a worker
    def in_worker(self) -> None:
        os.close(self.read_fd)

    def tell(self, kind: str, value: int) -> None:
        # One write below PIPE_BUF is atomic: lines of different workers never mix.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, f"{kind} {os.getpid()} {value}\n".encode())

    def worker_booted(self) -> None:
        pid = os.getpid()
        self.boot_usage = resources.proportional(pid) or resources.resident(pid) or 0
        self.tell("booted", self.boot_usage)

    def worker_exiting(self) -> None:
        """Called from Gunicorn's worker_exit hook, while the worker's SystemExit propagates."""
        error = sys.exc_info()[1]
        status = 0
        if isinstance(error, SystemExit):
            status = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
        elif error is not None:
            status = 1
        self.tell("exit", status)


class OwnMemoryCheck:
    """In a worker, called after each response (asgi_launcher.protocol): its own RSS from an open
    /proc/self/statm (a few microseconds), at most every ``interval`` seconds. What the master measures
    is PSS, which counts the pages shared with the master and the other workers in part, where RSS
    counts them in full: the difference, learnt at each PSS read (about 1 ms), is taken off RSS, and
    PSS is read only when that estimate passes the limit. Past the limit on PSS, the worker retires:
    ``retire()`` stops it taking more work, so that it stops growing while it waits for its turn, and
    the master hears it at once."""

    interval = 0.05

    def __init__(self, lifecycle: Lifecycle, limit: int, retire):
        self.lifecycle = lifecycle
        self.limit = limit
        self.retire = retire
        self._next = 0.0
        self._shared = 0  # RSS - PSS at the last PSS read
        self._statm = os.open("/proc/self/statm", os.O_RDONLY)  # after the fork: the worker's own

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        fields = os.pread(self._statm, 128, 0).split()
        rss = int(fields[1]) * resources.PAGE if len(fields) > 1 else 0
        if rss - self._shared <= self.limit:
            return
        pss = resources.proportional(os.getpid())
        size = rss if pss is None else pss  # no smaps_rollup: the master measures RSS too
        self._shared = rss - size
        if size <= self.limit or self.lifecycle.boot_usage > self.limit:
            return  # (too big from its boot on: the master refuses the limit and says so)
        self.retire()
        self.lifecycle.tell("over", size)


def measure(pid: int) -> tuple[int, str] | None:
    """(bytes, "PSS" or "RSS"); RSS first, as PSS <= RSS and RSS costs a hundredth of PSS."""
    rss = resources.resident(pid)
    if rss is None:
        return None
    pss = resources.proportional(pid)
    return (pss, "PSS") if pss is not None else (rss, "RSS")


class MemoryGuard(threading.Thread):
    """Replaces, one at a time and gracefully, a worker whose memory passed ``limit`` bytes."""

    interval = 1.0

    def __init__(self, server, lifecycle: Lifecycle, limit: int):
        super().__init__(name="memory-guard", daemon=True)
        self.server = server
        self.lifecycle = lifecycle
        self.limit = limit
        self.log = server.log
        self.refused = False

    def run(self) -> None:
        while True:
            # Woken by any line of a worker (its boot, its exit, or that it passed the limit), at the
            # latest after ``interval``; check() reads them all.
            # A worker that said it passed the limit but had to wait (one at a time, or a worker still
            # booting) is looked at again soon, not a second later.
            wait = self.interval / 20 if self.lifecycle.over else self.interval
            select.select([self.lifecycle.read_fd], [], [], wait)
            try:
                self.check()
            except Exception:  # a bug here must not leave the limit silently unenforced
                self.log.exception("MAX_WORKER_MEMORY: the memory check failed; trying again")

    def check(self) -> None:
        self.lifecycle.drain()
        workers = dict(self.server.WORKERS)
        if self.lifecycle.memory_pids & workers.keys():
            return  # one at a time: the last one is still finishing its requests
        if len(workers) < self.server.num_workers:
            return  # the master has not replaced it yet
        if not workers.keys() <= self.lifecycle.booted.keys():
            # A worker still importing the app or running its startup: it may be big for a while,
            # and, if it replaces one, the others wait until it serves (capacity drops by one at most).
            return
        for pid, worker in sorted(workers.items(), key=lambda item: getattr(item[1], "slot", 0)):
            boot = self.lifecycle.booted.get(pid)
            if boot is None:
                continue  # it exited meanwhile
            if boot > self.limit:
                # Replacing it would loop: said once, and such a worker is left alone. The others are
                # still recycled (a retired one must be: it takes no work).
                if not self.refused:
                    self.refuse(worker, pid, boot)
                continue
            retired = pid in self.lifecycle.over  # it measured itself past the limit: it takes no work
            if not retired:
                rss = resources.resident(pid)
                if rss is None or rss <= self.limit:  # PSS <= RSS: nothing more to read
                    continue
            measured = measure(pid)
            if measured is None or pid not in self.server.WORKERS:
                continue
            if measured[0] <= self.limit:
                if not retired:
                    continue
                measured = (self.lifecycle.over[pid], measured[1])  # what it measured itself, past the limit
            self.recycle(worker, pid, measured, boot)
            return

    def recycle(self, worker, pid: int, measured: tuple[int, str], boot: int) -> None:
        size, kind = measured
        self.lifecycle.memory_pids.add(pid)
        self.lifecycle.over.pop(pid, None)
        self.log.warning(
            "Worker %s (pid:%s) uses %.1f MiB (%s; %.1f MiB when it began serving), above "
            "MAX_WORKER_MEMORY=%.1f MiB: replacing it gracefully",
            getattr(worker, "slot", "?"),
            pid,
            size / _MiB,
            kind,
            boot / _MiB,
            self.limit / _MiB,
        )
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.lifecycle.memory_pids.discard(pid)

    def refuse(self, worker, pid: int, boot: int) -> None:
        self.refused = True
        self.log.error(
            "MAX_WORKER_MEMORY=%.1f MiB is below what a worker needs to boot: worker %s (pid:%s) used "
            "%.1f MiB when it began serving; workers that big are not recycled for memory until it is "
            "raised above that",
            self.limit / _MiB,
            getattr(worker, "slot", "?"),
            pid,
            boot / _MiB,
        )
