"""The servers under test: how each one starts, and how a running one is measured and stopped."""

from __future__ import annotations

import contextlib
import http.client
import resource
import shutil
import signal
import time
from pathlib import Path

import psutil
from spawn import HOST, REPO, Spawned, alive, clean_env, free_port

# name -> (how it is started, whether it writes an access log as run here)
SERVERS: dict[str, tuple[str, bool]] = {
    "ours": ("scripts/start.sh, this project's launcher with its defaults", True),
    "ours-preload": ("scripts/start.sh with PRELOAD_APP=true (the app imported once, before the fork)", True),
    # Variants of ours, run only when named with --servers: what each feature costs.
    "ours-no-metrics": ("scripts/start.sh with METRICS=off", True),
    "ours-no-access-log": ("scripts/start.sh with ACCESS_LOG='' (metrics on)", False),
    "ours-bare": ("scripts/start.sh with METRICS=off ACCESS_LOG=''", False),
    "ours-json": ("scripts/start.sh with LOG_FORMAT=json", True),
    "tiangolo": ("gunicorn -k uvicorn.workers.UvicornWorker -c benchmarks/tiangolo_conf.py", True),
    "uvicorn": ("uvicorn --workers N --no-access-log (the reference for ratios)", False),
    "fastapi-run": ("fastapi run --workers N, as it ships", True),
    "granian": ("granian --interface asgi --workers N, as it ships (access log off by default)", False),
}
DEFAULT = ("ours", "ours-preload", "tiangolo", "uvicorn", "fastapi-run", "granian")
OURS = {  # the variables each of our variants sets on top of the defaults
    "ours": {},
    "ours-preload": {"PRELOAD_APP": "true"},
    "ours-no-metrics": {"METRICS": "off"},
    "ours-no-access-log": {"ACCESS_LOG": ""},
    "ours-bare": {"METRICS": "off", "ACCESS_LOG": ""},
    "ours-json": {"LOG_FORMAT": "json"},
}


def command(name: str, workers: int, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and the variables (beyond the clean environment) that start ``name``."""
    bind = f"{HOST}:{port}"
    net = ["--host", HOST, "--port", str(port)]
    if name in OURS:
        env = {"APP_ROOT": str(REPO), "BASE_GUNICORN_CONF": str(REPO / "gunicorn_conf.py")}
        # The user running the benchmark (the image's user exists only in the image).
        env.update(APP_USER="root", **OURS[name])
        return ["scripts/start.sh"], {**env, "BIND": bind, "WEB_CONCURRENCY": str(workers)}
    if name == "tiangolo":
        conf = "benchmarks/tiangolo_conf.py"
        argv = ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-c", conf, "app.main:app"]
        return argv, {"BIND": bind, "WEB_CONCURRENCY": str(workers)}
    if name == "uvicorn":
        return ["uvicorn", "app.main:app", "--workers", str(workers), *net, "--no-access-log"], {}
    if name == "fastapi-run":
        return ["fastapi", "run", "app/main.py", "--workers", str(workers), *net], {}
    if name == "granian":
        return ["granian", "--interface", "asgi", "--workers", str(workers), *net, "app.main:app"], {}
    raise ValueError(f"unknown server {name!r}")


def missing_programs(names: list[str]) -> list[str]:
    path = clean_env({})["PATH"]
    programs = {command(name, 1, 1)[0][0] for name in names}
    return sorted(p for p in programs if not (shutil.which(p, path=path) or (REPO / p).exists()))


def status_of(port: int, path: str = "/", timeout: float = 1.0) -> int | None:
    """The status of GET ``path``, or None if nothing answered."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def other_cpu() -> tuple[float, float, float]:
    """(now, CPU seconds the whole machine has been busy, CPU seconds of this process and its
    finished children such as wrk): two of these around a run give the share of the machine that
    something other than the server, wrk and this harness used meanwhile."""
    machine = psutil.cpu_times()
    busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    own = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    return time.perf_counter(), busy, own


def host_probe_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes on an idle machine, the fastest of five. It grows
    when the host gives this VM less CPU, which no figure measured inside the VM (load, other CPU %)
    can show."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for number in range(1_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return best * 1000


class Running(Spawned):
    """One server started from the repository root, its output going to a log file. Leaving the
    ``with`` block kills its whole session, whatever happened."""

    def __init__(self, name: str, workers: int, log: Path):
        self.name = name
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        argv, variables = command(name, workers, self.port)
        super().__init__(argv, variables, log)

    def __enter__(self) -> Running:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill()

    def wait_first_200(self, deadline: float) -> float:
        """Seconds from the spawn to the first 200 on ``/``."""
        last = None
        while True:
            last = status_of(self.port)
            if last == 200:
                return time.perf_counter() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}) before answering; see {self.log_path}"
                )
            if time.perf_counter() - self.started > deadline:
                raise RuntimeError(
                    f"{self.name}: no 200 on / within {deadline:.0f} s (last: {last}); see {self.log_path}"
                )
            time.sleep(0.01)

    def memory(self) -> dict:
        """RSS and PSS summed over the process tree (RSS counts a page shared by forked workers once
        per process; PSS splits it between them)."""
        rss = pss = count = 0
        for process in self.processes():
            try:
                info = process.memory_full_info()
            except psutil.Error:
                continue
            rss, pss, count = rss + info.rss, pss + info.pss, count + 1
        return {"rss_bytes": rss, "pss_bytes": pss, "processes": count}

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process tree."""
        total = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self, deadline: float) -> tuple[float, bool]:
        """SIGTERM to the leader; seconds until it and all its descendants are gone, and whether
        they went by themselves (else they are killed at ``deadline``)."""
        descendants = self.processes()[1:]
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        while time.perf_counter() - started < deadline:
            if self.proc.poll() is not None and not any(alive(p) for p in descendants):
                return time.perf_counter() - started, True
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        self.kill()
        return elapsed, False
