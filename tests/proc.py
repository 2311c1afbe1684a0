"""Run the real start scripts as processes on loopback, and look at them from outside."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import psutil

from asgi_launcher.settings import REGISTRY

REPO = Path(__file__).resolve().parent.parent
START = REPO / "scripts" / "start.sh"
START_RELOAD = REPO / "scripts" / "start-reload.sh"
BASE_CONF = REPO / "gunicorn_conf.py"
# Variables of the image that a developer's shell might have set: tests start from none of them.
IMAGE_VARIABLES = [setting.name for setting in REGISTRY]


def startup_json(output: str) -> dict:
    """The last startup JSON line in a log (a restarted container has one per start)."""
    lines = [line for line in output.splitlines() if line.startswith('{"loglevel"')]
    assert lines, output
    return json.loads(lines[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Launched:
    """A start script running in its own session, output captured to a file."""

    def __init__(
        self, script: Path, app_root: Path, env: Mapping[str, str], log: Path, affinity=None, script_args=()
    ):
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        full_env = {k: v for k, v in os.environ.items() if k not in IMAGE_VARIABLES}
        full_env.update(
            {
                # The scripts run python, gunicorn, uvicorn: those of the environment running the tests.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "APP_ROOT": str(app_root),
                "BASE_GUNICORN_CONF": str(BASE_CONF),
                "BIND": f"127.0.0.1:{self.port}",
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "METRICS_PORT": str(self.metrics_port),
                # The suite runs as root on CI: the scripts would switch to the image's user, which
                # this machine does not have (tests/test_user.py covers the switch).
                "APP_USER": "root",
            }
        )
        full_env.update(env)
        self.env = full_env
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(script), *script_args],
                cwd=app_root,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, affinity)) if affinity else None,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str = "/", timeout: float = 10.0) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout)

    def wait_ready(self, path: str = "/", timeout: float = 30.0) -> httpx.Response:
        def attempt():
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output}")
            try:
                return self.get(path, timeout=2)
            except httpx.TransportError:
                return None

        return wait_for(attempt, timeout, f"{self.url}{path} to answer\n{self.output}")

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None

    def workers(self) -> list[psutil.Process]:
        """The worker processes actually running: the master's children, read from the process table."""
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def wait_workers(self, count: int, timeout: float = 20.0) -> list[psutil.Process]:
        def settled():
            found = self.workers()
            return found if len(found) == count else None

        try:
            return wait_for(settled, timeout, f"{count} workers")
        except AssertionError:
            raise AssertionError(
                f"expected {count} workers, found {len(self.workers())}\n{self.output}"
            ) from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """Leave nothing behind: the whole session, whatever state it is in."""
        with contextlib.suppress(
            ProcessLookupError
        ):  # the group outlives a leader whose workers were orphaned
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
