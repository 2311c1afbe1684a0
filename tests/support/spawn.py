"""A server started as a process of its own session and looked at from outside: one way of doing it for
the test suite (support.proc.Launched) and the benchmarks (servers.Running), which reach this package
through the symlink benchmarks/support. Nothing here imports another local module.

Every server starts from a clean environment: a few variables of the caller's (locale, home,
temporary directory) plus what the caller passes, so that a variable left in a developer's shell
(WEB_CONCURRENCY, GRANIAN_*, ...) can change neither a measurement nor a test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]  # tests/support/spawn.py, whichever way it was reached
VENV_BIN = Path(sysconfig.get_path("scripts"))  # python, gunicorn, uvicorn... of the running environment
HOST = "127.0.0.1"
KEPT_VARIABLES = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {key: os.environ[key] for key in KEPT_VARIABLES if key in os.environ}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Spawned:
    """``argv`` run from ``cwd`` in its own session with ``clean_env(variables)``, its output (stdout
    and stderr) going to ``log``. ``kill`` removes the whole session, whatever state it is in.

    ``argv`` and ``variables`` may be changed until ``start``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        variables: Mapping[str, str],
        log: Path,
        cwd: Path = REPO,
        affinity: Collection[int] | None = None,
    ):
        self.argv = list(argv)
        self.variables = dict(variables)
        self.log_path = log
        self.cwd = cwd
        self.affinity = affinity
        self.env: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None
        self.started = 0.0  # time.perf_counter() at the spawn

    def start(self) -> Spawned:
        self.env = clean_env(self.variables)
        affinity = self.affinity
        with self.log_path.open("wb") as log:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, affinity)) if affinity else None,
            )
        return self

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """The started process and all its descendants."""
        try:
            leader = psutil.Process(self.proc.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The worker processes actually running: the leader's children, read from the process table."""
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> set[int]:
        return {worker.pid for worker in self.workers()}

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is None:
            return
        stragglers = self.processes()[1:]
        # The group outlives a leader whose workers were orphaned: signal the group, not the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for process in stragglers:  # in case one left the group
            with contextlib.suppress(psutil.Error):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
