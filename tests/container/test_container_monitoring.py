"""The compose profile "monitoring": the app and a real Prometheus (Debian's package), read through its
HTTP API: the counts, rates and p99 a known load implies, the recording rules, every query of the
Grafana dashboard, and a killed worker in the restart metric."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import httpx
import pytest
from support.dockerutil import COMPOSE, Container, python_image, remove_image, unique
from support.dockerutil import compose as run_compose
from support.proc import REPO, free_port, wait_for

DASHBOARD = REPO / "deploy" / "grafana" / "asgi-server.json"
JOB = "asgi-server"
# The load: (path, times); /status/{code} answers with that status, /slow sleeps 0.3 s.
LOAD = [("/items/{i}", 120), ("/status/404", 30), ("/status/500", 20), ("/slow?seconds=0.3", 12)]


@pytest.fixture(scope="module")
def stack(ops_image):
    name = unique("mon")
    app_port, prometheus_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHON_IMAGE": python_image(),
        "PROMETHEUS_BASE_IMAGE": python_image(),  # Debian trixie: its prometheus package
        "IMAGE": ops_image,  # the app: built already, from tests/apps/ops.py
        "PROMETHEUS_IMAGE": f"{name}-prometheus:latest",
        "HOST_BIND": "127.0.0.1",
        "HOST_PORT": str(app_port),
        "PROMETHEUS_BIND": "127.0.0.1",
        "PROMETHEUS_PORT": str(prometheus_port),
        "SCRAPE_INTERVAL": "1s",
        "WEB_CONCURRENCY": "2",
        "CPUS": "1",
        "MEMORY_LIMIT": "512m",
        "DOCKER_BUILDKIT": "1",
    }

    def compose(*args):
        return run_compose(name, "--profile", "monitoring", *args, env=env).stdout

    try:
        compose("build", "prometheus")
        compose("up", "-d", "--wait", "--no-build")
        app = Container.attach(compose("ps", "-q", "app").strip(), app_port)
        yield {"app": app, "prometheus": f"http://127.0.0.1:{prometheus_port}"}
    finally:
        project = [COMPOSE, "-p", name, "-f", str(REPO / "docker-compose.yml"), "--profile", "monitoring"]
        subprocess.run(
            [*project, "down", "-v", "--remove-orphans"],
            capture_output=True,
            env=env,
            timeout=300,
        )
        remove_image(env["PROMETHEUS_IMAGE"])


def query(stack, expr: str) -> list[dict]:
    response = httpx.get(f"{stack['prometheus']}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", (expr, body)
    return body["data"]["result"]


def scalar(stack, expr: str) -> float | None:
    result = query(stack, expr)
    assert len(result) <= 1, (expr, result)
    return float(result[0]["value"][1]) if result else None


def by(stack, expr: str, label: str) -> dict[str, float]:
    return {series["metric"].get(label): float(series["value"][1]) for series in query(stack, expr)}


def send(app: Container, paths: list[str], clients: int = 4) -> None:
    pending = list(paths)
    lock = threading.Lock()
    failures = []

    def client():
        with httpx.Client(base_url=app.url, timeout=30) as http:
            while True:
                with lock:
                    if not pending:
                        return
                    path = pending.pop()
                try:
                    http.get(path)
                except httpx.HTTPError as error:
                    failures.append(error)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:3]


def scraped_total(stack) -> float:
    return scalar(stack, f'sum(http_requests_total{{job="{JOB}"}})') or 0


def test_prometheus_reads_what_a_known_load_implies(stack):
    wait_for(lambda: scalar(stack, f'up{{job="{JOB}"}}') == 1, 60, "the app's metrics scraped")
    warm = [path.format(i=0) for path, _ in LOAD]  # every series exists before the load is measured
    send(stack["app"], warm)
    wait_for(lambda: scraped_total(stack) == len(warm), 30, "the warm-up scraped")
    paths = [path.format(i=n) for path, times in LOAD for n in range(1, times + 1)]
    send(stack["app"], paths)
    expected = len(warm) + len(paths)
    wait_for(lambda: scraped_total(stack) == expected, 30, f"{expected} requests scraped")

    # Counts: exact (the healthchecks are counted apart, not here).
    counts = {
        (series["metric"]["route"], series["metric"]["status"]): float(series["value"][1])
        for series in query(stack, f'sum by (route, status) (http_requests_total{{job="{JOB}"}})')
    }
    assert counts == {
        ("/items/{item_id}", "200"): 121,
        ("/status/{code}", "404"): 31,
        ("/status/{code}", "500"): 21,
        ("/slow", "200"): 13,
    }
    # Rates: over the last minute, which holds the whole run. Prometheus extrapolates the samples'
    # span by up to half a scrape interval at each end: a load that lasted a few seconds reads up to
    # a quarter higher (205.7 for 186 was seen), never twice, never nothing.
    increase = scalar(stack, f'sum(increase(http_requests_total{{job="{JOB}"}}[1m]))')
    assert len(paths) * 0.9 <= increase <= expected * 1.25, increase

    # The recording rules, evaluated every second: once they have seen the whole load.
    def recorded(name: str, low: float, high: float) -> None:
        expr = f'{name}{{job="{JOB}"}}'
        try:
            wait_for(lambda: low <= (scalar(stack, expr) or -1) <= high, 15, f"{name} in [{low}, {high}]")
        except AssertionError:
            raise AssertionError(f"{name} = {scalar(stack, expr)}, expected [{low}, {high}]") from None

    recorded("job:http_requests:rate1m", len(paths) * 0.85 / 60, expected * 1.25 / 60)
    recorded("job:http_request_errors:ratio_rate1m", 21 / expected * 0.85, 21 / expected * 1.15)
    p99_expr = f'job_route:http_request_duration_seconds:p99_1m{{job="{JOB}"}}'
    p99 = wait_for(lambda: (p := by(stack, p99_expr, "route")) and p.get("/slow", 0) > 0.25 and p, 15, "p99")
    assert 0.25 < p99["/slow"] <= 0.5, p99  # 0.3 s sleeps: the (0.25, 0.5] bucket
    assert p99["/items/{item_id}"] < 0.25, p99
    # The image's healthchecks (every 5 s) are there, apart.
    assert scalar(stack, f'sum(http_healthcheck_duration_seconds_count{{job="{JOB}"}})') >= 1


def grafana_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    variables = [v["definition"] for v in dashboard["templating"]["list"]]
    return expressions + [
        v.replace("label_values(", "group by (job) (").replace(", job)", ")") for v in variables
    ]


def test_every_dashboard_query_returns_data(stack):
    expressions = grafana_expressions()
    assert len(expressions) >= 20
    send(stack["app"], ["/items/1", "/status/500", "/slow?seconds=0.3"])  # in this minute's windows
    empty = []
    for expr in expressions:
        concrete = expr.replace("$job", JOB).replace("$__rate_interval", "1m")
        assert "$" not in concrete, concrete
        try:
            wait_for(lambda e=concrete: query(stack, e), 20, concrete)
        except AssertionError:
            empty.append(concrete)
    assert not empty, empty


def test_a_killed_worker_shows_in_the_restart_metric(stack):
    app = stack["app"]
    victim = app.wait_workers(2)[0]
    before = scalar(stack, f'sum(gunicorn_worker_recycles_total{{job="{JOB}",reason="crash"}})')
    assert before == 0
    os.kill(victim["pid"], signal.SIGKILL)  # the engine reports the host's pid
    wait_for(
        lambda: scalar(stack, f'sum(gunicorn_worker_recycles_total{{job="{JOB}",reason="crash"}})') == 1,
        30,
        "the crash in Prometheus",
    )
    app.wait_workers(2)
    assert scalar(stack, f'gunicorn_worker_starts_total{{job="{JOB}"}}') >= 3
