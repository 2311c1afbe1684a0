"""The same faults, injected into the real container; and what the image does not contain."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import httpx
import pytest
from packaging.markers import Marker
from support.clients import (
    REPLACED_WITHIN,
    SLOWLORIS_LATENCY,
    Load,
    answering_pid,
    get_ignoring_errors,
    record,
)
from support.dockerutil import HARDENED, docker, inside_pid
from support.proc import REPO, wait_for
from support.rawhttp import BAD_REQUESTS, GOOD_REQUESTS, assert_outcome, normal_latencies_under_slowloris

LOCK = (REPO / "requirements.txt").read_text()


def test_sighup_in_the_container(probe_image, run_container):
    c = run_container(probe_image, args=HARDENED, env={"WEB_CONCURRENCY": "2"})
    c.wait_ready()
    old = c.worker_pids()
    with Load(c.url, clients=4) as load:
        load.wait_requests(300)
        docker("kill", "-s", "HUP", c.name)
        wait_for(lambda: len(now := c.worker_pids()) == 2 and not now & old, 30, "new workers")
        load.wait_requests(load.outcome.ok + 300)
    record(
        "SIGHUP reload (container)",
        load="4 keep-alive clients",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
    )
    assert load.outcome.failed == 0, load.outcome.errors[:5]


def test_killed_worker_in_the_container(probe_image, run_container):
    c = run_container(probe_image, args=HARDENED, env={"WEB_CONCURRENCY": "2"})
    c.wait_ready()
    clients = 8
    # The app answers with its pid inside the container, which differs from the host's.
    old = {inside_pid(pid) for pid in c.worker_pids()}
    with Load(c.url, clients=clients) as load:
        load.wait_requests(300)
        victim = c.workers()[0]["pid"]
        os.kill(victim, signal.SIGKILL)  # the container's processes are the host's, seen from here
        killed_at = time.monotonic()
        wait_for(
            lambda: answering_pid(c.url) not in old | {None},
            REPLACED_WITHIN,
            "the replacement",
            interval=0.01,
        )
        replaced_after = time.monotonic() - killed_at
        load.wait_requests(load.outcome.ok + 300)
    record(
        "kill -9 of a worker (container)",
        load=f"{clients} keep-alive clients",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
        replacement_serving_after_s=round(replaced_after, 2),
    )
    assert load.outcome.failed <= clients, load.outcome.errors


def test_hung_worker_in_the_container(probe_image, run_container):
    c = run_container(probe_image, env={"WEB_CONCURRENCY": "2", "TIMEOUT": "3"})
    c.wait_ready()
    old = c.worker_pids()
    threading.Thread(target=get_ignoring_errors, args=(c.url + "/block?seconds=60",), daemon=True).start()
    with Load(c.url, clients=2, keepalive=False) as load:
        wait_for(lambda: (old - c.worker_pids()) and len(c.worker_pids()) == 2, 20, "the replacement")
        load.wait_requests(load.outcome.ok + 50)
    record(
        "worker blocked past TIMEOUT=3 (container)",
        load="2 clients, new connection per request",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
    )
    assert load.outcome.failed <= 2, load.outcome.errors[:5]
    assert re.search(r"timed out: no heartbeat for 3s .*serving: GET /block\?seconds=60", c.logs())


def test_bad_http_input_in_the_container(probe_image, run_container):
    """Through Docker's port publishing: each bad request is refused with a 4xx and its connection
    closed, and the next one served; the valid ones, sent the same way, are served."""
    c = run_container(probe_image, args=HARDENED)
    c.wait_ready()
    for name, case in BAD_REQUESTS.items():
        assert_outcome(c.port, case, name)
        assert_outcome(c.port, GOOD_REQUESTS["valid GET"], f"valid GET after {name}")
    for name, case in GOOD_REQUESTS.items():
        assert_outcome(c.port, case, name)


def test_slow_clients_in_the_container(probe_image, run_container):
    c = run_container(probe_image)
    c.wait_ready()
    latencies = normal_latencies_under_slowloris(
        c.port, lambda: httpx.get(c.url + "/", timeout=5).status_code
    )
    record(
        "200 slowloris connections (container)",
        normal_requests=len(latencies),
        worst_latency_ms=round(max(latencies) * 1000, 1),
    )
    assert max(latencies) < SLOWLORIS_LATENCY, latencies


def test_stop_lets_requests_in_flight_finish_within_graceful_timeout(probe_image, run_container):
    c = run_container(probe_image, env={"GRACEFUL_TIMEOUT": "5"})
    c.wait_ready()
    results = []
    clients = [
        threading.Thread(target=lambda: results.append(httpx.get(c.url + "/slow?seconds=2", timeout=30)))
        for _ in range(3)
    ]
    for client in clients:
        client.start()
    wait_for(lambda: c.logs().count("slow request started") == 3, 10, "three requests in flight")
    elapsed = c.stop(timeout=20)
    for client in clients:
        client.join(30)
    record(
        "docker stop with 3 requests in flight (GRACEFUL_TIMEOUT=5)",
        completed=len([r for r in results if r.status_code == 200]),
        stop_s=round(elapsed, 2),
    )
    assert [r.json() for r in results] == [{"slept": 2.0}] * 3
    assert elapsed < 15  # below docker stop's 20 s, after which the exit code would be 137
    assert c.inspect()["State"]["ExitCode"] == 0


def test_memory_limit_with_memory_per_worker_does_not_crash_loop(probe_image, run_container):
    c = run_container(
        probe_image, args=["--memory", "256m"], env={"WORKERS_PER_CORE": "4", "MEMORY_PER_WORKER": "100M"}
    )
    c.wait_ready()
    assert len(c.wait_workers(2)) == 2  # 8 by CPU, 2 by memory
    before = c.worker_pids()
    with Load(c.url, clients=4, keepalive=False) as load:
        load.wait_requests(1000, timeout=60)
    state = c.inspect()["State"]
    assert state["Running"]
    assert not state["OOMKilled"]
    assert c.worker_pids() == before  # no worker was killed and replaced
    assert load.outcome.failed == 0
    assert "exited with code" not in c.logs()
    assert "was sent SIGKILL" not in c.logs()


@pytest.mark.parametrize(("metrics", "ports"), [("on", {80, 9100}), ("off", {80})])
def test_only_the_app_and_metrics_ports_listen(images, run_container, metrics, ports):
    c = run_container(images["app"], env={"METRICS": metrics})
    c.wait_ready()
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in docker("exec", c.name, "cat", table).stdout.splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening.add(int(fields[1].rsplit(":", 1)[1], 16))
    assert listening == ports


def test_no_build_tools_secrets_or_caches_in_the_image(images):
    script = (
        # The slim tags' make is a stub last on PATH (it names the full tag): not a build tool.
        "for tool in gcc cc c++ make git curl wget; do found=$(command -v $tool) "
        '&& [ "${found%/*}" != /usr/lib/asgi-server/hints ] && echo tool:$tool; done; '
        "for dir in /root/.cache /app/.env /app/.git /opt/venv/.cache; do [ -e $dir ] && echo path:$dir; "
        "done; "
        '[ -z "$(ls -A /tmp)" ] || echo tmp-not-empty; '
        "find / -xdev \\( -name 'id_rsa*' -o -name '*.key' -o -name '.netrc' -o -name '.pypirc' \\) "
        "-printf 'secret:%p\\n' 2>/dev/null; true"
    )
    assert docker("run", "--rm", "--user", "0", images["app"], "bash", "-c", script).stdout == ""
    # The positive control: the same search finds each kind of thing once it is there.
    plant = "ln -s /bin/true /usr/local/bin/git; mkdir /root/.cache; touch /app/.env /tmp/x /root/id_rsa; "
    found = docker("run", "--rm", "--user", "0", images["app"], "bash", "-c", plant + script).stdout.split()
    assert found == [
        "tool:git",
        "path:/root/.cache",
        "path:/app/.env",
        "tmp-not-empty",
        "secret:/root/id_rsa",
    ]


def test_the_image_holds_exactly_the_pinned_requirements(images):
    """The venv is the lock (requirements.txt), and the SBOM inside the image lists the same packages."""
    python = docker(
        "run", "--rm", images["app"], "python", "-c", "import platform; print(platform.python_version())"
    )
    where = {"sys_platform": "linux", "platform_python_implementation": "CPython"}
    where["python_full_version"] = python.stdout.strip()
    lock = {}
    for match in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)(?: ; ([^\\]*?))? \\$", LOCK, re.MULTILINE):
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate(where):  # not the packages of other platforms
            lock[name.lower().replace("_", "-")] = version
    locked_pip = lock.pop("pip")  # the venv's installer is locked too; pip freeze leaves it out
    frozen = docker("run", "--rm", images["app"], "pip", "freeze", "--exclude", "asgi-launcher").stdout
    installed = dict(line.lower().replace("_", "-").split("==") for line in frozen.splitlines())
    assert installed == lock
    sbom_path = json.loads(docker("image", "inspect", images["app"]).stdout)[0]["Config"]["Labels"][
        "dev.asgi-server.sbom"
    ]
    sbom = json.loads(docker("run", "--rm", images["app"], "cat", sbom_path).stdout)
    listed = {c["name"].lower().replace("_", "-"): c["version"] for c in sbom["components"]}
    assert listed.pop("pip") == locked_pip
    assert listed == installed
    assert sbom["metadata"]["component"]["name"] == "asgi-launcher"
