"""The compose profile "lb": replicas behind nginx terminating TLS, on a real engine; the app under a
path prefix there too (ROOT_PATH)."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest
from support.clients import Load, record
from support.dockerutil import COMPOSE, Container, free_subnet, python_image, remove_image, unique
from support.dockerutil import compose as run_compose
from support.logs import access_entries
from support.proc import REPO, free_port

REPLICAS = 3
PREFIX = "/api"  # ROOT_PATH: the proxy serves the app under it too, stripping it on the way in


@pytest.fixture(scope="module")
def lb(engine):
    name = unique("lb")
    https, http = free_port(), free_port()
    base = python_image()
    subnet, proxy_ip = free_subnet()
    env = {
        **os.environ,
        "PYTHON_IMAGE": base,
        "PROXY_BASE_IMAGE": base,
        "IMAGE": f"{name}-app:latest",
        "PROXY_IMAGE": f"{name}-proxy:latest",
        "HOST_BIND": "127.0.0.1",
        "HTTPS_PORT": str(https),
        "HTTP_PORT": str(http),
        "LOG_FORMAT": "json",
        "DOCKER_BUILDKIT": "1",
        # Its own subnet, so that parallel runs and the default do not collide.
        "LB_SUBNET": subnet,
        "PROXY_IP": proxy_ip,
        "ROOT_PATH": PREFIX,
    }

    def compose(*args):
        return run_compose(name, "--profile", "lb", *args, env=env).stdout

    try:
        compose("up", "-d", "--wait", "--build", "--scale", f"replica={REPLICAS}", "replica", "proxy")
        yield {
            "compose": compose,
            "url": f"https://127.0.0.1:{https}",
            "http_url": f"http://127.0.0.1:{http}",
            "proxy_ip": proxy_ip,
        }
    finally:
        subprocess.run(
            [
                COMPOSE,
                "-p",
                name,
                "-f",
                str(REPO / "docker-compose.yml"),
                "--profile",
                "lb",
                "down",
                "-v",
                "--remove-orphans",
            ],
            capture_output=True,
            env=env,
            timeout=300,
        )
        remove_image(env["IMAGE"])
        remove_image(env["PROXY_IMAGE"])


def replica_ids(lb) -> list[str]:
    return lb["compose"]("ps", "-q", "replica").split()


def test_requests_spread_over_every_replica_with_https_and_the_real_client(lb):
    assert len(replica_ids(lb)) == REPLICAS
    with httpx.Client(verify=False) as client:  # noqa: S501 - the proxy made itself a self-signed certificate
        for i in range(60):
            assert client.get(f"{lb['url']}/items/{i}").json() == {"item_id": i, "q": None}
    counts = {}
    for cid in replica_ids(lb):
        entries = [
            e for e in access_entries(Container.attach(cid, 0).logs()) if e["route"] == "/items/{item_id}"
        ]
        counts[cid[:12]] = len(entries)
        for entry in entries:
            assert entry["scheme"] == "https"  # X-Forwarded-Proto from the trusted proxy
            # The client as the proxy saw it (Docker's gateway here), not the proxy's own address.
            assert not entry["client"].startswith(lb["proxy_ip"] + ":"), entry
    assert sum(counts.values()) == 60
    assert all(count > 0 for count in counts.values()), counts


def test_the_app_and_its_docs_keep_the_prefix_the_proxy_strips(lb):
    """Behind a proxy that strips a prefix, links and the docs keep it (what tiangolo-fastapi-docker#55
    asked of his image)."""
    with httpx.Client(verify=False) as client:  # noqa: S501 - the proxy's self-signed certificate
        assert client.get(f"{lb['url']}{PREFIX}/items/4141").json() == {"item_id": 4141, "q": None}
        docs = client.get(f"{lb['url']}{PREFIX}/docs")
        assert docs.status_code == 200
        assert f"'{PREFIX}/openapi.json'" in docs.text  # what the browser fetches next, through the proxy
        schema = client.get(f"{lb['url']}{PREFIX}/openapi.json").json()
        assert schema["servers"] == [{"url": PREFIX}]
        assert "/items/{item_id}" in schema["paths"]
    entries = [
        e
        for cid in replica_ids(lb)
        for e in access_entries(Container.attach(cid, 0).logs())
        if e["route"] == "/items/{item_id}" and e["path"].endswith("/items/4141")
    ]
    assert [e["path"] for e in entries] == [f"{PREFIX}/items/4141"]


def test_plain_http_is_redirected_to_https(lb):
    response = httpx.get(f"{lb['http_url']}/items/1", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://")


def test_a_replica_can_stop_without_losing_requests(lb):
    with Load(lb["url"], path="/health", clients=4, verify=False) as load:
        load.wait_requests(200)
        victim = replica_ids(lb)[0]
        stopped_at = time.monotonic()
        subprocess.run(["docker", "stop", "-t", "30", victim], capture_output=True, timeout=60, check=True)
        stop_seconds = time.monotonic() - stopped_at
        load.wait_requests(load.outcome.ok + 300)
    record(
        "one of 3 replicas stopped behind nginx (container)",
        load="4 keep-alive clients over TLS",
        requests=load.outcome.ok,
        failed=load.outcome.failed,
        stop_s=round(stop_seconds, 2),
    )
    assert load.outcome.failed == 0, load.outcome.errors[:5]
    lb["compose"]("up", "-d", "--wait", "--scale", f"replica={REPLICAS}", "replica")  # back for other tests
