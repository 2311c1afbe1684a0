"""Container limits read from fake cgroup v1, v2 and hybrid trees (support/fakecgroups.py: the real v2
cannot exist on this host)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.fakecgroups import V1_MOUNTS, V2_MOUNTS, v1_tree, v2_tree
from support.files import write

from asgi_launcher.cgroups import Limits, cgroup_dirs, parse_mountinfo, parse_proc_cgroup, read_limits


@pytest.mark.parametrize(
    ("quota", "affinity", "cpu_quota", "cores"),
    [
        ("50000", 2, 0.5, 1),  # --cpus 0.5: fractional quota rounds up to one core
        ("100000", 2, 1.0, 1),  # quota below the affinity count
        ("200000", 2, 2.0, 2),  # equal
        ("400000", 2, 4.0, 2),  # above: affinity caps it
        ("150000", 8, 1.5, 2),
        ("-1", 2, None, 2),  # no quota
        ("-1", 1, None, 1),  # cpuset of one CPU, no quota
    ],
)
def test_v1_cpu_quota(tmp_path, quota, affinity, cpu_quota, cores):
    limits = read_limits(v1_tree(tmp_path, quota=quota), affinity=affinity)
    assert limits.cpu_quota == cpu_quota
    assert limits.cores == cores


def test_v1_quota_uses_the_period(tmp_path):
    limits = read_limits(v1_tree(tmp_path, quota="25000", period="10000"), affinity=8)
    assert limits.cpu_quota == 2.5
    assert limits.cores == 3


@pytest.mark.parametrize(
    ("memory", "expected"),
    [("314572800", 314572800), ("9223372036854771712", None), ("garbage", None)],
)
def test_v1_memory_limit(tmp_path, memory, expected):
    assert read_limits(v1_tree(tmp_path, memory=memory), affinity=2).memory == expected


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "cpu_quota", "cores"),
    [
        ("50000 100000", 4, 0.5, 1),
        ("150000 100000", 4, 1.5, 2),
        ("200000 100000", 2, 2.0, 2),
        ("800000 100000", 2, 8.0, 2),
        ("max 100000", 4, None, 4),
    ],
)
def test_v2_cpu_max(tmp_path, cpu_max, affinity, cpu_quota, cores):
    limits = read_limits(v2_tree(tmp_path, cpu_max=cpu_max), affinity=affinity)
    assert (limits.cpu_quota, limits.cores) == (cpu_quota, cores)


@pytest.mark.parametrize(("memory_max", "expected"), [("536870912", 536870912), ("max", None)])
def test_v2_memory_max(tmp_path, memory_max, expected):
    assert read_limits(v2_tree(tmp_path, memory_max=memory_max), affinity=2).memory == expected


def test_v2_limit_on_an_ancestor_applies(tmp_path):
    """A Kubernetes pod-level limit sits on the parent of the container's cgroup."""
    write(tmp_path / "proc/self/cgroup", "0::/kubepods/pod1/ctr\n")
    write(tmp_path / "proc/self/mountinfo", V2_MOUNTS.format(root="/"))
    write(tmp_path / "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n")
    write(tmp_path / "sys/fs/cgroup/kubepods/pod1/cpu.max", "100000 100000\n")
    write(tmp_path / "sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "1073741824\n")
    write(tmp_path / "sys/fs/cgroup/kubepods/pod1/memory.max", "268435456\n")
    limits = read_limits(tmp_path, affinity=16)
    assert limits == Limits(affinity=16, cpu_quota=1.0, memory=268435456)
    assert limits.cores == 1


def test_v2_found_through_mountinfo_not_a_fixed_path(tmp_path):
    write(tmp_path / "proc/self/cgroup", "0::/user.slice/app\n")
    write(tmp_path / "proc/self/mountinfo", "30 23 0:26 / /custom/cg rw - cgroup2 none rw\n")
    write(tmp_path / "custom/cg/user.slice/app/cpu.max", "300000 100000\n")
    assert read_limits(tmp_path, affinity=8).cpu_quota == 3.0


def test_hybrid_host_prefers_the_v1_controller(tmp_path):
    """systemd hybrid mode: v2 is mounted too but carries no controllers; v1 holds the quota."""
    v1_tree(tmp_path, quota="100000", memory="104857600")
    write(tmp_path / "sys/fs/cgroup/unified/cgroup.procs", "1\n")
    assert read_limits(tmp_path, affinity=2) == Limits(affinity=2, cpu_quota=1.0, memory=104857600)


def test_v1_with_a_cgroup_namespace(tmp_path):
    write(tmp_path / "proc/self/cgroup", "4:cpu,cpuacct:/\n3:memory:/\n")
    write(tmp_path / "proc/self/mountinfo", V1_MOUNTS.format(root="/"))
    write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "50000\n")
    write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert read_limits(tmp_path, affinity=2).cpu_quota == 0.5


def test_no_cgroups_at_all_means_no_limits(tmp_path):
    assert read_limits(tmp_path, affinity=3) == Limits(affinity=3, cpu_quota=None, memory=None)


def test_unreadable_or_malformed_files_mean_no_limit(tmp_path):
    v2_tree(tmp_path, cpu_max="garbage", memory_max="")
    assert read_limits(tmp_path, affinity=2) == Limits(affinity=2, cpu_quota=None, memory=None)


def test_parse_proc_cgroup():
    parsed = parse_proc_cgroup("12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n1:name=systemd:/s\n0::/u\n")
    assert parsed["cpu"] == parsed["cpuacct"] == parsed["memory"] == "/docker/x"
    assert parsed[""] == "/u"


def test_parse_mountinfo_unescapes_and_skips_optional_fields():
    (mount,) = parse_mountinfo(
        r"40 31 0:37 /a\040b /sys/fs/cgroup/cpu rw shared:9 master:2 - cgroup cg rw,cpu"
    )
    assert (mount.root, mount.point, mount.fstype) == ("/a b", "/sys/fs/cgroup/cpu", "cgroup")
    assert "cpu" in mount.super_options


# ---- the real host ---------------------------------------------------------------------------------

READ_LIMITS = "from asgi_launcher.cgroups import read_limits; print(read_limits().affinity)"


def affinity_read_under(cpus: set[int]) -> int:
    """``read_limits().affinity`` in a new process that the scheduler keeps to ``cpus``."""
    result = subprocess.run(
        [sys.executable, "-c", READ_LIMITS],
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


def test_real_host_affinity_is_the_schedulers():
    allowed = os.sched_getaffinity(0)
    assert affinity_read_under(allowed) == len(allowed)
    assert affinity_read_under({min(allowed)}) == 1  # not the machine's CPU count (os.cpu_count())


@pytest.mark.parametrize("controller", ["cpu", "memory"])
def test_real_host_cgroup_is_found_through_its_own_files(controller):
    """The real /proc/self/cgroup and mount table lead to the directory of this very process's cgroup
    (v1 or v2, whichever this host has): a misreading of a real kernel's lines would lead elsewhere."""
    proc_cgroup = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    directories = cgroup_dirs(controller, proc_cgroup, mounts)
    assert directories, (proc_cgroup, mounts)
    members = (Path(directories[0]) / "cgroup.procs").read_text().split()
    assert str(os.getpid()) in members, directories
