"""Operating it in the real container: resource metrics against the cgroup's files and /proc, CPU
throttling under --cpus 0.5, and a leaking app under a memory limit, with and without MAX_WORKER_MEMORY."""

from __future__ import annotations

import time

import psutil
from support.clients import Load, record
from support.dockerutil import HARDENED, docker
from support.metrics import scrape, value
from support.proc import wait_for
from support.units import MiB

CGROUP = "/sys/fs/cgroup"  # cgroup v1 on these hosts (v2: the unit tests' fake trees)


def cgroup_file(container, path: str) -> str:
    return docker("exec", container.name, "cat", f"{CGROUP}/{path}").stdout


def fields(text: str) -> dict[str, int]:
    return {key: int(number) for key, number in (line.split() for line in text.splitlines())}


def test_resource_metrics_match_the_cgroup_and_proc_and_show_throttling(ops_image, run_container):
    c = run_container(
        ops_image,
        args=[*HARDENED, "--cpus", "0.5", "--memory", "300m", "--memory-swap", "300m"],
        env={"WEB_CONCURRENCY": "2"},
        also_publish=[9100],
    )
    c.wait_ready()
    workers = c.wait_workers(2)
    processes = [psutil.Process(w["pid"]) for w in workers]  # the engine reports the host's pids

    def truth() -> tuple[int, list[int], list[int]]:
        info = [p.memory_full_info() for p in processes]
        usage = int(cgroup_file(c, "memory/memory.usage_in_bytes"))
        return usage, sorted(i.rss for i in info), sorted(i.pss for i in info)

    before = truth()
    samples = scrape(c)
    after = truth()

    def within(got: float, low: float, high: float, slack: float) -> bool:
        return min(low, high) * (1 - slack) <= got <= max(low, high) * (1 + slack)

    usage = value(samples, "asgi_container_memory_usage_bytes")
    assert within(usage, before[0], after[0], 0.03), (before[0], usage, after[0])
    assert value(samples, "asgi_container_memory_working_set_bytes") <= usage
    assert value(samples, "asgi_container_memory_limit_bytes") == 300 * MiB
    assert value(samples, "asgi_container_cpu_quota_cores") == 0.5
    assert value(samples, "asgi_container_oom_kills_total") == 0
    # Each worker's memory against the host's /proc, read just before and just after the scrape.
    for name, index, slack in (
        ("asgi_worker_resident_memory_bytes", 1, 0.03),
        ("asgi_worker_proportional_memory_bytes", 2, 0.05),  # PSS moves as siblings touch pages
    ):
        measured = sorted(v for (sample, _), v in samples.items() if sample == name)
        assert len(measured) == 2, samples
        for got, low, high in zip(measured, before[index], after[index], strict=True):
            assert within(got, low, high, slack), (name, measured, before[index], after[index])

    # Throttling: a CPU-bound load in a container allowed half a CPU.
    throttled_before = value(scrape(c), "asgi_container_cpu_throttled_seconds_total")
    with Load(c.url, path="/spin?ms=20", clients=4, max_seconds=20) as load:
        wait_for(
            lambda: value(scrape(c), "asgi_container_cpu_throttled_seconds_total") > throttled_before + 0.5,
            15,
            "half a second more of throttled time",
        )
    assert load.outcome.failed == 0
    stat_before = fields(cgroup_file(c, "cpu/cpu.stat"))
    samples = scrape(c)
    stat_after = fields(cgroup_file(c, "cpu/cpu.stat"))
    throttled = value(samples, "asgi_container_cpu_throttled_seconds_total")
    assert stat_before["throttled_time"] / 1e9 <= throttled <= stat_after["throttled_time"] / 1e9
    periods = value(samples, "asgi_container_cpu_throttled_periods_total")
    assert stat_before["nr_throttled"] <= periods <= stat_after["nr_throttled"]
    assert periods > 0


LEAK = "/leak?kib=256&pause=0.02"
LIMIT = "300m"


def memory_recycles(samples) -> float:
    return value(samples, "gunicorn_worker_recycles_total", reason="memory")


def oom_kills(container) -> int:
    return fields(cgroup_file(container, "memory/memory.oom_control"))["oom_kill"]


def leak_run(ops_image, run_container, env: dict):
    return run_container(
        ops_image,
        args=[*HARDENED, "--memory", LIMIT, "--memory-swap", LIMIT],
        env={"WEB_CONCURRENCY": "2", **env},
        also_publish=[9100],
    )


def test_a_leak_under_max_worker_memory_recycles_workers_and_no_oom_kill(ops_image, run_container):
    c = leak_run(ops_image, run_container, {"MAX_WORKER_MEMORY": "80M"})
    c.wait_ready()
    c.wait_workers(2)
    requests = 1600  # 400 MiB leaked in all, 1.3 times the container's limit
    with Load(c.url, path=LEAK, clients=2, max_seconds=120, max_requests=requests // 2) as load:
        load.wait_requests(requests, timeout=120)
    samples = scrape(c)
    recycled = memory_recycles(samples)
    lines = c.logs().count("above MAX_WORKER_MEMORY=80.0 MiB: replacing it gracefully")
    peak = int(cgroup_file(c, "memory/memory.max_usage_in_bytes"))
    record(
        "a leak (256 KiB per request) under --memory 300m, MAX_WORKER_MEMORY=80M (container)",
        load="2 keep-alive clients",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
        recycled=recycled,
        peak_mib=round(peak / MiB, 1),
        limit_mib=300,
        oom_kills=oom_kills(c),
    )
    assert load.outcome.failed == 0, load.outcome.errors[:5]
    assert recycled >= 4
    assert recycled == lines, c.logs()
    assert oom_kills(c) == 0
    assert value(samples, "asgi_container_oom_kills_total") == 0
    assert value(samples, "gunicorn_worker_recycles_total", reason="crash") == 0
    assert peak < 300 * MiB
    assert c.running()


def test_a_fast_leak_from_the_first_request_is_replaced_before_the_kernel_kills(ops_image, run_container):
    """Unthrottled, from the first request on: 512 KiB per request as fast as one keep-alive client can
    ask, tens of MiB/s. The check after each request (in the worker) wakes the master at once: the
    leaking worker is replaced gracefully, before the cgroup's limit is reached."""
    c = leak_run(ops_image, run_container, {"MAX_WORKER_MEMORY": "90M"})
    c.wait_ready()
    c.wait_workers(2)
    requests = 1500  # 750 MiB leaked in all, 2.5 times the container's limit
    started = time.monotonic()
    with Load(c.url, path="/leak?kib=512&pause=0", clients=1, max_seconds=120, max_requests=requests) as load:
        load.wait_requests(requests, timeout=120)
    seconds = time.monotonic() - started
    samples = scrape(c)
    recycled = memory_recycles(samples)
    peak = int(cgroup_file(c, "memory/memory.max_usage_in_bytes"))
    record(
        "a fast leak (512 KiB per request, unthrottled), --memory 300m, MAX_WORKER_MEMORY=90M (container)",
        load="1 keep-alive client",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
        leak_mib_per_s=round(load.outcome.ok * 0.5 / seconds, 1),
        recycled=recycled,
        peak_mib=round(peak / MiB, 1),
        limit_mib=300,
        oom_kills=oom_kills(c),
    )
    assert oom_kills(c) == 0, c.logs()[-3000:]
    assert load.outcome.failed == 0, load.outcome.errors[:5]
    assert recycled >= 3
    assert value(samples, "gunicorn_worker_recycles_total", reason="crash") == 0
    assert c.running()


def test_the_same_leak_without_it_ends_in_an_oom_kill(ops_image, run_container):
    """The contrast: no MAX_WORKER_MEMORY, the same load; the kernel kills a worker mid-request."""
    c = leak_run(ops_image, run_container, {})
    c.wait_ready()
    c.wait_workers(2)
    with Load(c.url, path=LEAK, clients=2, max_seconds=120, max_requests=800) as load:
        wait_for(lambda: oom_kills(c) >= 1, 100, "an OOM kill")
    samples = wait_for(
        lambda: (s := scrape(c)) and value(s, "asgi_container_oom_kills_total") >= 1 and s, 10, "it counted"
    )
    record(
        "the same leak without MAX_WORKER_MEMORY (container)",
        load="2 keep-alive clients",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
        oom_kills=oom_kills(c),
    )
    assert value(samples, "gunicorn_worker_recycles_total", reason="crash") >= 1
    assert memory_recycles(samples) == 0
    assert "Perhaps out of memory?" in c.logs()
