"""Operating it, as pure functions: cgroup usage from fake v1 and v2 trees (v2 cannot exist on this
host), why a worker left, healthcheck recognition, and the new settings' validation."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
from support.fakecgroups import TWO_CORES, v1_usage_tree, v2_usage_tree
from support.files import write
from support.units import MiB

from asgi_launcher.cgroups import Cgroup, Limits
from asgi_launcher.logs import apply_logging_conf, load_logging_config
from asgi_launcher.observe import is_probe
from asgi_launcher.recycling import REASONS, Lifecycle
from asgi_launcher.settings import ConfigError, Settings
from asgi_launcher.start import check_logging_conf

# ---- container usage from the cgroup's files ---------------------------------------------------------


def test_v1_usage(tmp_path):
    usage = Cgroup(v1_usage_tree(tmp_path)).usage()
    assert usage.memory == 120 * MiB
    assert usage.working_set == 100 * MiB  # total_inactive_file, the hierarchical figure
    assert usage.memory_limit == 300 * MiB
    assert usage.oom_kills == 3
    assert usage.cpu_seconds == 2.5
    assert usage.cpu_quota == 0.5
    assert (usage.periods, usage.throttled_periods) == (40, 11)
    assert usage.throttled_seconds == pytest.approx(0.708569597)


def test_v2_usage_of_the_container_without_limits(tmp_path):
    usage = Cgroup(v2_usage_tree(tmp_path)).usage()
    assert (usage.memory, usage.working_set, usage.memory_limit) == (64 * MiB, 60 * MiB, None)
    assert usage.oom_kills == 1
    assert (usage.cpu_seconds, usage.cpu_quota) == (1.5, None)
    assert (usage.periods, usage.throttled_periods, usage.throttled_seconds) == (10, 4, 0.25)


def test_v2_usage_where_the_pod_sets_the_limits(tmp_path):
    """The limit on an ancestor applies: usage, OOM kills and throttling are read where it is set."""
    usage = Cgroup(v2_usage_tree(tmp_path, pod_limit=True)).usage()
    assert (usage.memory, usage.memory_limit, usage.oom_kills) == (128 * MiB, 256 * MiB, 2)
    assert (usage.cpu_quota, usage.throttled_periods, usage.throttled_seconds) == (1.5, 8, 0.5)


def test_usage_without_cgroup_files_is_unknown_not_zero(tmp_path):
    write(tmp_path / "proc/self/cgroup", "")
    usage = Cgroup(tmp_path).usage()
    assert set(usage) == {None}


# ---- why a worker left -----------------------------------------------------------------------------


def server(max_requests=0, stopping=False, workers=()):
    return SimpleNamespace(
        cfg=SimpleNamespace(max_requests=max_requests),
        LISTENERS=[] if stopping else ["a socket"],
        WORKERS={w.pid: w for w in workers},
    )


def worker(pid=None, aborted=False, slot=None):
    w = SimpleNamespace(pid=pid or os.getpid(), aborted=aborted)
    if slot is not None:
        w.slot = slot
    return w


def said(lifecycle: Lifecycle, status: int | None) -> None:
    """What the worker's exit hook writes to the pipe (here from this process: pid = ours)."""
    if status is not None:
        lifecycle.tell("exit", status)


@pytest.mark.parametrize(
    ("status", "max_requests", "aborted", "memory", "reload", "stopping", "reason"),
    [
        (0, 100, False, False, False, False, "max_requests"),
        (0, 0, False, False, False, False, "other"),  # e.g. kill -TERM by hand, SIGTTOU
        (None, 0, False, False, False, False, "crash"),  # kill -9, the OOM killer: no word
        (1, 0, False, False, False, False, "crash"),  # BOOT_TIMEOUT, an exception
        (None, 0, True, False, False, False, "timeout"),
        (0, 100, False, True, False, False, "memory"),
        (0, 100, False, False, True, False, "reload"),
        (0, 100, False, False, False, True, None),  # the master's own shutdown: not a recycle
        (0, 100, False, True, False, True, "memory"),  # asked to leave before the shutdown
    ],
)
def test_exit_reasons(status, max_requests, aborted, memory, reload, stopping, reason):
    lifecycle = Lifecycle()
    w = worker(aborted=aborted)
    if memory:
        lifecycle.memory_pids.add(w.pid)
    if reload:
        lifecycle.on_reload(server(workers=[w]))
    said(lifecycle, status)
    assert lifecycle.exited(server(max_requests, stopping), w) == reason
    counted = {r: n for r, n in lifecycle.recycles.items() if n}
    assert counted == ({reason: 1} if reason else {})
    assert set(lifecycle.recycles) == set(REASONS)
    assert (lifecycle.memory_pids, lifecycle.reload_pids, lifecycle.exit_codes) == (set(), set(), {})


def test_boot_reports_and_partial_lines_are_read(tmp_path):
    lifecycle = Lifecycle()
    lifecycle.worker_booted()
    lifecycle.drain()
    assert lifecycle.booted[os.getpid()] > 10 * MiB  # this process's PSS
    os.write(lifecycle._write_fd, b"exit 42 ")
    lifecycle.drain()
    assert 42 not in lifecycle.exit_codes  # half a line waits for the rest
    os.write(lifecycle._write_fd, b"0\ngarbage\n")
    lifecycle.drain()
    assert lifecycle.exit_codes[42] == 0


def test_slots_are_the_lowest_free_numbers():
    lifecycle = Lifecycle()
    live = [worker(pid=1, slot=0), worker(pid=2, slot=2)]
    new = worker(pid=3)
    lifecycle.assign_slot(server(workers=live), new)
    assert new.slot == 1
    newer = worker(pid=4)
    lifecycle.assign_slot(server(workers=[*live, new]), newer)
    assert newer.slot == 3


# ---- MAX_WORKER_MEMORY: the worker's own check, and the guard ----------------------------------------


class Counted:
    def __init__(self, result=None):
        self.calls = 0
        self.result = result

    def __call__(self, *args):
        self.calls += 1
        return self.result() if callable(self.result) else self.result


def own_size() -> tuple[int, int]:
    from asgi_launcher import resources

    return resources.resident(os.getpid()), resources.proportional(os.getpid())


def test_a_worker_past_the_limit_retires_and_tells_the_master():
    """This process's real RSS and PSS, against a limit below them; the control, a limit above them,
    neither retires nor reads PSS (about 1 ms) at all."""
    from asgi_launcher import recycling
    from asgi_launcher.recycling import OwnMemoryCheck

    rss, pss = own_size()
    lifecycle, retire = Lifecycle(), Counted()
    check = OwnMemoryCheck(lifecycle, pss // 2, retire)
    check()
    lifecycle.drain()
    assert retire.calls == 1
    assert pss // 2 < lifecycle.over[os.getpid()] < rss + 64 * MiB

    above, reads = Lifecycle(), Counted(lambda: pss)
    original, recycling.resources.proportional = recycling.resources.proportional, reads
    try:
        check = OwnMemoryCheck(above, rss + 512 * MiB, retire)
        check()
    finally:
        recycling.resources.proportional = original
    above.drain()
    assert (retire.calls, reads.calls, above.over) == (1, 0, {})


def test_pss_is_read_only_when_rss_less_the_shared_pages_passes_the_limit(monkeypatch):
    """RSS counts the pages shared with the master in full, PSS in part: their difference, learnt at
    one PSS read, keeps later checks on RSS alone until the estimate passes the limit again."""
    from asgi_launcher import recycling
    from asgi_launcher.recycling import OwnMemoryCheck

    rss, _ = own_size()
    reads = Counted(lambda: rss - 50 * MiB)  # 50 MiB shared
    monkeypatch.setattr(recycling.resources, "proportional", reads)
    retire = Counted()
    check = OwnMemoryCheck(Lifecycle(), rss - 20 * MiB, retire)
    check()
    assert (reads.calls, retire.calls) == (1, 0)  # RSS is past, PSS is not
    check()
    assert reads.calls == 1  # within the interval: not even RSS is read
    check._next = 0
    check()
    assert (reads.calls, retire.calls) == (1, 0)  # past the interval, RSS less 50 MiB is below
    reads.result = lambda: rss  # the leak grew private pages: nothing shared any more
    check._shared = 0
    check._next = 0
    check()
    assert (reads.calls, retire.calls) == (2, 1)


def test_a_worker_too_big_at_boot_does_not_retire():
    """The master refuses a limit below the boot size (and says so): the worker must not stop taking
    work for a replacement that will not come."""
    from asgi_launcher.recycling import OwnMemoryCheck

    _, pss = own_size()
    lifecycle, retire = Lifecycle(), Counted()
    lifecycle.boot_usage = pss
    OwnMemoryCheck(lifecycle, pss // 2, retire)()
    assert retire.calls == 0


@pytest.mark.parametrize("retired", [True, False])
def test_the_guard_replaces_a_retired_worker_whatever_it_measures(retired):
    """A worker that retired takes no work: the guard must replace it even when its own reading is under
    the limit (shared pages re-divided, memory freed), or it would idle for good. The control: the same
    worker, not retired, is left alone."""
    import subprocess

    from asgi_launcher.recycling import MemoryGuard

    child = subprocess.Popen(["sleep", "60"])
    try:
        lifecycle = Lifecycle()
        lifecycle.booted[child.pid] = 1 * MiB
        if retired:
            lifecycle.over[child.pid] = 95 * MiB
        warnings = []
        log = SimpleNamespace(warning=lambda *args: warnings.append(args[0] % args[1:]))
        srv = SimpleNamespace(WORKERS={child.pid: worker(pid=child.pid, slot=0)}, num_workers=1, log=log)
        MemoryGuard(srv, lifecycle, 90 * MiB).check()  # sleep's own memory: far below 90 MiB
        if retired:
            assert child.wait(10) == -15
            assert "uses 95.0 MiB" in warnings[0]
            assert lifecycle.memory_pids == {child.pid}
            assert lifecycle.over == {}
        else:
            assert child.poll() is None
            assert warnings == []
    finally:
        child.kill()
        child.wait()


def test_a_worker_too_big_at_boot_is_left_alone_and_the_others_still_recycled():
    """A limit below one worker's boot size is said once and that worker left alone (replacing it would
    loop); the guard goes on for the others: a retired one is still replaced."""
    import subprocess

    from asgi_launcher.recycling import MemoryGuard

    big, retired = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])
    try:
        lifecycle = Lifecycle()
        lifecycle.booted.update({big.pid: 120 * MiB, retired.pid: 40 * MiB})
        lifecycle.over[retired.pid] = 95 * MiB
        said = []
        log = SimpleNamespace(
            warning=lambda *args: said.append(("warning", args[0] % args[1:])),
            error=lambda *args: said.append(("error", args[0] % args[1:])),
        )
        workers = {big.pid: worker(pid=big.pid, slot=0), retired.pid: worker(pid=retired.pid, slot=1)}
        guard = MemoryGuard(SimpleNamespace(WORKERS=workers, num_workers=2, log=log), lifecycle, 90 * MiB)
        guard.check()
        assert retired.wait(10) == -15
        assert big.poll() is None
        lifecycle.memory_pids.clear()  # as if the retired one had left and been replaced
        guard.check()
        assert [kind for kind, _ in said] == ["error", "warning"], said  # the refusal said once
        assert "below what a worker needs to boot" in said[0][1]
    finally:
        for child in (big, retired):
            child.kill()
            child.wait()


# ---- the image's healthcheck, recognised --------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "agent", "probe"),
    [
        (("127.0.0.1", 5000), b"asgi-server-healthcheck", True),
        (("::1", 5000), b"asgi-server-healthcheck", True),
        (("172.17.0.1", 5000), b"asgi-server-healthcheck", False),  # from outside: an impostor
        (("127.0.0.1", 5000), b"curl/8", False),
        (("127.0.0.1", 5000), None, False),
        (None, b"asgi-server-healthcheck", False),  # a Unix socket
    ],
)
def test_is_probe(client, agent, probe):
    headers = [(b"host", b"localhost")] + ([(b"user-agent", agent)] if agent else [])
    assert is_probe({"type": "http", "client": client, "headers": headers}) is probe


# ---- the new settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MAX_WORKER_MEMORY": "20M"},
            "MAX_WORKER_MEMORY='20M' is not valid: expected a size of at least 30M",
        ),
        ({"MAX_WORKER_MEMORY": "lots"}, "MAX_WORKER_MEMORY='lots' is not valid: expected a size in bytes"),
        (
            {"MAX_WORKER_MEMORY": "300M", "PROCESS_MANAGER": "uvicorn"},
            "MAX_WORKER_MEMORY='300M' is not valid: expected it unset with PROCESS_MANAGER=uvicorn",
        ),
        ({"ROOT_PATH": "api"}, "ROOT_PATH='api' is not valid: expected a path starting with /"),
        ({"ROOT_PATH": "/a b"}, "ROOT_PATH='/a b' is not valid"),
        ({"ACCESS_LOG_PROBES": "sometimes"}, "ACCESS_LOG_PROBES='sometimes' is not valid"),
        ({"LOGGING_CONF": "/nowhere.json"}, "LOGGING_CONF='/nowhere.json' is not valid: expected a .json"),
        ({"LOGGING_CONF": "my-logging"}, "LOGGING_CONF='my-logging' is not valid"),
    ],
)
def test_bad_values_are_one_line(env, message):
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env, TWO_CORES)
    assert str(error.value).startswith(message), error.value
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "detail"),
    [("{not json", "not JSON"), ('{"handlers": {}}', '"version": 1'), ("[1]", '"version": 1')],
)
def test_a_logging_conf_json_file_is_checked_before_the_start(tmp_path, text, detail):
    path = write(tmp_path / "logging.json", text)
    with pytest.raises(ConfigError, match="LOGGING_CONF=") as error:
        Settings.from_env({"LOGGING_CONF": str(path)}, TWO_CORES)
    assert detail in str(error.value)


def test_good_values():
    settings = Settings.from_env(
        {"MAX_WORKER_MEMORY": "1.5G", "ROOT_PATH": "/api/v1/", "ACCESS_LOG_PROBES": "yes"}, TWO_CORES
    )
    assert (settings.max_worker_memory, settings.root_path, settings.access_log_probes) == (
        1536 * MiB,
        "/api/v1",
        True,
    )
    line = json.loads(settings.startup_line())
    assert (line["max_worker_memory"], line["root_path"]) == (1536 * MiB, "/api/v1")
    assert settings.warnings == []


def test_worker_memory_that_cannot_fit_the_container_warns():
    limits = Limits(affinity=2, cpu_quota=None, memory=256 * MiB)
    warned = Settings.from_env({"MAX_WORKER_MEMORY": "200M", "WEB_CONCURRENCY": "2"}, limits).warnings
    assert warned == [
        "MAX_WORKER_MEMORY=200M times 2 workers is 400 MiB, not below the container's memory limit "
        "(256 MiB): the kernel may kill a worker before it is recycled; lower it below 128 MiB or run "
        "fewer workers"
    ]
    assert Settings.from_env({"MAX_WORKER_MEMORY": "100M", "WEB_CONCURRENCY": "2"}, limits).warnings == []


def test_a_logging_conf_module_must_be_importable(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="module 'nowhere_logging' cannot be imported"):
        check_logging_conf("nowhere_logging")
    write(tmp_path / "mylogging.py", "LOGGING_CONFIG = {'version': 1}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    check_logging_conf("mylogging")
    assert load_logging_config("mylogging") == {"version": 1}


def test_logging_conf_from_a_python_file_and_its_errors(tmp_path):
    good = write(tmp_path / "conf.py", "LOGGING_CONFIG = {'version': 1, 'root': {'level': 'INFO'}}\n")
    assert load_logging_config(str(good))["root"] == {"level": "INFO"}
    none = write(tmp_path / "none.py", "CONFIG = {}\n")
    with pytest.raises(ConfigError, match=r"could not be applied: ValueError: it defines no LOGGING_CONFIG"):
        apply_logging_conf(str(none))
