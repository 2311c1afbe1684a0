"""Docker Swarm mode for real: deploy/swarm/stack.yml through scripts/deploy.sh on a swarm the tests start
(and leave as they found it), under a steady TLS load through the stack's proxy: a rolling update, a
rollback, scaling, a killed task, two updates that must roll back by themselves; the same redeploy through
plain compose; and a second node, Docker-in-Docker, drained and then killed.

The figures (requests sent and failed, seconds to converge) are written to build/swarm.json.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from support.apps import SEED_APP
from support.clients import Load
from support.dockerutil import (
    COMPOSE,
    Container,
    build,
    docker,
    free_subnet,
    python_image,
    remove_image,
    timestamp,
    unique,
)
from support.dockerutil import compose as run_compose
from support.files import write
from support.logs import access_entries
from support.proc import REPO, free_port, startup_json, wait_for
from support.units import MiB

DEPLOY = REPO / "scripts" / "deploy.sh"
FIGURES = REPO / "build" / "swarm.json"
# Of each kind: keep-alive clients, and clients opening a new connection (a new TLS handshake) per request.
CLIENTS = 2
# A request can be lost only if it was on its way when its task or node died: one per client and the observer.
IN_FLIGHT = 2 * CLIENTS + 1

# What each release answers on GET /, which tells them apart while they serve side by side.
ANSWERS = {"v1": "World", "v2": "v2", "unhealthy": "unhealthy", "prestart_fails": "World"}


def record(name: str, **figures) -> None:
    FIGURES.parent.mkdir(exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[name] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def seconds(value: float) -> float:
    return round(value, 1)


# ---- the load --------------------------------------------------------------------------------------


class Traffic:
    """CLIENTS keep-alive clients and CLIENTS new-connection clients on /items/1, plus an observer
    reading GET / every 0.1 s to see which release answers. Bounded in time and count like Load."""

    def __init__(self, url: str, verify, max_seconds: float = 400):
        common = {"path": "/items/1", "clients": CLIENTS, "verify": verify, "max_seconds": max_seconds}
        self.loads = [
            Load(url, max_requests=100_000, **common),
            Load(url, max_requests=100_000, keepalive=False, **common),
        ]
        self.url, self.verify, self.max_seconds = url, verify, max_seconds
        self.seen: list[tuple[float, str]] = []  # (time, answer or error)
        self._stop = threading.Event()
        self._observer = threading.Thread(target=self._observe, daemon=True)

    def __enter__(self) -> Traffic:
        for load in self.loads:
            load.__enter__()
        self._observer.start()
        try:
            for load in self.loads:
                load.wait_requests(20, timeout=60)
        except AssertionError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for load in self.loads:
            load.stop()
        self._observer.join(15)

    def _observe(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        verify = self.verify() if callable(self.verify) else self.verify
        with httpx.Client(verify=verify, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.get(self.url + "/")
                    answer = response.json()["Hello"] if response.status_code == 200 else None
                    self.seen.append((time.monotonic(), answer or f"error: status {response.status_code}"))
                except (httpx.HTTPError, ValueError, KeyError) as error:
                    self.seen.append((time.monotonic(), f"error: {type(error).__name__}: {error}"))
                self._stop.wait(0.1)

    @property
    def sent(self) -> int:
        return sum(load.outcome.ok + load.outcome.failed for load in self.loads) + len(self.seen)

    @property
    def failed(self) -> int:
        return sum(load.outcome.failed for load in self.loads) + len(self.errors_seen)

    @property
    def errors(self) -> list[str]:
        return [e for load in self.loads for e in load.outcome.errors] + self.errors_seen

    @property
    def errors_seen(self) -> list[str]:
        return [answer for _, answer in self.seen if answer.startswith("error: ")]

    def answers(self, since: float = 0.0) -> list[str]:
        return [answer for at, answer in self.seen if at >= since and not answer.startswith("error: ")]

    def settle(self, requests: int = 100) -> None:
        """Each kind of client gets `requests` more answers (or failures): serving goes on afterwards."""
        for load in self.loads:
            load.wait_requests(load.outcome.ok + load.outcome.failed + requests, timeout=60)

    def figures(self, **more) -> dict:
        return {
            "load": f"{CLIENTS} keep-alive + {CLIENTS} new-connection clients over TLS, 1 observer",
            "sent": self.sent,
            "failed": self.failed,
            **more,
        }


# ---- swarm state -----------------------------------------------------------------------------------


def swarm_info() -> dict:
    return json.loads(docker("info", "-f", "{{json .Swarm}}").stdout)


def network_names() -> set[str]:
    return set(docker("network", "ls", "--format", "{{.Name}}").stdout.split())


def json_rows(*args: str) -> list[dict]:
    return [json.loads(line) for line in docker(*args, "--format", "{{json .}}").stdout.splitlines()]


def service_tasks(service: str, node_host: str | None = None) -> list[dict]:
    """The service's tasks that should run (rows of docker service ps)."""
    tasks = json_rows("service", "ps", "--no-trunc", "-f", "desired-state=running", service)
    return [t for t in tasks if node_host is None or t["Node"] == node_host]


def running(service: str) -> list[dict]:
    return [t for t in service_tasks(service) if t["CurrentState"].startswith("Running")]


def update_status(service: str) -> dict:
    return json.loads(docker("service", "inspect", "-f", "{{json .UpdateStatus}}", service).stdout) or {}


def update_seconds(service: str) -> float:
    """How long Swarm's own update (or rollback) took, from its start and completion times."""
    status = update_status(service)
    return seconds(timestamp(status["CompletedAt"]) - timestamp(status["StartedAt"]))


def wait_converged(service: str, count: int, timeout: float = 120, hosts: set[str] | None = None) -> float:
    """Wait until exactly `count` tasks run (on `hosts`, if given), none on its way; return the seconds."""
    started = time.monotonic()

    def converged():
        tasks = service_tasks(service)
        return (
            len(tasks) == count
            and all(t["CurrentState"].startswith("Running") for t in tasks)
            and (hosts is None or {t["Node"] for t in tasks} <= hosts)
        )

    wait_for(converged, timeout, f"{count} running tasks of {service}", interval=0.2)
    return time.monotonic() - started


def task_containers(service: str) -> list[str]:
    """The running containers of a service on this engine."""
    return docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").stdout.split()


def served_load(logs: str) -> bool:
    """Whether a task served the Traffic's requests (its own healthcheck's do not count)."""
    return any(e["path"] == "/items/1" for e in access_entries(logs))


@pytest.fixture(scope="module")
def swarm(engine):
    """A swarm this engine manages: initialised here (and left afterwards) unless it was already one."""
    found = swarm_info()
    networks_before = network_names() & {"ingress", "docker_gwbridge"}
    initialised = False
    if found["LocalNodeState"] == "inactive":
        # The docker0 address (the first of its subnet, unless the engine names another): the
        # Docker-in-Docker node reaches the manager there.
        bridge = json.loads(docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}").stdout)[0]
        gateway = bridge.get("Gateway") or str(next(ipaddress.ip_network(bridge["Subnet"]).hosts()))
        docker("swarm", "init", "--advertise-addr", gateway)
        initialised = True
    elif found["LocalNodeState"] != "active" or not found["ControlAvailable"]:
        pytest.fail(
            f"this engine is in a swarm but not a manager ({found['LocalNodeState']}); the tests need one"
        )
    try:
        yield swarm_info()
    finally:
        if initialised:
            docker("swarm", "leave", "--force", check=False)
            if "docker_gwbridge" not in networks_before:
                # Made by the first task with an overlay network or a host-mode port; kept by `leave`.
                docker("network", "rm", "docker_gwbridge", check=False)
        # A swarm found running keeps the docker_gwbridge its tasks made: the engine recreates it.
        watched = {"ingress", "docker_gwbridge"} if initialised else {"ingress"}
        after = (swarm_info()["LocalNodeState"], network_names() & watched)
        assert after == (found["LocalNodeState"], networks_before & watched), (
            "the swarm was not left as found"
        )


# ---- images ----------------------------------------------------------------------------------------


def derived(base: str, files: dict[str, str], tmp_path: Path, tag: str) -> str:
    for name, text in files.items():
        write(tmp_path / name, text)
    copies = "".join(f"COPY {name} /app/{name}\n" for name in files)
    write(tmp_path / "Dockerfile", f"FROM {base}\n{copies}")
    return build(tag, context=tmp_path)


@pytest.fixture(scope="module")
def releases(images, tmp_path_factory):
    """v1 (this repo's image) and three later releases: a good one, one whose /health fails, one whose
    pre-start script fails."""
    tag = unique("release")
    unhealthy_app = SEED_APP.replace('{"Hello": "World"}', '{"Hello": "unhealthy"}').replace(
        'return {"status": "ok"}',
        'from fastapi.responses import JSONResponse\n\n    return JSONResponse({"status": "no db"}, 503)',
    )
    assert "503" in unhealthy_app, "the seed app's /health changed: update this test"
    made = {}
    try:
        made["v2"] = derived(
            images["app"],
            {"app/main.py": SEED_APP.replace('{"Hello": "World"}', '{"Hello": "v2"}')},
            tmp_path_factory.mktemp("v2"),
            f"{tag}:v2",
        )
        made["unhealthy"] = derived(
            images["app"],
            {"app/main.py": unhealthy_app},
            tmp_path_factory.mktemp("unhealthy"),
            f"{tag}:unhealthy",
        )
        made["prestart_fails"] = derived(
            images["app"],
            {"prestart.sh": 'echo "migration failed: database unreachable" >&2\nexit 3\n'},
            tmp_path_factory.mktemp("prestart"),
            f"{tag}:prestart-fails",
        )
        yield {"v1": images["app"], **made}
    finally:
        for image in made.values():
            remove_image(image)


@pytest.fixture(scope="module")
def proxy_image(engine):
    tag = build(
        f"{unique('proxy')}:latest",
        context=REPO / "deploy" / "nginx",
        extra=["--build-arg", f"PROXY_BASE_IMAGE={python_image()}"],
    )
    yield tag
    remove_image(tag)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, which the clients trust (and nothing else)."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


def make_certificate(folder: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.fail("the swarm tests need the openssl command to make the proxy's certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", folder / "tls.key", "-out", folder / "tls.crt"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder / "tls.crt", folder / "tls.key"


# ---- the stack -------------------------------------------------------------------------------------


class Stack:
    def __init__(self, name: str, env: dict[str, str], releases: dict[str, str], cafile: Path):
        self.name, self.env, self.releases = name, env, releases
        self.app = f"{name}_app"
        self.url = f"https://127.0.0.1:{env['HTTPS_PORT']}"
        self.http_url = f"http://127.0.0.1:{env['HTTP_PORT']}"
        self.cafile = cafile

    def tls(self) -> ssl.SSLContext:
        """A new context trusting the stack's certificate: one per client thread (see clients.Load)."""
        return ssl.create_default_context(cafile=str(self.cafile))

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(DEPLOY), *args], env={**self.env, **env}, capture_output=True, text=True, timeout=420
        )

    def deploy(self, release: str | None = None, **env: str) -> tuple[subprocess.CompletedProcess, float]:
        """scripts/deploy.sh with a release (by default the one deployed) and its seconds."""
        started = time.monotonic()
        result = self.run("deploy", IMAGE=self.releases[release or self.release()], **env)
        return result, time.monotonic() - started

    def rollback(self) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        result = self.run("rollback")
        return result, time.monotonic() - started

    def release(self) -> str:
        """The release the app service is set to."""
        image = docker(
            "service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", self.app
        ).stdout
        return {image: name for name, image in self.releases.items()}[image.strip().split("@")[0]]

    def releases_running(self) -> set[str]:
        by_image = {image: name for name, image in self.releases.items()}
        return {by_image[t["Image"].split("@")[0]] for t in running(self.app)}

    def scale(self, replicas: int) -> None:
        docker("service", "scale", "--detach", f"{self.app}={replicas}")


def stack_leftovers(name: str) -> list[str]:
    label = f"label=com.docker.stack.namespace={name}"
    found = []
    for kind in ("service", "network", "secret", "config"):
        found += [f"{kind} {n}" for n in docker(kind, "ls", "-q", "--filter", label).stdout.split()]
    found += [f"container {c}" for c in docker("ps", "-aq", "--filter", label).stdout.split()]
    return found


@pytest.fixture(scope="module")
def swarm_stack(swarm, releases, proxy_image, certificate):
    name = unique("stack")
    subnet, _ = free_subnet()  # the stack's overlay network
    env = {
        **os.environ,
        "STACK": name,
        "IMAGE": releases["v1"],
        "PROXY_IMAGE": proxy_image,
        "TLS_CERT": str(certificate[0]),
        "TLS_KEY": str(certificate[1]),
        "HTTPS_PORT": str(free_port()),
        "HTTP_PORT": str(free_port()),
        "APP_SUBNET": subnet,
        "LOG_FORMAT": "json",
        "REPLICAS": "2",
        # The images exist on this engine only (and are loaded into the second node): no registry.
        "RESOLVE_IMAGE": "never",
        # The seed app is healthy within a second: a release that is not after 15 s never will be.
        "HEALTH_START_PERIOD": "15s",
        "DEPLOY_TIMEOUT": "300",
    }
    stack = Stack(name, env, releases, certificate[0])
    try:
        result, took = stack.deploy("v1")
        assert result.returncode == 0, result.stdout + result.stderr
        record("stack created", replicas=2, deploy_s=seconds(took))
        yield stack
    finally:
        docker("stack", "rm", name, check=False)
        # Removal is asynchronous: tasks stop, then the network goes.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not stack_leftovers(name), 90, f"stack {name} removed", interval=0.5)
        assert not stack_leftovers(name), f"stack {name} left {stack_leftovers(name)}"


@pytest.fixture
def stack(swarm_stack):
    """The module's stack as each test expects it: two running tasks of a good release, nothing under way."""
    state = update_status(swarm_stack.app).get("State")
    assert state not in ("updating", "rollback_started"), f"an update is still under way: {state}"
    if swarm_stack.release() not in ("v1", "v2"):
        swarm_stack.deploy("v1")
    if len(service_tasks(swarm_stack.app)) != 2 or len(running(swarm_stack.app)) != 2:
        swarm_stack.scale(2)
        wait_converged(swarm_stack.app, 2)
    return swarm_stack


def other(release: str) -> str:
    return "v2" if release == "v1" else "v1"


# ---- single node -----------------------------------------------------------------------------------


def test_the_stack_serves_tls_from_its_secrets_to_one_process_tasks(stack):
    token = unique("q")
    # Verified against our own certificate: the proxy serves the secret, not its self-signed fallback.
    with httpx.Client(verify=stack.tls()) as client:
        for i in range(20):
            assert client.get(f"{stack.url}/items/{i}?q={token}").json() == {"item_id": i, "q": token}
    redirect = httpx.get(f"{stack.http_url}/items/1", follow_redirects=False)
    assert redirect.status_code == 301
    assert redirect.headers["location"].startswith("https://")

    containers = task_containers(stack.app)
    assert len(containers) == 2
    entries = {}
    for cid in containers:
        c = Container.attach(cid, 0)
        info = c.inspect()
        assert info["Config"]["User"] == "10001:10001"
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert info["HostConfig"]["CapDrop"] == ["ALL"]
        # One process per task, and the limits seen from inside, where the worker sizing reads them.
        startup = startup_json(c.logs())
        assert (startup["process_manager"], startup["workers"]) == ("uvicorn", 1), startup
        assert (startup["cores"], startup["memory_limit"]) == (1, 256 * MiB), startup
        assert [row["args"].split(maxsplit=1)[1] for row in c.processes()] == ["-m asgi_launcher serve"]
        entries[cid] = [e for e in access_entries(c.logs()) if token in e["path"]]
    # Both tasks served; each request arrived as https from the client, not from the proxy's overlay
    # address: X-Forwarded-* are trusted from the stack's network.
    assert all(entries.values()), entries
    assert sum(map(len, entries.values())) == 20, entries
    overlay = ipaddress.ip_network(stack.env["APP_SUBNET"])
    for entry in (e for found in entries.values() for e in found):
        assert entry["scheme"] == "https", entry
        assert ipaddress.ip_address(entry["client"].rsplit(":", 1)[0]) not in overlay, entry


def test_an_app_reads_its_own_secret_from_run_secrets(swarm, releases):
    """docs/swarm.md's recipe: a secret for the app's user (owner 10001, mode 0400), read-only root."""
    name = unique("secret")
    job = unique("job")
    docker("secret", "create", name, "-", input="s3cret value\n")
    try:
        docker(
            "service", "create", "--detach", "--quiet", "--name", job,
            "--mode", "replicated-job", "--restart-condition", "none", "--user", "10001:10001", "--read-only",
            "--secret", f"source={name},target=db_password,uid=10001,gid=10001,mode=0400",
            releases["v1"], "python", "-c",
            "import pathlib; p = pathlib.Path('/run/secrets/db_password'); s = p.stat();"
            "print(repr(p.read_text().strip()), oct(s.st_mode & 0o777), s.st_uid)",
        )  # fmt: skip

        def finished():
            states = [t["CurrentState"] for t in json_rows("service", "ps", "--no-trunc", job)]
            assert not any(state.startswith(("Failed", "Rejected")) for state in states), states
            return states and all(state.startswith("Complete") for state in states)

        wait_for(finished, 60, "the job", interval=0.2)
        (cid,) = docker("ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={job}").stdout.split()
        assert Container.attach(cid, 0).logs().split() == ["'s3cret", "value'", "0o400", "10001"]
    finally:
        docker("service", "rm", job, check=False)
        wait_for(
            lambda: docker("secret", "rm", name, check=False).returncode == 0,
            30,
            "the secret removed",
            interval=0.5,
        )


@pytest.mark.timeout(600)
def test_a_rolling_update_and_a_rollback_lose_no_request(stack):
    before = stack.release()
    after = other(before)
    with Traffic(stack.url, stack.tls) as traffic:
        started = time.monotonic()
        result, took = stack.deploy(after)
        done = time.monotonic()
        traffic.settle()
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.releases_running() == {after}
    assert traffic.failed == 0, traffic.errors[:5]
    seen = traffic.answers(since=started)
    # Both releases answered while the update ran, the new one alone once deploy.sh returned.
    assert seen[0] == ANSWERS[before], seen
    assert seen[-1] == ANSWERS[after], seen
    assert set(traffic.answers(since=done)) == {ANSWERS[after]}
    old = [at for at, answer in traffic.seen if answer == ANSWERS[before] and at >= started]
    new = [at for at, answer in traffic.seen if answer == ANSWERS[after]]
    record(
        "rolling update, 2 tasks (start-first)",
        **traffic.figures(
            deploy_s=seconds(took),
            update_s=update_seconds(stack.app),
            new_first_answered_s=seconds(min(new) - started),
            old_last_answered_s=seconds(max(old) - started),
        ),
    )

    with Traffic(stack.url, stack.tls) as traffic:
        started = time.monotonic()
        result, took = stack.rollback()
        done = time.monotonic()
        traffic.settle()
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.release() == before
    assert stack.releases_running() == {before}
    assert traffic.failed == 0, traffic.errors[:5]
    assert set(traffic.answers(since=done)) == {ANSWERS[before]}
    record(
        "scripts/deploy.sh rollback, 2 tasks",
        **traffic.figures(deploy_s=seconds(took), update_s=update_seconds(stack.app)),
    )


@pytest.mark.timeout(600)
def test_scaling_2_4_1_and_updating_a_lone_task_lose_no_request(stack):
    before = stack.release()
    with Traffic(stack.url, stack.tls) as traffic:
        stack.scale(4)
        up = wait_converged(stack.app, 4)
        # The proxy follows new tasks without a reload: every task gets requests.
        containers = task_containers(stack.app)
        wait_for(
            lambda: all(served_load(Container.attach(c, 0).logs()) for c in containers),
            30,
            "requests on every task",
        )
        stack.scale(1)
        down = time.monotonic()
        wait_converged(stack.app, 1)
        wait_for(lambda: len(task_containers(stack.app)) == 1, 60, "the other tasks stopped", interval=0.2)
        down = time.monotonic() - down
        traffic.settle()
        scaled = traffic.figures(to_4_s=seconds(up), to_1_s=seconds(down))
        # One task left: only start-first keeps the service answering while it is replaced.
        sent, failed = traffic.sent, traffic.failed
        result, took = stack.deploy(other(before), REPLICAS="1")
        traffic.settle()
    assert len(containers) == 4
    assert scaled["failed"] == 0, traffic.errors[:5]
    record("scale 2 -> 4 -> 1", **scaled)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.releases_running() == {other(before)}
    assert traffic.failed == 0, traffic.errors[:5]
    record(
        "rolling update, 1 task (start-first)",
        **traffic.figures(
            deploy_s=seconds(took),
            update_s=update_seconds(stack.app),
            sent=traffic.sent - sent,
            failed=traffic.failed - failed,
        ),
    )


@pytest.mark.timeout(600)
def test_a_killed_task_is_replaced(stack):
    with Traffic(stack.url, stack.tls) as traffic:
        victim = task_containers(stack.app)[0]
        others = {t["ID"] for t in running(stack.app)}
        killed = time.monotonic()
        docker("kill", victim)
        wait_for(lambda: len(running(stack.app)) < 2, 30, "the task to fail", interval=0.1)
        noticed = time.monotonic() - killed
        wait_for(
            lambda: len(now := running(stack.app)) == 2 and not {t["ID"] for t in now} >= others,
            90,
            "a replacement task",
            interval=0.2,
        )
        recovered = time.monotonic() - killed
        traffic.settle()
    record(
        "docker kill of 1 of 2 tasks",
        **traffic.figures(noticed_s=seconds(noticed), replaced_s=seconds(recovered), bound=IN_FLIGHT),
    )
    assert traffic.failed <= IN_FLIGHT, traffic.errors[:10]
    assert victim not in task_containers(stack.app)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("release", "why", "what"),
    [
        (
            "unhealthy",
            r"\((none of its tasks got healthy|.*unhealthy container.*)\)$",
            "healthcheck never passes",
        ),
        ("prestart_fails", r'\("task: non-zero exit \(3\)"\)$', "pre-start script fails"),
    ],
    ids=["healthcheck-never-passes", "prestart-fails"],
)
def test_a_failing_update_rolls_back_by_itself_while_the_old_release_serves(stack, release, why, what):
    before = stack.release()
    with Traffic(stack.url, stack.tls) as traffic:
        result, took = stack.deploy(release)
        traffic.settle()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the update to {stack.releases[release]} failed and was rolled back" in result.stderr
    assert re.search(why, result.stderr.strip()), result.stderr  # deploy.sh says why
    assert update_status(stack.app)["State"] == "rollback_completed"
    assert stack.release() == before
    assert stack.releases_running() == {before}
    # The failing release never answered: a task joins tasks.app, which the proxy resolves, only once healthy.
    assert set(traffic.answers()) == {ANSWERS[before]}
    assert traffic.failed == 0, traffic.errors[:5]
    record(
        f"update to a release whose {what} -> automatic rollback",
        **traffic.figures(deploy_s=seconds(took), health_start_period_s=15),
    )


@pytest.mark.timeout(600)
def test_a_new_certificate_is_a_new_secret_and_a_new_proxy_task(stack, certificate, tmp_path):
    """The cost of the one step that is not zero-downtime: the proxy is replaced stop-first (a port
    published in host mode is bound by one task per node). Measured, not bounded."""
    new_cert, new_key = make_certificate(tmp_path)

    def both() -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(certificate[0]))
        context.load_verify_locations(cafile=str(new_cert))
        return context

    app_tasks = {t["ID"] for t in running(stack.app)}
    try:
        with Traffic(stack.url, both) as traffic:
            started = time.monotonic()
            result, took = stack.deploy(TLS_CERT=str(new_cert), TLS_KEY=str(new_key))
            traffic.settle()
        assert result.returncode == 0, result.stdout + result.stderr
        # Served with the new certificate alone, by a new proxy task; the app's tasks were left alone.
        assert (
            httpx.get(stack.url, verify=ssl.create_default_context(cafile=str(new_cert))).status_code == 200
        )
        assert {t["ID"] for t in running(stack.app)} == app_tasks
        failures = [at for at, answer in traffic.seen if answer.startswith("error: ")]
        record(
            "new TLS certificate: proxy task replaced (stop-first)",
            **traffic.figures(
                deploy_s=seconds(took),
                observer_failed=len(failures),
                observer_outage_s=seconds(max(failures) - min(failures)) if failures else 0.0,
                outage_started_s=seconds(min(failures) - started) if failures else None,
            ),
        )
    finally:
        stack.deploy()  # back to the module's certificate


def test_compose_up_redeploy_drops_requests(releases):
    """The figure for the README: `docker compose up -d` with a new image, one server, the same load."""
    name = unique("redeploy")
    port = free_port()
    env = {
        **os.environ,
        "PYTHON_IMAGE": python_image(),
        "IMAGE": releases["v1"],
        "HOST_BIND": "127.0.0.1",
        "HOST_PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}"
    try:
        run_compose(name, "up", "-d", "--wait", "--no-build", env=env)
        with Traffic(url, verify=True) as traffic:
            started = time.monotonic()
            run_compose(name, "up", "-d", "--no-build", env={**env, "IMAGE": releases["v2"]})
            returned = time.monotonic() - started
            wait_for(
                lambda: ANSWERS["v2"] in traffic.answers(since=started), 60, "the new release", interval=0.1
            )
            switched = time.monotonic() - started
            traffic.settle()
        failures = [at for at, answer in traffic.seen if answer.startswith("error: ")]
        record(
            "docker compose up -d with a new image (one server, no proxy)",
            **traffic.figures(
                load=f"{CLIENTS} keep-alive + {CLIENTS} new-connection clients over plain HTTP, 1 observer",
                up_s=seconds(returned),
                new_release_answered_s=seconds(switched),
                # A refused connection fails at once and its client asks again: the window says more.
                observer_failed=len(failures),
                observer_outage_s=seconds(max(failures) - min(failures)) if failures else 0.0,
            ),
        )
        assert traffic.answers()[0] == ANSWERS["v1"]
        assert traffic.answers()[-1] == ANSWERS["v2"]
        assert traffic.sent > traffic.failed
    finally:
        subprocess.run(
            [COMPOSE, "-p", name, "-f", str(REPO / "docker-compose.yml"), "down", "-v", "--remove-orphans"],
            capture_output=True,
            env=env,
            timeout=120,
        )


# ---- two nodes -------------------------------------------------------------------------------------

DIND_DOCKERFILE = """\
FROM {base}
# Debian's engine; on trixie its CLI is a package of its own.
RUN apt-get update \\
    && apt-get install -y --no-install-recommends docker.io docker-cli iptables ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/docker
ENTRYPOINT ["dockerd"]
"""


class Node:
    """A second engine in a container, driven through its own CLI over its own socket."""

    def __init__(self, name: str):
        self.name = name
        self.host = name  # its hostname, as docker node ls and docker service ps show it
        self.address = ""
        self.node_id = ""

    def docker(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return docker("exec", "-i", self.name, "docker", *args, check=check, **kwargs)


@pytest.fixture(scope="module")
def second_node(swarm, tmp_path_factory):
    if not swarm["NodeAddr"].startswith("172."):
        pytest.skip(f"the swarm was found advertised at {swarm['NodeAddr']}, which a container cannot reach")
    context = tmp_path_factory.mktemp("dind")
    write(context / "Dockerfile", DIND_DOCKERFILE.format(base=python_image()))
    tag = build(f"{unique('dind')}:latest", context=context)
    node = Node(unique("node"))
    try:
        # The flags of ../shared/container-host.md: --privileged fails on these VMs.
        docker(
            "run", "-d", "--name", node.name, "--hostname", node.name,
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "apparmor=unconfined", "--security-opt", "seccomp=unconfined",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup", "-e", "DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1",
            tag, f"--cgroup-parent=/{node.name}",
        )  # fmt: skip

        def inner_engine_up():
            if docker("inspect", "-f", "{{.State.Running}}", node.name).stdout.strip() != "true":
                raise AssertionError(
                    f"the node's container stopped:\n{Container.attach(node.name, 0).logs()}"
                )
            return node.docker("info", check=False).returncode == 0

        wait_for(inner_engine_up, 120, "the inner engine", interval=0.5)
        node.address = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", node.name).stdout.strip()
        token = docker("swarm", "join-token", "-q", "worker").stdout.strip()
        node.docker(
            "swarm", "join", "--token", token, "--advertise-addr", node.address, f"{swarm['NodeAddr']}:2377"
        )
        node.node_id = node.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
        wait_for(
            lambda: (
                docker("node", "inspect", "-f", "{{.Status.State}}", node.node_id).stdout.strip() == "ready"
            ),
            60,
            "the second node ready",
        )
        yield node
    finally:
        docker("rm", "-f", "-v", node.name, check=False)
        if node.node_id:
            docker("node", "rm", "--force", node.node_id, check=False)
        # The inner engine's cgroups, under the host's hierarchy (empty once its container is gone).
        for root in Path("/sys/fs/cgroup").glob(f"*/{node.name}"):
            for folder in [*sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True), root]:
                if folder.is_dir():
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        remove_image(tag)


@pytest.mark.timeout(900)
def test_two_nodes_spread_a_drain_and_the_loss_of_a_node(stack, second_node):
    node = second_node
    manager_host = docker("node", "inspect", "-f", "{{.Description.Hostname}}", "self").stdout.strip()
    # No registry: the image goes into the second node by hand.
    image = stack.releases[stack.release()]
    saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    node.docker("load", stdin=saved.stdout, timeout=300)
    assert saved.wait(60) == 0

    with Traffic(stack.url, stack.tls) as traffic:
        stack.scale(4)
        wait_converged(stack.app, 4)
        remote = service_tasks(stack.app, node.host)
        assert 0 < len(remote) < 4, service_tasks(stack.app)
        # Tasks on the second node answer, across the overlay network, through the proxy on the first.
        inner = node.docker(
            "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={stack.app}"
        ).stdout.split()
        assert len(inner) == len(remote)
        wait_for(
            lambda: all(served_load(node.docker("logs", c).stdout) for c in inner),
            30,
            "requests served on the second node",
        )
        spread = {"manager": 4 - len(remote), "second": len(remote)}

        docker("node", "update", "--availability", "drain", node.node_id)
        drain_s = wait_converged(stack.app, 4, hosts={manager_host})
        traffic.settle()
        drain = traffic.figures(tasks=spread, moved_s=seconds(drain_s))

        # Back in service; Swarm does not move running tasks, so new ones are placed there.
        docker("node", "update", "--availability", "active", node.node_id)
        stack.scale(2)
        wait_converged(stack.app, 2)
        stack.scale(4)
        wait_converged(stack.app, 4)
        remote = service_tasks(stack.app, node.host)
        assert remote, service_tasks(stack.app)

        sent, failed, observer_failed = traffic.sent, traffic.failed, len(traffic.errors_seen)
        killed = time.monotonic()
        docker("kill", node.name)
        wait_for(
            lambda: (
                docker("node", "inspect", "-f", "{{.Status.State}}", node.node_id).stdout.strip() == "down"
            ),
            90,
            "the node marked down",
            interval=0.2,
        )
        down = time.monotonic() - killed
        wait_converged(stack.app, 4, timeout=120, hosts={manager_host})
        recovered = time.monotonic() - killed
        traffic.settle()
    assert drain["failed"] == 0, traffic.errors[:5]
    record("second node drained (4 tasks over 2 nodes)", **drain)
    lost = {"sent": traffic.sent - sent, "failed": traffic.failed - failed}
    observer_failed = len(traffic.errors_seen) - observer_failed
    record(
        "second node killed (docker kill of the Docker-in-Docker node)",
        **traffic.figures(
            **lost,
            bound=IN_FLIGHT,
            tasks_lost=len(remote),
            node_down_s=seconds(down),
            observer_failed=observer_failed,
            recovered_s=seconds(recovered),
        ),
    )
    assert lost["failed"] <= IN_FLIGHT, traffic.errors[:10]
    # Until the node is marked down its tasks stay in tasks.app, silent: the proxy gives up on one
    # after its 1 s connect timeout and tries another, so the paced observer never failed (with
    # nginx's default of 60 s, a request that tries a dead task first waits for the client's timeout).
    assert observer_failed == 0, traffic.errors_seen
