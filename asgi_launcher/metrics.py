"""The master's side of the metrics: one endpoint that sums every worker's prometheus_client files.

Workers write their samples to per-process files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode). The master serves them on their own port from a thread, so the endpoint answers
even while every worker is busy, and it is the only process that touches the files of dead workers:
it folds them into one archive file per metric type, under the same lock as the scrapes, so that
recycled workers neither lose counts nor make each scrape read more files than the last.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import defaultdict

LABELS = ("method", "route", "status")  # of the request metrics (asgi_launcher.observe)
ARCHIVED_TYPES = ("counter", "histogram", "summary")  # gauges of dead workers are dropped, not summed


def default_directory(pid: int) -> str:
    """Per master, on tmpfs: /dev/shm is a tmpfs in every container, even with a read-only root."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else os.environ.get("TMPDIR", "/tmp")  # noqa: S108
    return os.path.join(base, f"asgi-metrics-{pid}")


def reset_directory(path: str) -> None:
    """Files left by an earlier run would be summed into this one's: start from an empty directory."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def with_request_totals(families):
    """The collected families plus ``http_requests_total``, copied from the latency histogram's count.

    Workers keep only the histogram (its ``_count`` is the request count): one series less to write
    per request.
    """
    from prometheus_client.core import CounterMetricFamily

    totals = CounterMetricFamily("http_requests_total", "HTTP requests answered", labels=LABELS)
    for family in families:
        yield family
        if family.name == "http_request_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    totals.add_metric([sample.labels[label] for label in LABELS], sample.value)
    yield totals


class MasterMetrics:
    """prometheus_client is imported when the endpoint starts, not when Gunicorn reads its config."""

    def __init__(self, directory: str, owns_directory: bool):
        self.directory = directory
        self.owns_directory = owns_directory  # ours to remove at exit (not a PROMETHEUS_MULTIPROC_DIR)
        self.lock = threading.Lock()
        self.worker_starts = 0
        self.worker_exits = 0
        self.workers = lambda: 0
        self.recycles: dict[str, int] | None = None  # reason -> count (asgi_launcher.recycling)
        self.collectors: list = []  # more families on the same endpoint (asgi_launcher.resources)
        self.server = None

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from prometheus_client.multiprocess import MultiProcessCollector

        with self.lock:
            collected = list(MultiProcessCollector(None, path=self.directory).collect())
        yield from with_request_totals(collected)
        yield GaugeMetricFamily("gunicorn_workers", "Worker processes alive now", value=self.workers())
        yield CounterMetricFamily(
            "gunicorn_worker_starts", "Worker processes started", value=self.worker_starts
        )
        yield CounterMetricFamily(
            "gunicorn_worker_exits", "Worker processes that exited", value=self.worker_exits
        )
        if self.recycles is not None:
            recycles = CounterMetricFamily(
                "gunicorn_worker_recycles",
                "Workers replaced while the server ran, by reason (memory, max_requests, timeout, crash, "
                "reload, other)",
                labels=["reason"],
            )
            for reason, count in self.recycles.items():
                recycles.add_metric([reason], count)
            yield recycles
        for collector in self.collectors:
            yield from collector.collect()

    def serve(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, ProcessCollector, start_wsgi_server

        registry = CollectorRegistry()
        registry.register(self)
        ProcessCollector(registry=registry)  # process_*: the master's own memory, CPU, start time
        self.server, _ = start_wsgi_server(port, addr=host, registry=registry)

    def close_in_child(self) -> None:
        """A forked worker must not hold the master's listening socket."""
        if self.server is not None:
            self.server.socket.close()

    def worker_exited(self, pid: int) -> None:
        from prometheus_client import multiprocess

        self.worker_exits += 1
        with self.lock:
            multiprocess.mark_process_dead(pid, self.directory)
            archive_dead_worker(self.directory, pid)


def archive_dead_worker(directory: str, pid: int) -> None:
    """Add a dead worker's counters and histograms into ``<type>_archive.db`` and remove its files.

    The archive is written to a new file and renamed over the old one, then the worker's file is
    removed; the caller holds the scrape lock, so no scrape sees the sample twice or not at all.
    """
    from prometheus_client.mmap_dict import MmapedDict

    for kind in ARCHIVED_TYPES:
        dead = os.path.join(directory, f"{kind}_{pid}.db")
        if not os.path.exists(dead):
            continue
        archive = os.path.join(directory, f"{kind}_archive.db")
        totals: dict[str, float] = defaultdict(float)
        for path in (archive, dead):
            if os.path.exists(path):
                for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(path):
                    totals[key] += value
        staging = archive + ".new"  # not *.db: the collector must not read it half-written
        merged = MmapedDict(staging)
        try:
            for key, value in totals.items():
                merged.write_value(key, value, 0.0)
        finally:
            merged.close()
        os.replace(staging, archive)
        os.remove(dead)
