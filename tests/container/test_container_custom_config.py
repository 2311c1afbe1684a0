"""A gunicorn_conf.py of the user's own, where tiangolo's README told people to put it (/app or
/app/app), keeps every feature of the image, in the real container."""

from __future__ import annotations

import httpx
import pytest
from support.apps import CONFIGS, OPS_APP
from support.dockerutil import docker
from support.logs import json_lines
from support.metrics import scrape, total
from support.proc import startup_json, wait_for

# The container copies the chosen config into place as root, then starts as the image does: the
# same file a `COPY gunicorn_conf.py /app/` in a derived Dockerfile leaves.
PLACE_AND_START = 'cp "/configs/$CONFIG.py" "/app/$WHERE" && exec /start.sh "$@"'
HEALTH = ["--health-interval", "1s", "--health-start-period", "0s"]


@pytest.fixture(scope="module")
def configs_image(derive):
    files = {"app/app/__init__.py": "", "app/app/main.py": OPS_APP}
    files |= {f"configs/{path.name}": path.read_text() for path in CONFIGS.glob("*.py")}
    return derive(files, "COPY ./app /app\nCOPY ./configs /configs\n")


def run_with(run_container, image, config, where="gunicorn_conf.py", env=None, args=()):
    return run_container(
        image,
        env={"CONFIG": config, "WHERE": where, **(env or {})},
        args=HEALTH,
        command=["sh", "-c", PLACE_AND_START, "sh", *args],
        also_publish=[9100],
    )


def counted(container, route: str) -> float:
    return total(scrape(container), "http_requests_total", method="GET", route=route)


def leak_until_replaced(container, timeout: float = 90) -> None:
    def replaced():
        with httpx.Client() as client:  # a new connection each time: both workers leak
            assert client.get(f"{container.url}/leak?kib=4096", timeout=10).status_code == 200
        return "above MAX_WORKER_MEMORY=100.0 MiB: replacing it gracefully" in container.logs()

    wait_for(replaced, timeout, lambda: f"a worker replaced for its memory\n{container.logs()}", interval=0)


@pytest.mark.parametrize("config", ["five_lines", "cpu_count", "hooks"])
@pytest.mark.parametrize("where", ["gunicorn_conf.py", "app/gunicorn_conf.py"])
def test_a_custom_config_keeps_every_feature(configs_image, run_container, config, where):
    env = {"LOG_FORMAT": "json", "ROOT_PATH": "/api", "MAX_WORKER_MEMORY": "100M"}
    c = run_with(run_container, configs_image, config, where, env)
    c.wait_ready()
    workers = c.wait_workers(2)
    assert startup_json(c.logs())["workers"] == len(workers)
    assert "/api/openapi.json" in c.get("/docs").text  # ROOT_PATH
    for i in range(10):
        with httpx.Client() as client:  # a connection each: spread over the workers
            assert client.get(f"{c.url}/items/{i}").status_code == 200
    wait_for(lambda: counted(c, "/items/{item_id}") == 10, 10, "10 requests counted over the workers")
    c.wait_healthy()
    sockets = docker("exec", c.name, "cat", "/proc/net/unix").stdout
    assert "gunicorn.ctl" not in sockets  # the control socket stays off
    leak_until_replaced(c)
    c.stop()
    probes = [check for check in c.inspect()["State"]["Health"]["Log"] if check["ExitCode"] == 0]
    assert probes  # the healthcheck ran and passed ...
    entries = json_lines(c.logs())  # every line is JSON
    access = [e for e in entries if e.get("logger") == "access"]
    assert sum("/items/" in e["path"] for e in access) == 10
    assert not [e for e in access if e.get("user_agent") == "asgi-server-healthcheck"]  # ... unlogged
    if config == "hooks":
        messages = [e.get("message", "") for e in entries]
        assert "user hook: on_starting" in messages
        assert sum(m.startswith("user hook: post_fork in ") for m in messages) >= 2


@pytest.mark.parametrize(
    ("env", "args", "count", "source"),
    [
        ({"GUNICORN_CMD_ARGS": "--workers 1"}, (), 1, "GUNICORN_CMD_ARGS"),
        ({}, ("--workers", "3"), 3, "the command line"),
    ],
)
def test_the_startup_line_reports_what_runs(configs_image, run_container, env, args, count, source):
    c = run_with(run_container, configs_image, "five_lines", env=env, args=args)
    c.wait_ready()
    assert len(c.wait_workers(count)) == count
    assert startup_json(c.logs())["workers"] == count
    assert f"workers={count} from {source} wins" in c.logs()
