"""Fake cgroup v1 and v2 trees (/proc/self/cgroup, the mount table, the controllers' files) under a test's
own directory, as asgi_launcher.cgroups reads them from a root it is given: the real v2 cannot exist
on this host. And the limits of a two-core machine without a quota or a memory limit."""

from __future__ import annotations

from pathlib import Path

from asgi_launcher.cgroups import Limits

from .files import write
from .units import MiB

TWO_CORES = Limits(affinity=2, cpu_quota=None, memory=None)

V1_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 {root} /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 {root} /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTS = "30 23 0:26 {root} /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def v1_tree(tmp: Path, quota: str | None = "-1", period: str = "100000", memory: str | None = None) -> Path:
    """Docker on cgroup v1 without a cgroup namespace: the mounts' root is the container's cgroup."""
    write(tmp / "proc/self/cgroup", "12:cpu,cpuacct:/docker/abc\n9:memory:/docker/abc\n0::/\n")
    write(tmp / "proc/self/mountinfo", V1_MOUNTS.format(root="/docker/abc"))
    if quota is not None:
        write(tmp / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", quota + "\n")
        write(tmp / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", period + "\n")
    if memory is not None:
        write(tmp / "sys/fs/cgroup/memory/memory.limit_in_bytes", memory + "\n")
    return tmp


def v2_tree(tmp: Path, cpu_max: str | None = "max 100000", memory_max: str | None = "max") -> Path:
    """cgroup v2 with a private cgroup namespace: the process sees itself at the root."""
    write(tmp / "proc/self/cgroup", "0::/\n")
    write(tmp / "proc/self/mountinfo", V2_MOUNTS.format(root="/"))
    if cpu_max is not None:
        write(tmp / "sys/fs/cgroup/cpu.max", cpu_max + "\n")
    if memory_max is not None:
        write(tmp / "sys/fs/cgroup/memory.max", memory_max + "\n")
    return tmp


def v1_usage_tree(tmp: Path) -> Path:
    """``v1_tree`` with --cpus 0.5 and --memory 300m, and the usage files: 120 MiB used (20 of them
    inactive file pages), 2.5 s of CPU, 11 of 40 periods throttled, 3 OOM kills."""
    write(tmp / "proc/self/cgroup", "12:cpu,cpuacct:/docker/abc\n9:memory:/docker/abc\n0::/\n")
    write(tmp / "proc/self/mountinfo", V1_MOUNTS.format(root="/docker/abc"))
    cpu, memory = tmp / "sys/fs/cgroup/cpu,cpuacct", tmp / "sys/fs/cgroup/memory"
    write(cpu / "cpu.cfs_quota_us", "50000\n")
    write(cpu / "cpu.cfs_period_us", "100000\n")
    write(cpu / "cpu.stat", "nr_periods 40\nnr_throttled 11\nthrottled_time 708569597\nnr_bursts 0\n")
    write(cpu / "cpuacct.usage", "2500000000\n")
    write(memory / "memory.limit_in_bytes", f"{300 * MiB}\n")
    write(memory / "memory.usage_in_bytes", f"{120 * MiB}\n")
    write(memory / "memory.stat", f"cache 1\ntotal_inactive_file {20 * MiB}\ninactive_file 5\n")
    write(memory / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    return tmp


def v2_usage_tree(tmp: Path, pod_limit: bool = False) -> Path:
    """Kubernetes-like, no cgroup namespace: the container's cgroup under its pod's."""
    write(tmp / "proc/self/cgroup", "0::/kubepods/pod1/ctr\n")
    write(tmp / "proc/self/mountinfo", V2_MOUNTS.format(root="/"))
    pod, ctr = tmp / "sys/fs/cgroup/kubepods/pod1", tmp / "sys/fs/cgroup/kubepods/pod1/ctr"
    write(ctr / "memory.max", "max\n")
    write(ctr / "cpu.max", "max 100000\n")
    write(pod / "memory.max", f"{256 * MiB}\n" if pod_limit else "max\n")
    write(pod / "cpu.max", "150000 100000\n" if pod_limit else "max 100000\n")
    for directory, scale in ((ctr, 1), (pod, 2)):  # the pod's figures include its other containers
        write(directory / "memory.current", f"{scale * 64 * MiB}\n")
        write(directory / "memory.stat", f"anon 1\ninactive_file {scale * 4 * MiB}\n")
        write(directory / "memory.events", f"low 0\nhigh 0\nmax 9\noom 2\noom_kill {scale}\n")
        write(
            directory / "cpu.stat",
            f"usage_usec {scale * 1500000}\nuser_usec 1\nsystem_usec 1\n"
            f"nr_periods {scale * 10}\nnr_throttled {scale * 4}\nthrottled_usec {scale * 250000}\n",
        )
    return tmp
