"""Run the real start scripts as processes on loopback, and look at them from outside."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import httpx
import psutil

from asgi_launcher.settings import REGISTRY

from . import spawn
from .spawn import REPO, Spawned

START = REPO / "scripts" / "start.sh"
START_RELOAD = REPO / "scripts" / "start-reload.sh"
BASE_CONF = REPO / "gunicorn_conf.py"
# What the Dockerfile sets for every process of the image, so that the scripts run here as they do there.
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
# Variables of the image that a developer's shell might have set. Launched servers start from a clean
# environment (spawn.clean_env) and so from none of them; unit/test_settings.py strips these for its own runs.
IMAGE_VARIABLES = [setting.name for setting in REGISTRY]

# Every port free_port has handed out in this test session, and the image's default ports, which a
# server left to its defaults would take. Never handed out (again): see free_port.
_PORTS_TAKEN = {setting.default for setting in REGISTRY if setting.name in ("PORT", "METRICS_PORT")}
_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, and never returned before in this test session.

    The kernel picks a port 0 bind at random among the free ones, so two calls can return the same port
    while the first is not yet bound: a server given it as its app and metrics ports refuses to start, and
    two servers (or containers) of one test fight over it. Remembering every port handed out rules that
    out; the bind (spawn.free_port) is the check that the port is free when it is handed out."""
    with _PORTS_LOCK:
        for _ in range(1000):
            port = spawn.free_port()
            if port not in _PORTS_TAKEN:
                _PORTS_TAKEN.add(port)
                return port
    raise AssertionError(f"no free port on 127.0.0.1 left after {len(_PORTS_TAKEN)} handed out")


def startup_json(output: str) -> dict:
    """The last startup JSON line in a log (a restarted container has one per start)."""
    lines = [line for line in output.splitlines() if line.startswith('{"loglevel"')]
    assert lines, output
    return json.loads(lines[-1])


def wait_for(
    condition: Callable[[], object], timeout: float, what: str | Callable[[], str], interval: float = 0.05
):
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``.

    ``what`` may be a callable, called at the failure: the server's output as it is then."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what() if callable(what) else what}"
            )
        time.sleep(interval)


def wait_answer(
    url: str,
    timeout: float,
    gone: Callable[[], str | None],
    output: Callable[[], str],
    interval: float = 0.05,
) -> httpx.Response:
    """GET ``url`` until something answers (any status), failing at once, with ``gone()``'s reason, when
    the server has gone. For processes and containers alike."""

    def attempt():
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if reason := gone():
                raise AssertionError(f"{reason}:\n{output()}") from None
            return None

    return wait_for(attempt, timeout, lambda: f"{url} to answer\n{output()}", interval)


class Launched(Spawned):
    """A start script running in its own session against ``app_root``, on free loopback ports, with
    the variables ``env`` on top of a clean environment; output captured to ``log``. It starts at once."""

    def __init__(
        self,
        script: Path,
        app_root: Path,
        env: Mapping[str, str],
        log: Path,
        affinity: Collection[int] | None = None,
        script_args=(),
    ):
        # Two calls of free_port, never the same port: the launcher refuses METRICS_PORT equal to the app's.
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        variables = {
            **IMAGE_ENV,
            "APP_ROOT": str(app_root),
            "BASE_GUNICORN_CONF": str(BASE_CONF),
            "BIND": f"127.0.0.1:{self.port}",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "METRICS_PORT": str(self.metrics_port),
            # The suite runs as root on CI: the scripts would switch to the image's user, which
            # this machine does not have (tests/unit/test_user.py covers the switch).
            "APP_USER": "root",
            # Each server's own, for the healthcheck (asgi_launcher/probe.py); /dev/shm is the host's here.
            "ASGI_SERVER_ADDRESS_FILE": str(log.with_suffix(".address")),
            **env,
        }
        super().__init__([str(script), *script_args], variables, log, cwd=app_root, affinity=affinity)
        self.start()

    def get(self, path: str = "/", timeout: float = 10.0) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout)

    def _gone(self) -> str | None:
        code = self.proc.poll()
        return None if code is None else f"server exited with {code}"

    def wait_ready(self, path: str = "/", timeout: float = 30.0) -> httpx.Response:
        return wait_answer(self.url + path, timeout, self._gone, lambda: self.output)

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None

    def wait_workers(self, count: int, timeout: float = 20.0) -> list[psutil.Process]:
        def settled():
            found = self.workers()
            return found if len(found) == count else None

        return wait_for(
            settled, timeout, lambda: f"{count} workers, found {len(self.workers())}\n{self.output}"
        )
