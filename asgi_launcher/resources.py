"""What operators of the container watch most: memory per worker, CPU, throttling, OOM kills.

Read by the master when Prometheus scrapes, from ``/proc`` and the cgroup's files: the workers do
nothing for these (their event-loop lag is theirs: ``observe.RequestMetrics``). Workers are labelled
by their slot (``worker="0"``, the lowest free number when it was started), not by pid, so that
recycling workers adds no series.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import NamedTuple

from asgi_launcher.cgroups import Cgroup

PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessUsage(NamedTuple):
    rss: int  # bytes resident, shared pages counted in full
    pss: int | None  # bytes, shared pages divided between the processes sharing them; None: unreadable
    cpu_seconds: float  # user + system


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return file.read().decode("ascii", "replace")
    except OSError:
        return None


def resident(pid: int, proc: str = "/proc") -> int | None:
    """RSS in bytes (cheap: one small file)."""
    statm = _read(f"{proc}/{pid}/statm")
    fields = statm.split() if statm else []
    return int(fields[1]) * PAGE if len(fields) > 1 else None


def proportional(pid: int, proc: str = "/proc") -> int | None:
    """PSS in bytes from ``smaps_rollup`` (Linux >= 4.14; about 1 ms for a worker: read it sparingly)."""
    for line in (_read(f"{proc}/{pid}/smaps_rollup") or "").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def cpu_seconds(pid: int, proc: str = "/proc") -> float | None:
    stat = _read(f"{proc}/{pid}/stat")
    if not stat:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / _TICKS if len(fields) > 12 else None


def process_usage(pid: int, proc: str = "/proc") -> ProcessUsage | None:
    rss = resident(pid, proc)
    cpu = cpu_seconds(pid, proc)
    if rss is None or cpu is None:
        return None  # gone meanwhile
    return ProcessUsage(rss, proportional(pid, proc), cpu)


class ResourceMetrics:
    """A prometheus_client collector: ``workers()`` gives (slot, pid) pairs; ``cgroup`` the container."""

    def __init__(self, workers: Callable[[], Iterable[tuple[int, int]]], cgroup: Cgroup | None):
        self.workers = workers
        self.cgroup = cgroup

    def collect(self):
        yield from self.collect_workers()
        if self.cgroup is not None:
            yield from self.collect_container()

    def collect_workers(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rss = GaugeMetricFamily(
            "asgi_worker_resident_memory_bytes",
            "Resident memory of each worker (RSS: pages shared with other processes counted in full)",
            labels=["worker"],
        )
        pss = GaugeMetricFamily(
            "asgi_worker_proportional_memory_bytes",
            "Proportional memory of each worker (PSS: shared pages divided between their sharers)",
            labels=["worker"],
        )
        cpu = CounterMetricFamily(
            "asgi_worker_cpu_seconds",
            "CPU time of each worker (user + system); starts again from 0 when the slot's worker is replaced",
            labels=["worker"],
        )
        for slot, pid in sorted(self.workers()):
            usage = process_usage(pid)
            if usage is None:
                continue
            label = [str(slot)]
            rss.add_metric(label, usage.rss)
            if usage.pss is not None:
                pss.add_metric(label, usage.pss)
            cpu.add_metric(label, usage.cpu_seconds)
        yield from (rss, pss, cpu)

    def collect_container(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        usage = self.cgroup.usage()
        gauges = (
            ("memory_usage_bytes", usage.memory, "Memory charged to the container, page cache included"),
            (
                "memory_working_set_bytes",
                usage.working_set,
                "Memory charged to the container minus inactive file pages (what cannot be reclaimed)",
            ),
            ("memory_limit_bytes", usage.memory_limit, "The container's memory limit"),
            ("cpu_quota_cores", usage.cpu_quota, "The container's CPU quota, in CPUs (--cpus)"),
        )
        counters = (
            ("cpu_seconds", usage.cpu_seconds, "CPU time used by every process of the container"),
            ("cpu_periods", usage.periods, "Scheduler periods (100 ms) in which the container ran"),
            (
                "cpu_throttled_periods",
                usage.throttled_periods,
                "Periods in which the container had used up its CPU quota and waited",
            ),
            (
                "cpu_throttled_seconds",
                usage.throttled_seconds,
                "Time the container's processes waited because the CPU quota was used up",
            ),
            ("oom_kills", usage.oom_kills, "Processes the kernel killed for the container's memory limit"),
        )
        for name, value, documentation in gauges:
            if value is not None:  # no limit, no quota: no series rather than a made-up value
                yield GaugeMetricFamily(f"asgi_container_{name}", documentation, value=value)
        for name, value, documentation in counters:
            if value is not None:
                yield CounterMetricFamily(f"asgi_container_{name}", documentation, value=value)
