"""What CPU and memory this process may use: scheduler affinity plus cgroup v1/v2 limits.

Every reader takes a filesystem ``root`` so that unit tests can point it at a fake tree. Anything
unreadable or malformed counts as "no limit": sizing must never crash a start.
"""

from __future__ import annotations

import math
import os
import re
from typing import NamedTuple

# cgroup v1 reports "no memory limit" as a page-aligned LONG_MAX; anything this large is no limit.
_UNLIMITED_BYTES = 1 << 62


class Limits(NamedTuple):
    affinity: int  # CPUs this process may be scheduled on (cpuset / taskset)
    cpu_quota: float | None  # quota / period in CPUs; None when there is no quota
    memory: int | None  # bytes; None when there is no limit

    @property
    def cores(self) -> int:
        """CPUs the container may use: the affinity count, capped by the quota rounded up."""
        if self.cpu_quota is None:
            return self.affinity
        return max(1, min(self.affinity, math.ceil(self.cpu_quota)))


class Mount(NamedTuple):
    root: str  # the hierarchy path that is mounted
    point: str  # where it is mounted
    fstype: str
    super_options: frozenset[str]
    options: frozenset[str] = frozenset()  # the mount's own ("ro" for a read-only bind mount)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each v1 controller to its cgroup path; the v2 (unified) path is under the key ``""``."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 4:
            continue
        mounts.append(
            Mount(
                root=_unescape(fields[3]),
                point=_unescape(fields[4]),
                fstype=fields[sep + 1],
                super_options=frozenset(fields[sep + 3].split(",")),
                options=frozenset(fields[5].split(",")),
            )
        )
    return mounts


def cgroup_dirs(controller: str, proc_cgroup: dict[str, str], mounts: list[Mount]) -> list[str]:
    """Directories holding this process's cgroup files for ``controller``, leaf first, up to the mount.

    A v1 hierarchy with the controller wins over the unified (v2) one: on hybrid hosts the v2 mount
    carries no controllers. Limits set on an ancestor (a Kubernetes pod, say) apply too, so callers
    take the tightest value along the way.
    """
    if controller in proc_cgroup:
        path = proc_cgroup[controller]
        candidates = [m for m in mounts if m.fstype == "cgroup" and controller in m.super_options]
    elif "" in proc_cgroup:
        path = proc_cgroup[""]
        candidates = [m for m in mounts if m.fstype == "cgroup2"]
    else:
        return []
    for mount in candidates:
        # With a cgroup namespace (or a bind mount of the leaf) the mount root is the path itself.
        if path == mount.root or path.startswith(mount.root.rstrip("/") + "/"):
            rel = path[len(mount.root.rstrip("/")) :].strip("/")
        elif mount.root == "/":
            rel = path.strip("/")
        else:
            rel = ""
        dirs = []
        parts = rel.split("/") if rel else []
        for depth in range(len(parts), -1, -1):
            dirs.append("/".join([mount.point.rstrip("/"), *parts[:depth]]) or "/")
        return dirs
    return []


def _read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path.lstrip("/"))) as file:
            return file.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpu_quota_at(root: str, directory: str) -> float | None:
    v2 = _read(root, f"{directory}/cpu.max")
    if v2 is not None:
        fields = v2.split()
        if len(fields) == 2 and fields[0] != "max":
            return _ratio(fields[0], fields[1])
        return None
    quota = _read(root, f"{directory}/cpu.cfs_quota_us")
    period = _read(root, f"{directory}/cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # v1 uses -1 for "no quota"
        return None
    return q / p


def _memory_at(root: str, directory: str) -> int | None:
    value = _read(root, f"{directory}/memory.max")
    if value is None:
        value = _read(root, f"{directory}/memory.limit_in_bytes")
    try:
        limit = int(value) if value is not None else None
    except ValueError:  # "max" in v2
        return None
    if limit is None or limit <= 0 or limit >= _UNLIMITED_BYTES:
        return None
    return limit


def _tightest(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def read_limits(root: str | os.PathLike = "/", affinity: int | None = None) -> Limits:
    """Read the limits of the current process. ``affinity`` defaults to the real scheduler affinity."""
    root = os.fspath(root)
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    proc_cgroup = parse_proc_cgroup(_read(root, "/proc/self/cgroup") or "")
    mounts = parse_mountinfo(_read(root, "/proc/self/mountinfo") or "")
    quota = _tightest([_cpu_quota_at(root, d) for d in cgroup_dirs("cpu", proc_cgroup, mounts)])
    memory = _tightest([_memory_at(root, d) for d in cgroup_dirs("memory", proc_cgroup, mounts)])
    return Limits(affinity=affinity, cpu_quota=quota, memory=int(memory) if memory is not None else None)


def host_memory(root: str | os.PathLike = "/") -> int | None:
    """The machine's memory (``MemTotal``), for when the container has no limit of its own."""
    for line in (_read(os.fspath(root), "/proc/meminfo") or "").splitlines():
        name, _, value = line.partition(":")
        fields = value.split()
        if name == "MemTotal" and fields and fields[0].isdigit():
            return int(fields[0]) * 1024
    return None


# ---- usage, for the metrics (read at each scrape) --------------------------------------------------


class Usage(NamedTuple):
    """What the container uses now, from its cgroup's files; None where a file is missing."""

    memory: int | None  # bytes charged, page cache included (v1 usage_in_bytes, v2 memory.current)
    working_set: int | None  # memory minus inactive file pages: what the OOM killer cannot reclaim
    memory_limit: int | None
    oom_kills: int | None  # processes the kernel killed for this cgroup's limit
    cpu_seconds: float | None
    cpu_quota: float | None
    periods: int | None  # CFS periods with runnable tasks
    throttled_periods: int | None
    throttled_seconds: float | None


def _fields(text: str | None) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    values = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


class Cgroup:
    """The directories that hold this process's cgroup files, found once; ``usage()`` reads them.

    Memory and CPU are read where the tightest limit is set (a Kubernetes pod's limit may sit on an
    ancestor of the container's cgroup), else in the process's own cgroup.
    """

    def __init__(self, root: str | os.PathLike = "/"):
        self.root = os.fspath(root)
        proc_cgroup = parse_proc_cgroup(_read(self.root, "/proc/self/cgroup") or "")
        mounts = parse_mountinfo(_read(self.root, "/proc/self/mountinfo") or "")
        memory_dirs = cgroup_dirs("memory", proc_cgroup, mounts)
        cpu_dirs = cgroup_dirs("cpu", proc_cgroup, mounts)
        self.memory_dir = _where_tightest(memory_dirs, lambda d: _memory_at(self.root, d))
        self.cpu_dir = _where_tightest(cpu_dirs, lambda d: _cpu_quota_at(self.root, d))
        cpuacct = cgroup_dirs("cpuacct", proc_cgroup, mounts) if "cpuacct" in proc_cgroup else []
        self.cpuacct_dir = cpuacct[0] if cpuacct else None

    def _file(self, directory: str | None, name: str) -> str | None:
        return _read(self.root, f"{directory}/{name}") if directory else None

    def usage(self) -> Usage:
        memory_dir, cpu_dir = self.memory_dir, self.cpu_dir
        memory = _number(self._file(memory_dir, "memory.current"))
        v2 = memory is not None
        if not v2:
            memory = _number(self._file(memory_dir, "memory.usage_in_bytes"))
        stat = _fields(self._file(memory_dir, "memory.stat"))
        inactive = stat.get("inactive_file" if v2 else "total_inactive_file")
        working_set = max(memory - inactive, 0) if memory is not None and inactive is not None else None
        events = _fields(self._file(memory_dir, "memory.events" if v2 else "memory.oom_control"))
        cpu = _fields(self._file(cpu_dir, "cpu.stat"))
        if "usage_usec" in cpu:  # v2: one cpu.stat for usage and throttling, in microseconds
            cpu_seconds = cpu["usage_usec"] / 1e6
            throttled = cpu.get("throttled_usec")
            throttled_seconds = throttled / 1e6 if throttled is not None else None
        else:  # v1: usage in cpuacct, throttling in nanoseconds
            usage_ns = _number(self._file(self.cpuacct_dir, "cpuacct.usage"))
            cpu_seconds = usage_ns / 1e9 if usage_ns is not None else None
            throttled = cpu.get("throttled_time")
            throttled_seconds = throttled / 1e9 if throttled is not None else None
        return Usage(
            memory=memory,
            working_set=working_set,
            memory_limit=_memory_at(self.root, memory_dir) if memory_dir else None,
            oom_kills=events.get("oom_kill"),
            cpu_seconds=cpu_seconds,
            cpu_quota=_cpu_quota_at(self.root, cpu_dir) if cpu_dir else None,
            periods=cpu.get("nr_periods"),
            throttled_periods=cpu.get("nr_throttled"),
            throttled_seconds=throttled_seconds,
        )


def _where_tightest(dirs: list[str], limit_at) -> str | None:
    """The directory with the smallest limit along the way, else the leaf (None: no such controller)."""
    best, best_value = (dirs[0] if dirs else None), None
    for directory in dirs:
        value = limit_at(directory)
        if value is not None and (best_value is None or value < best_value):
            best, best_value = directory, value
    return best
