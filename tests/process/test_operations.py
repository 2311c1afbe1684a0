"""Operating it, on real processes: resource metrics, recycling and MAX_WORKER_MEMORY, quiet probes,
LOGGING_CONF and ROOT_PATH."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from support.clients import Load, record
from support.files import write
from support.logs import access_entries, json_entries
from support.metrics import scrape, total
from support.proc import REPO, wait_for
from support.units import MiB

HEALTHCHECK = REPO / "scripts" / "healthcheck.sh"
LAG = "asgi_worker_event_loop_lag_seconds"


def booted(server) -> int:
    return server.output.count("Application startup complete")


def metrics_up(server) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def fresh_get(url: str, **kwargs) -> httpx.Response:
    with httpx.Client(timeout=30) as client:  # a connection per request: spread over the workers
        return client.get(url, **kwargs)


def doomed_get(url: str) -> None:
    """A request whose worker will be killed under it: the error is the point."""
    with contextlib.suppress(httpx.HTTPError):
        fresh_get(url)


# ---- the in-flight gauge of a fresh worker -------------------------------------------------------------


def test_in_flight_gauge_counts_a_fresh_worker_before_any_request_finishes(ops_app, launch):
    """Slow requests on a worker that has finished none: fresh, after kill -9, after SIGHUP."""
    server = launch(ops_app, WEB_CONCURRENCY="1")
    wait_for(lambda: booted(server) == 1 and metrics_up(server), 30, "the worker and the metrics")

    def in_flight_while_slow(phase: str) -> None:
        threads = [
            threading.Thread(target=fresh_get, args=(server.url + "/slow?seconds=3",)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        try:
            wait_for(
                lambda: total(scrape(server), "http_requests_in_progress", method="GET") == 4,
                2.5,
                f"4 requests in progress ({phase})",
            )
        finally:
            for thread in threads:
                thread.join(15)

    in_flight_while_slow("fresh worker")
    victim = server.workers()[0]
    victim.send_signal(signal.SIGKILL)
    wait_for(lambda: booted(server) == 2, 30, "a replacement after kill -9")
    in_flight_while_slow("after kill -9")
    server.signal(signal.SIGHUP)
    wait_for(lambda: booted(server) == 3 and len(server.workers()) == 1, 30, "a new worker after SIGHUP")
    in_flight_while_slow("after SIGHUP")


# ---- resource metrics -------------------------------------------------------------------------------


def by_worker(samples, name: str) -> dict[str, float]:
    return {dict(labels)["worker"]: value for (sample, labels), value in samples.items() if sample == name}


def test_worker_memory_and_cpu_match_proc(ops_app, launch):
    server = launch(ops_app, WEB_CONCURRENCY="2")
    server.wait_ready()
    server.wait_workers(2)
    for i in range(40):
        fresh_get(f"{server.url}/items/{i}")
    workers = server.workers()
    truth = [(w.memory_full_info(), w.cpu_times()) for w in workers]
    samples = scrape(server)
    after = [(w.memory_full_info(), w.cpu_times()) for w in workers]
    rss = by_worker(samples, "asgi_worker_resident_memory_bytes")
    pss = by_worker(samples, "asgi_worker_proportional_memory_bytes")
    cpu = by_worker(samples, "asgi_worker_cpu_seconds_total")
    assert sorted(rss) == sorted(pss) == sorted(cpu) == ["0", "1"]  # slots, not pids

    def close(measured: list[float], low: list[float], high: list[float], slack: float) -> bool:
        return all(
            lo * (1 - slack) <= value <= hi * (1 + slack)
            for value, lo, hi in zip(sorted(measured), sorted(low), sorted(high), strict=True)
        )

    assert close(list(rss.values()), [m.rss for m, _ in truth], [m.rss for m, _ in after], 0.03), (rss, truth)
    assert close(list(pss.values()), [m.pss for m, _ in truth], [m.pss for m, _ in after], 0.03), (pss, truth)
    cpu_truth = [c.user + c.system for _, c in truth]
    cpu_after = [c.user + c.system for _, c in after]
    assert all(
        lo - 0.02 <= value <= hi + 0.02
        for value, lo, hi in zip(sorted(cpu.values()), sorted(cpu_truth), sorted(cpu_after), strict=True)
    ), (cpu, cpu_truth)
    assert total(samples, "process_resident_memory_bytes") > 0  # the master's own


def test_event_loop_lag_shows_a_blocked_loop(ops_app, launch):
    server = launch(ops_app, WEB_CONCURRENCY="1")
    server.wait_ready()
    wait_for(lambda: by_worker(scrape(server), "asgi_worker_event_loop_lag_seconds"), 5, "a lag sample")
    assert max(by_worker(scrape(server), "asgi_worker_event_loop_lag_seconds").values()) < 0.5
    assert fresh_get(server.url + "/block?seconds=1.5").status_code == 200
    lag = wait_for(
        lambda: (v := by_worker(scrape(server), LAG)) and v["0"] >= 1.4 and v,
        5,
        "the blocked second and a half to show",
    )
    assert lag["0"] < 3


# ---- recycling: reasons and MAX_WORKER_MEMORY --------------------------------------------------------


def recycles(server) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in scrape(server).items()
        if name == "gunicorn_worker_recycles_total"
    }


def test_each_recycle_is_counted_with_its_reason(ops_app, launch):
    server = launch(ops_app, WEB_CONCURRENCY="2", MAX_REQUESTS="25", TIMEOUT="2")
    server.wait_ready()
    server.wait_workers(2)
    assert set(recycles(server).values()) == {0}
    for i in range(70):  # 2 workers of 25 requests each: at least 2 leave after MAX_REQUESTS
        assert fresh_get(f"{server.url}/items/{i}").status_code == 200
    limits = lambda: server.output.count("Maximum request limit of")  # noqa: E731
    wait_for(lambda: recycles(server)["max_requests"] == limits() >= 2, 20, "max_requests recycles")
    server.wait_workers(2)

    server.workers()[0].send_signal(signal.SIGKILL)
    wait_for(lambda: recycles(server)["crash"] == 1, 20, "a crash")
    server.wait_workers(2)

    blocked = threading.Thread(target=doomed_get, args=(server.url + "/block?seconds=8",))
    blocked.start()
    wait_for(lambda: recycles(server)["timeout"] == 1, 20, "a timeout")
    blocked.join(20)
    server.wait_workers(2)

    before = booted(server)
    server.signal(signal.SIGHUP)
    wait_for(lambda: booted(server) >= before + 2 and len(server.workers()) == 2, 30, "the reload")
    counted = wait_for(lambda: (r := recycles(server))["reload"] == 2 and r, 20, "2 reload recycles")
    assert counted["memory"] == counted["other"] == 0
    assert (counted["crash"], counted["timeout"]) == (1, 1)
    assert counted["max_requests"] == limits()


def memory_lines(output: str) -> list[re.Match]:
    return list(
        re.finditer(
            r"Worker (\d+) \(pid:(\d+)\) uses ([\d.]+) MiB \((PSS|RSS); ([\d.]+) MiB when it began "
            r"serving\), above MAX_WORKER_MEMORY=([\d.]+) MiB: replacing it gracefully",
            output,
        )
    )


def test_a_leaking_worker_is_replaced_one_at_a_time_without_losing_a_request(ops_app, launch):
    server = launch(ops_app, WEB_CONCURRENCY="2", MAX_WORKER_MEMORY="100M")
    server.wait_ready()
    server.wait_workers(2)
    # Slow requests too: a recycled worker takes a while to finish them, and must not be asked twice.
    with (
        Load(server.url, path="/leak?kib=256&pause=0.02", clients=2, max_seconds=60) as load,
        Load(server.url, path="/slow?seconds=1.5", clients=2, max_seconds=60, keepalive=False) as slow,
    ):
        wait_for(lambda: recycles(server)["memory"] >= 3, 50, "3 workers replaced for memory")
    assert load.outcome.failed == slow.outcome.failed == 0, load.outcome.errors[:5] + slow.outcome.errors[:5]
    wait_for(lambda: recycles(server)["memory"] == len(memory_lines(server.output)), 10, "counter = lines")
    lines = memory_lines(server.output)
    pids = [line.group(2) for line in lines]
    assert len(set(pids)) == len(pids), pids  # each asked once
    for line in lines:
        slot, _pid, size, kind, boot, limit = line.groups()
        assert slot in {"0", "1"}
        assert (kind, limit) == ("PSS", "100.0")
        assert 100 < float(size) < 100 + 60, line.group()  # a check each second: a bounded overshoot
        assert float(boot) < 100
    # One at a time: a replacement booted between any two recycles.
    for first, second in itertools.pairwise(lines):
        assert "Booting worker with pid" in server.output[first.end() : second.start()]
    record(
        "MAX_WORKER_MEMORY=100M, a worker leaking 256 KiB per request (process)",
        load="2 keep-alive clients",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
        recycled=len(lines),
    )


def test_a_limit_below_a_booted_worker_is_refused_not_looped(ops_app, launch):
    server = launch(ops_app, WEB_CONCURRENCY="1", MAX_WORKER_MEMORY="60M", OPS_BALLAST_MIB="80")
    server.wait_ready()
    line = wait_for(
        lambda: re.search(  # one line
            r"MAX_WORKER_MEMORY=60.0 MiB is below what a worker needs to boot: .*", server.output
        ),
        10,
        "the refusal",
    )
    assert float(re.search(r"used ([\d.]+) MiB", line.group()).group(1)) >= 80, line.group()
    time.sleep(3)  # the guard checks each second: a loop would have replaced the worker by now
    assert total(scrape(server), "gunicorn_worker_starts_total") == 1
    assert recycles(server)["memory"] == 0
    assert server.get("/").status_code == 200


def test_with_preload_the_shared_pages_are_not_counted_in_full(ops_app, launch):
    """Why PSS: 80 MiB imported once in the master and shared by both workers is in each worker's RSS,
    which would pass an 80 MiB limit at boot; their PSS splits it three ways and stays below."""
    server = launch(
        ops_app, WEB_CONCURRENCY="2", PRELOAD_APP="true", MAX_WORKER_MEMORY="80M", OPS_BALLAST_MIB="80"
    )
    server.wait_ready()
    workers = server.wait_workers(2)
    assert all(w.memory_info().rss > 80 * MiB for w in workers)  # an RSS limit would refuse or loop
    time.sleep(3)  # the guard's checks
    samples = scrape(server)
    assert "MAX_WORKER_MEMORY" not in server.output.replace('"max_worker_memory"', "")
    assert total(samples, "gunicorn_worker_starts_total") == 2
    pss = by_worker(samples, "asgi_worker_proportional_memory_bytes")
    assert sorted(pss) == ["0", "1"]
    assert max(pss.values()) < 80 * MiB, pss


def test_a_limit_above_the_booted_worker_is_accepted(ops_app, launch):
    """The refusal's positive control: the same ballast, a limit above it."""
    server = launch(ops_app, WEB_CONCURRENCY="1", MAX_WORKER_MEMORY="200M", OPS_BALLAST_MIB="80")
    server.wait_ready()
    wait_for(lambda: metrics_up(server), 10, "the metrics")
    time.sleep(3)
    assert "below what a worker needs to boot" not in server.output
    assert total(scrape(server), "gunicorn_worker_starts_total") == 1


# ---- quiet probes -----------------------------------------------------------------------------------


def probe(server) -> int:
    return subprocess.run(["bash", str(HEALTHCHECK)], env=server.env, timeout=10).returncode


@pytest.mark.parametrize("logged", [False, True])
def test_healthchecks_stay_out_of_the_access_log_unless_asked(ops_app, launch, logged):
    env = {"ACCESS_LOG_PROBES": "true"} if logged else {}
    server = launch(ops_app, LOG_FORMAT="json", HEALTHCHECK_PATH="/items/7", **env)
    server.wait_ready()
    for _ in range(3):
        assert probe(server) == 0
    # The same path and agent name from a client that is not the healthcheck is logged as usual.
    assert httpx.get(server.url + "/items/7", headers={"User-Agent": "curl/8"}).status_code == 200

    def access() -> list[dict]:
        return [e for e in access_entries(server.output) if e["path"] == "/items/7"]

    wait_for(lambda: any(e["user_agent"] == "curl/8" for e in access()), 5, "the client's line")
    samples = wait_for(
        lambda: (
            (s := scrape(server))
            and total(s, "http_healthcheck_duration_seconds_count", status="200") == 3
            and s
        ),
        5,
        "3 healthchecks counted",
    )
    assert total(samples, "http_requests_total", route="/items/{item_id}") == 1  # the client's only
    probes = [e for e in access() if e["user_agent"] == "asgi-server-healthcheck"]
    assert len(probes) == (3 if logged else 0)


# ---- LOGGING_CONF -----------------------------------------------------------------------------------

DROP_NOT_FOUND = """
import logging


class DropNotFound(logging.Filter):
    def filter(self, record):
        return getattr(record, "status", None) != 404
"""


def access_file_config(path: Path) -> dict:
    return {
        "version": 1,
        "filters": {"no_404": {"()": "app.logfilters.DropNotFound"}},
        "formatters": {"plain": {"format": "ACCESS %(status)s %(route)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(path),
                "formatter": "plain",
                "filters": ["no_404"],
            }
        },
        "loggers": {
            "gunicorn.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "asgi_launcher.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
        },
    }


@pytest.mark.parametrize("manager", ["gunicorn", "uvicorn"])
def test_logging_conf_file_handler_and_filter_composed_with_json_logs(ops_app, launch, tmp_path, manager):
    write(ops_app / "app" / "logfilters.py", DROP_NOT_FOUND)
    log_file = tmp_path / "access.log"
    conf = write(tmp_path / "logging.json", json.dumps(access_file_config(log_file)))
    server = launch(ops_app, LOGGING_CONF=str(conf), LOG_FORMAT="json", PROCESS_MANAGER=manager)
    server.wait_ready()
    for path in ("/items/1", "/status/404", "/items/2"):
        httpx.get(server.url + path)
    lines = wait_for(
        lambda: log_file.exists() and "/items/2" in (text := log_file.read_text()) and text.splitlines(),
        5,
        "the access lines in the file",
    )
    paths = [line for line in lines if "/items/" in line or "/status/" in line]
    assert len(paths) == 2, lines
    for line in paths:  # the file's format, the request's fields, the text line as the message
        assert re.fullmatch(
            r'ACCESS 200 /items/\{item_id\} 127\.0\.0\.1:\d+ - "GET /items/\d HTTP/1\.1" 200', line
        )
    assert not [line for line in lines if "404" in line]  # the filter ran
    # The file took the access log over; the error log stayed with LOG_FORMAT: JSON on the console.
    console = json_entries(server.output)
    assert not [e for e in console if e.get("logger") == "access"]
    assert any(e.get("message", "").startswith("Application startup complete") for e in console)
    if manager == "gunicorn":  # the master's own logger, named nowhere in the file, still writes
        assert any(e.get("logger") == "gunicorn.error" and "Booting worker" in e["message"] for e in console)


def test_logging_conf_python_module_leaves_the_json_access_log_as_it_was(ops_app, launch, tmp_path):
    log_file = tmp_path / "errors.log"
    config = {
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file)}},
        "loggers": {"gunicorn.error": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    write(ops_app / "app" / "logconf.py", f"LOGGING_CONFIG = {config!r}\n")
    server = launch(ops_app, LOGGING_CONF="app.logconf", LOG_FORMAT="json")
    server.wait_ready()
    wait_for(lambda: log_file.exists() and "Booting worker" in log_file.read_text(), 10, "the error log")
    assert "Booting worker" not in server.output  # moved, not copied
    httpx.get(server.url + "/items/9?q=1", headers={"User-Agent": "probe/1"})
    entry = wait_for(
        lambda: next(
            (e for e in map(json.loads, server.output.splitlines()) if e.get("path") == "/items/9?q=1"), None
        ),
        5,
        "the access entry",
    )
    # Through logging now, and still the JSON access entry of LOG_FORMAT=json, not one nested in another.
    assert entry["logger"] == "access"
    assert entry["message"].endswith('"GET /items/9?q=1 HTTP/1.1" 200')
    assert (entry["route"], entry["status"], entry["user_agent"]) == ("/items/{item_id}", 200, "probe/1")


def test_a_logging_conf_that_fails_stops_the_start_with_one_line(ops_app, launch, tmp_path):
    conf = write(
        tmp_path / "bad.json",
        json.dumps(
            {"version": 1, "handlers": {"x": {"class": "nowhere.Handler"}}, "root": {"handlers": ["x"]}}
        ),
    )
    server = launch(ops_app, LOGGING_CONF=str(conf))
    assert server.wait_exit(30) == 2
    errors = [line for line in server.output.splitlines() if line.startswith("ERROR: LOGGING_CONF=")]
    assert len(errors) == 1, server.output
    assert "could not be applied: ValueError: Unable to configure handler 'x'" in errors[0]
    assert "Traceback" not in server.output


# ---- ROOT_PATH --------------------------------------------------------------------------------------


@pytest.mark.parametrize("manager", ["gunicorn", "uvicorn"])
def test_root_path_serves_the_app_and_its_docs_under_a_prefix(ops_app, launch, manager):
    server = launch(ops_app, ROOT_PATH="/api/", PROCESS_MANAGER=manager, LOG_FORMAT="json")
    server.wait_ready()
    # What a proxy that strips /api sends on: the app's own paths.
    assert server.get("/items/3").json() == {"item_id": 3}
    docs = server.get("/docs").text
    assert "'/api/openapi.json'" in docs, docs
    assert server.get("/openapi.json").json()["servers"] == [{"url": "/api"}]
    entries = wait_for(
        lambda: [e for e in access_entries(server.output) if e["route"] == "/items/{item_id}"],
        5,
        "the access entry",
    )
    assert entries[0]["path"] == "/api/items/3"  # the path the client asked for, prefix once


def test_without_root_path_the_docs_point_at_the_root(ops_app, launch):
    server = launch(ops_app)
    server.wait_ready()
    assert "'/openapi.json'" in server.get("/docs").text
    assert "servers" not in server.get("/openapi.json").json()


# ---- what we rely on upstream -------------------------------------------------------------------------


def test_the_upstream_parts_recycling_relies_on_are_there():
    """Upgrades that remove these break recycling reasons, the memory guard or ROOT_PATH: fail here.
    What the arbiter does for them is checked by behaviour in test_upstream.py."""
    import inspect

    from gunicorn.config import Config as GunicornConfig
    from uvicorn.config import Config

    settings = GunicornConfig().settings
    for hook in ("pre_fork", "post_fork", "post_worker_init", "worker_exit", "child_exit", "on_reload"):
        assert hook in settings, f"Gunicorn no longer has the {hook} hook"
    params = inspect.signature(Config).parameters
    assert "root_path" in params, "uvicorn.Config has no root_path"
    assert "callback_notify" in params, "uvicorn.Config has no callback_notify (the heartbeat)"


def test_a_pss_read_costs_little_and_matches_psutil():
    from asgi_launcher.resources import process_usage

    usage = process_usage(os.getpid())
    info = psutil.Process().memory_full_info()
    assert usage.pss is not None
    assert abs(usage.pss - info.pss) < 0.05 * info.pss + 2 * MiB
    assert abs(usage.rss - info.rss) < 0.05 * info.rss + 2 * MiB


# ---- garbage collection in the workers ------------------------------------------------------------------


def test_each_worker_freezes_what_its_app_made_before_serving(single_file_app, launch):
    """A full collection walked every object of the app's import (15 to 20 ms with FastAPI) in the middle
    of requests; after the boot those are frozen. What a request makes is still collected."""
    main = single_file_app / "main.py"
    main.write_text(
        main.read_text()
        + "\n\nimport gc, os\n\n\n@app.get('/gc')\ndef gc_state():\n"
        + "    return {'pid': os.getpid(), 'frozen': gc.get_freeze_count(), 'enabled': gc.isenabled()}\n"
    )
    server = launch(single_file_app)
    server.wait_ready()
    workers = {worker.pid for worker in server.wait_workers(2)}
    seen = {}
    wait_for(
        lambda: seen.update({(s := fresh_get(f"{server.url}/gc").json())["pid"]: s}) or set(seen) == workers,
        30,
        lambda: f"an answer from each worker, got {seen}",
    )
    for state in seen.values():
        assert state["enabled"], state
        assert state["frozen"] > 10_000, f"the app's objects are not frozen: {state}"
