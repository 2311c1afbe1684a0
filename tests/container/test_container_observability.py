"""Metrics, JSON logs and proxy headers in the real container."""

from __future__ import annotations

import httpx
import pytest
from support.dockerutil import HARDENED, docker
from support.logs import json_lines
from support.metrics import scrape, total
from support.proc import startup_json, wait_for


def test_metrics_endpoint_in_a_hardened_container(images, run_container):
    c = run_container(images["app"], args=HARDENED, also_publish=[9100], env={"WEB_CONCURRENCY": "3"})
    c.wait_ready()
    c.wait_workers(3)
    for i in range(30):
        with httpx.Client() as client:  # a connection per request: spread over the workers
            assert client.get(f"{c.url}/items/{i}").status_code == 200

    def counted():
        return total(scrape(c), "http_requests_total", method="GET", route="/items/{item_id}", status="200")

    wait_for(lambda: counted() == 30, 10, "30 requests counted")
    assert total(scrape(c), "gunicorn_workers") == 3


# Asked from inside the container: through a published port, Docker's proxy accepts the connection
# whether or not anything listens behind it, so "closed" cannot be told from other failures there.
PORT_PROBE = """
import socket
s = socket.socket()
try:
    s.connect(("127.0.0.1", 9100))
except ConnectionRefusedError:
    print("refused")
else:
    s.sendall(b"GET /metrics HTTP/1.0\\r\\n\\r\\n")
    print(s.recv(64).split()[1].decode())
"""


@pytest.mark.parametrize(("metrics", "answer", "port"), [("on", "200", 9100), ("off", "refused", None)])
def test_metrics_off_in_the_container(images, run_container, metrics, answer, port):
    c = run_container(images["app"], env={"METRICS": metrics})
    c.wait_ready()  # the master opens the metrics port before it starts any worker
    assert startup_json(c.logs())["metrics_port"] == port
    assert docker("exec", c.name, "python", "-c", PORT_PROBE).stdout.strip() == answer


def test_json_logs_in_the_container(images, run_container):
    c = run_container(images["app"], env={"LOG_FORMAT": "json"})
    c.wait_ready()
    c.get("/items/5?q=somequery")
    wait_for(lambda: '"logger": "access"' in c.logs() and "/items/5" in c.logs(), 10, "the access entry")
    c.stop()
    entries = json_lines(c.logs())
    assert entries[0]["message"] == "Checking for script in /app/prestart.sh"
    assert entries[0]["pid"] == 1  # start.sh's pid, which Gunicorn's master inherits
    assert entries[-1]["message"] == "Shutting down: Master"
    (access,) = [e for e in entries if e.get("logger") == "access" and e["path"] == "/items/5?q=somequery"]
    assert (access["status"], access["route"], access["method"]) == (200, "/items/{item_id}", "GET")


def test_forwarded_headers_in_the_container(probe_image, run_container):
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    # By default only 127.0.0.1 is trusted: the host's connection arrives from Docker's gateway.
    untrusted = run_container(probe_image)
    untrusted.wait_ready()
    seen = httpx.get(untrusted.url + "/whoami", headers=headers).json()
    assert seen["client"] != "203.0.113.9"
    assert seen["scheme"] == "http"
    # Trust that peer (the proxy, as far as the container can tell): the headers now count.
    trusted = run_container(probe_image, env={"FORWARDED_ALLOW_IPS": seen["client"]})
    trusted.wait_ready()
    assert httpx.get(trusted.url + "/whoami", headers=headers).json() == {
        "client": "203.0.113.9",
        "scheme": "https",
    }
    wait_for(
        lambda: "203.0.113.9:" in trusted.logs() and '"GET /whoami HTTP/1.1" 200' in trusted.logs(),
        5,
        "the access line with the real client",
    )
