"""The servers under test: how each one starts, and how a running one is measured and stopped."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from support.spawn import HOST, REPO, Spawned, alive, clean_env, free_port

BENCH = REPO / "benchmarks"
TIANGOLO_CONF = BENCH / "tiangolo_conf.py"
# name -> (how it is started, whether it writes an access log as run here)
SERVERS: dict[str, tuple[str, bool]] = {
    "ours": ("scripts/start.sh, this project's launcher with its defaults", True),
    "ours-preload": ("scripts/start.sh with PRELOAD_APP=true (the app imported once, before the fork)", True),
    # Variants of ours, run only when named with --servers: what each feature costs.
    "ours-no-metrics": ("scripts/start.sh with METRICS=off", True),
    "ours-no-access-log": ("scripts/start.sh with ACCESS_LOG='' (metrics on)", False),
    "ours-bare": ("scripts/start.sh with METRICS=off ACCESS_LOG=''", False),
    "ours-json": ("scripts/start.sh with LOG_FORMAT=json", True),
    # The fallback of the compatibility work: what an app that pinned an older Uvicorn gets.
    "ours-stock-worker": ("scripts/start.sh with WORKER_CLASS=uvicorn.workers.UvicornWorker", True),
    "ours-pinned": (
        "scripts/start.sh in a venv where uvicorn is pinned to 0.35.0 (below what our worker needs):"
        " the launcher falls back to the stock worker by itself",
        True,
    ),
    "tiangolo": (
        "benchmarks/tiangolo_start.sh (a stand-in for his start.sh: module detection, pre-start, then exec"
        " gunicorn -k uvicorn.workers.UvicornWorker -c benchmarks/tiangolo_conf.py)",
        True,
    ),
    "tiangolo-gunicorn": ("his Gunicorn command alone, without his start script", True),
    "uvicorn-worker": (
        "gunicorn -k uvicorn_worker.UvicornWorker -c benchmarks/tiangolo_conf.py (the stock worker of the"
        " uvicorn-worker package, tiangolo's settings)",
        True,
    ),
    "uvicorn": ("uvicorn --workers N --no-access-log (the reference for ratios)", False),
    "fastapi-run": ("fastapi run --workers N, as it ships", True),
    "granian": ("granian --interface asgi --workers N, as it ships (access log off by default)", False),
    # An evaluation, run only when named: granian's Rust HTTP engine in a Gunicorn worker (a prototype).
    "granian-worker": (
        "gunicorn -k granian_worker.GranianWorker (benchmarks/granian_worker.py, a prototype) with"
        " tiangolo's settings, no access log",
        False,
    ),
}
DEFAULT = ("ours", "ours-preload", "tiangolo", "uvicorn-worker", "uvicorn", "fastapi-run", "granian")
OURS = {  # the variables each of our variants sets on top of the defaults
    "ours": {},
    "ours-preload": {"PRELOAD_APP": "true"},
    "ours-no-metrics": {"METRICS": "off"},
    "ours-no-access-log": {"ACCESS_LOG": ""},
    "ours-bare": {"METRICS": "off", "ACCESS_LOG": ""},
    "ours-json": {"LOG_FORMAT": "json"},
    "ours-stock-worker": {"WORKER_CLASS": "uvicorn.workers.UvicornWorker"},
    "ours-pinned": {},
}


def is_peer(name: str) -> bool:
    """The servers ours is compared with (every variant of ours is not one)."""
    return not name.startswith("ours")


def command(name: str, workers: int, port: int, app_root: Path = REPO) -> tuple[list[str], dict[str, str]]:
    """The command line and the variables (beyond the clean environment) that start ``name`` on the
    app ``app.main:app`` of ``app_root`` (the directory it runs from)."""
    bind = f"{HOST}:{port}"
    net = ["--host", HOST, "--port", str(port)]
    if name in OURS:
        env = {"APP_ROOT": str(app_root), "BASE_GUNICORN_CONF": str(REPO / "gunicorn_conf.py")}
        # The user running the benchmark (the image's user exists only in the image); the metrics
        # endpoint on a port of its own, so that another server on this shared machine holding 9100
        # cannot turn it off.
        env.update(APP_USER="root", METRICS_PORT=str(free_port()), **OURS[name])
        if name == "ours-pinned":
            env["PATH"] = f"{PINNED.bin()}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        return [str(REPO / "scripts" / "start.sh")], {**env, "BIND": bind, "WEB_CONCURRENCY": str(workers)}
    gunicorn = {"BIND": bind, "WEB_CONCURRENCY": str(workers)}
    if name == "tiangolo":
        start = str(BENCH / "tiangolo_start.sh")
        return [start], {"APP_DIR": str(app_root), "GUNICORN_CONF": str(TIANGOLO_CONF), **gunicorn}
    if name == "tiangolo-gunicorn":
        argv = ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-c", str(TIANGOLO_CONF), "app.main:app"]
        return argv, gunicorn
    if name == "uvicorn-worker":
        argv = ["gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-c", str(TIANGOLO_CONF), "app.main:app"]
        return argv, gunicorn
    if name == "uvicorn":
        return ["uvicorn", "app.main:app", "--workers", str(workers), *net, "--no-access-log"], {}
    if name == "fastapi-run":
        return ["fastapi", "run", "app/main.py", "--workers", str(workers), *net], {}
    if name == "granian":
        return ["granian", "--interface", "asgi", "--workers", str(workers), *net, "app.main:app"], {}
    if name == "granian-worker":
        argv = ["gunicorn", "-k", "granian_worker.GranianWorker", "-c", str(TIANGOLO_CONF), "app.main:app"]
        return argv, {**gunicorn, "PYTHONPATH": str(BENCH)}
    raise ValueError(f"unknown server {name!r}")


def missing_programs(names: list[str]) -> list[str]:
    path = clean_env({})["PATH"]
    programs = {command(name, 1, 1)[0][0] for name in names if name != "ours-pinned"}
    return sorted(p for p in programs if not (shutil.which(p, path=path) or (REPO / p).exists()))


class PinnedVenv:
    """A venv under /tmp with the image's packages, then Uvicorn pinned below what our worker needs
    (as a derived image whose app pins an older Uvicorn gets it: pip warns about uvicorn-worker's
    requirement and installs the pin anyway), and this launcher installed editable. Made once per
    lock file and checkout (an editable install points at one checkout: a venv made from another
    worktree served its older code) and kept for later runs; nothing else on the machine is touched."""

    UVICORN = "0.35.0"

    def __init__(self) -> None:
        lock = (REPO / "requirements.txt").read_bytes()
        key = hashlib.sha256(lock + f"{self.UVICORN} {sys.version} {REPO}".encode()).hexdigest()[:12]
        self.root = Path(tempfile.gettempdir()) / f"asgi-bench-pinned-{key}"
        self.reason: str | None = None  # the launcher's own fallback line, read from the venv

    def bin(self) -> Path:
        return self.root / "bin"

    def python(self, code: str) -> str:
        result = subprocess.run(
            [str(self.bin() / "python"), "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
        return result.stdout.strip()

    def prepare(self, log: Path) -> str | None:
        """None when the venv is ready, else why it cannot be made (one line)."""
        ready = self.root / "ready"
        if not ready.exists():
            shutil.rmtree(self.root, ignore_errors=True)
            pip = [
                str(self.bin() / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ]
            steps = [
                [sys.executable, "-m", "venv", str(self.root)],
                [*pip, "--no-deps", "--require-hashes", "-r", str(REPO / "requirements.txt")],
                [*pip, "--no-deps", f"uvicorn=={self.UVICORN}"],
                [*pip, "--no-deps", "-e", str(REPO)],
            ]
            with log.open("w") as out:
                for step in steps:
                    out.write(f"$ {shlex.join(step)}\n")
                    out.flush()
                    try:
                        done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=900)
                    except (OSError, subprocess.TimeoutExpired) as error:
                        return f"{shlex.join(step)}: {error}"
                    if done.returncode != 0:
                        return f"`{shlex.join(step)}` failed ({done.returncode}); see {log}"
            ready.touch()
        try:
            self.reason = self.python(
                "from asgi_launcher.compat import default_worker, detect; print(default_worker(detect())[1])"
            )
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            return f"the pinned venv {self.root} does not run the launcher: {error}"
        if self.reason == "None":
            return (
                f"the launcher in {self.root} does not fall back to the stock worker (uvicorn {self.UVICORN})"
            )
        return None

    def versions(self) -> str:
        code = (
            "from importlib import metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in"
            " ('gunicorn', 'uvicorn', 'uvicorn-worker')))"
        )
        return self.python(code)


PINNED = PinnedVenv()


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


def payload_app(parent: Path) -> Path:
    """A directory with benchmarks/payload_app.py as app/main.py, for servers started there."""
    root = parent / "payload-app"
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text("")
    shutil.copyfile(BENCH / "payload_app.py", root / "app" / "main.py")
    return root


class InFlight:
    """One ``GET /slow/<hold_ms>`` of the payload app on its own connection, to stop a server while it
    is being answered: ``wait_started`` returns once the app has sent its first chunk (the request is
    in the app), then a thread reads the rest. ``answered_at`` is when the whole answer (status 200,
    the last chunk, the end of the chunked body) had arrived, None if it never did."""

    def __init__(self, port: int, hold_ms: int, timeout: float = 30.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        request = f"GET /slow/{hold_ms} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        self.sock.sendall(request.encode())
        self.received = b""
        self.answered_at: float | None = None
        self.error: str | None = None
        self._reader: threading.Thread | None = None

    def wait_started(self) -> bool:
        try:
            while b"started" not in self.received:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return False
                self.received += chunk
        except OSError as error:
            self.error = f"{type(error).__name__}: {error}"
            return False
        self._reader = threading.Thread(target=self._read_rest, daemon=True)
        self._reader.start()
        return True

    def complete(self, closed: bool = False) -> bool:
        """A 200 with the last chunk, and the body's end: the chunked terminator, or the connection's
        close for a body without a length."""
        head, _, body = self.received.partition(b"\r\n\r\n")
        if not (head.startswith(b"HTTP/1.1 200") and b"finished\n" in body):
            return False
        if b"transfer-encoding: chunked" in head.lower():
            return body.endswith(b"0\r\n\r\n")
        return closed or b"content-length:" in head.lower()

    def _read_rest(self) -> None:
        closed = False
        try:
            while not self.complete():
                chunk = self.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                self.received += chunk
        except OSError as error:
            self.error = f"{type(error).__name__}: {error}"
        if self.complete(closed):
            self.answered_at = time.perf_counter()

    def finish(self, timeout: float) -> bool:
        """Waits for the reader; whether the whole answer arrived."""
        if self._reader is not None:
            self._reader.join(timeout)
        self.sock.close()
        return self.answered_at is not None

    def outcome(self, stop_sent: float, exited_at: float) -> dict:
        answered = self.answered_at is not None
        result: dict = {"answered": answered}
        if answered:
            result["answer_after_stop_s"] = self.answered_at - stop_sent
            result["exit_after_answer_s"] = exited_at - self.answered_at
        else:
            tail = self.received[-200:].decode("latin-1")
            result["failure"] = self.error or f"incomplete answer, ending {tail!r}"
        return result


class Running(Spawned):
    """One server started from the repository root, its output going to a log file. Leaving the
    ``with`` block kills its whole session, whatever happened."""

    def __init__(self, name: str, workers: int, log: Path, app_root: Path = REPO, extra: dict | None = None):
        self.name = name
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        argv, variables = command(name, workers, self.port, app_root)
        super().__init__(argv, {**variables, **(extra or {})}, log, cwd=app_root)
        self.stop_sent = 0.0  # time.perf_counter() when SIGTERM was sent

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

    def wait_workers(self, count: int, deadline: float) -> None:
        """Until the leader has ``count`` children (the first 200 needs only one worker up). Uvicorn
        with one worker (and `fastapi run`, which runs it) serves from its first process."""
        if count == 1 and self.name in ("uvicorn", "fastapi-run"):
            return
        limit = time.perf_counter() + deadline
        while len(self.workers()) < count:
            if time.perf_counter() > limit:
                raise RuntimeError(f"{self.name}: fewer than {count} workers after {deadline:.0f} s")
            time.sleep(0.05)

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
        started = self.stop_sent = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        while time.perf_counter() - started < deadline:
            if self.proc.poll() is not None and not any(alive(p) for p in descendants):
                return time.perf_counter() - started, True
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        self.kill()
        return elapsed, False
