"""A config file of the user's own, in tiangolo's place for it, keeps every feature of the image; and
the environment is parsed once per process. Real Gunicorn processes on loopback."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.apps import CONFIGS
from support.files import write
from support.logs import json_lines
from support.metrics import scrape, total
from support.proc import startup_json, wait_for

CONFIG_NAMES = ("five_lines", "cpu_count", "hooks")


def counted_requests(server) -> float:
    return total(scrape(server), "http_requests_total", method="GET", route="/items/{item_id}")


@pytest.mark.parametrize("config", CONFIG_NAMES)
@pytest.mark.parametrize("where", ["gunicorn_conf.py", "app/gunicorn_conf.py"])
def test_a_custom_config_keeps_the_features(ops_app, launch, tmp_path, config, where):
    write(ops_app / where, (CONFIGS / f"{config}.py").read_text())
    runtime = tmp_path / "runtime"  # where Gunicorn would put its control socket
    runtime.mkdir()
    server = launch(ops_app, LOG_FORMAT="json", ROOT_PATH="/api", XDG_RUNTIME_DIR=str(runtime))
    server.wait_ready()
    workers = server.wait_workers(2)
    line = startup_json(server.output)
    assert (line["workers"], line["bind"]) == (len(workers), f"127.0.0.1:{server.port}")
    assert "/api/openapi.json" in server.get("/docs").text  # ROOT_PATH
    for i in range(10):
        with httpx.Client() as client:
            assert client.get(f"{server.url}/items/{i}").status_code == 200
    wait_for(lambda: counted_requests(server) == 10, 10, lambda: f"10 requests counted\n{server.output}")
    assert not (runtime / "gunicorn.ctl").exists()
    server.signal(signal.SIGTERM)
    server.wait_exit()
    entries = json_lines(server.output)
    assert sum(e.get("logger") == "access" and "/items/" in e.get("path", "") for e in entries) == 10
    if config == "hooks":
        messages = [e.get("message", "") for e in entries]
        assert "user hook: on_starting" in messages
        assert sum(m.startswith("user hook: post_fork in ") for m in messages) == 2
        (note,) = [m for m in messages if "run too, with the image's own hooks" in m]
        assert note.startswith("on_starting, post_fork from the config file ")


def test_a_config_may_turn_the_control_socket_on(ops_app, launch, tmp_path):
    """The positive control of the check above: the socket is there when a config asks for it."""
    write(ops_app / "gunicorn_conf.py", "control_socket_disable = False\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    server = launch(ops_app, XDG_RUNTIME_DIR=str(runtime))
    server.wait_ready()
    wait_for(lambda: (runtime / "gunicorn.ctl").exists(), 10, "the control socket")


@pytest.mark.parametrize(
    ("env", "args", "count", "source"),
    [
        ({"GUNICORN_CMD_ARGS": "--workers 1"}, (), 1, "GUNICORN_CMD_ARGS"),
        ({}, ("--workers", "3"), 3, "the command line"),
        ({"WEB_CONCURRENCY": "3"}, (), 2, "the config file"),
    ],
)
def test_the_startup_line_reports_what_runs(ops_app, launch, env, args, count, source):
    write(ops_app / "gunicorn_conf.py", (CONFIGS / "five_lines.py").read_text())
    server = launch(ops_app, script_args=args, **env)
    server.wait_ready()
    assert len(server.wait_workers(count)) == count
    assert startup_json(server.output)["workers"] == count
    assert f"workers={count} from {source}" in server.output


def test_worker_class_variable_beats_the_config_file_and_says_so(ops_app, launch):
    write(ops_app / "gunicorn_conf.py", 'workers = 1\nworker_class = "uvicorn_worker.UvicornH11Worker"\n')
    server = launch(ops_app, WORKER_CLASS="asgi_launcher.workers.UvicornWorker")
    server.wait_ready()
    assert "Using worker: asgi_launcher.workers.UvicornWorker" in server.output
    assert "WORKER_CLASS=asgi_launcher.workers.UvicornWorker wins over worker_class=" in server.output


# ---- one parse of the environment per process ------------------------------------------------------

# Loaded by every Python process of the start (PYTHONPATH): each parse of a registered variable is
# written down with the process (its pid, and a token per interpreter: exec keeps the pid).
COUNTER = """\
import os
import uuid

from asgi_launcher import settings

_token = uuid.uuid4().hex
_read = settings.Setting.read


def read(self, env):
    with open(os.environ["PARSE_LOG"], "a") as log:
        log.write(f"{_token} {os.getpid()} {self.name}\\n")
    return _read(self, env)


settings.Setting.read = read
"""


def parses(log: Path) -> dict[tuple[str, int], collections.Counter]:
    """Per process (interpreter token, pid): how many times each variable was parsed."""
    counts: dict[tuple[str, int], collections.Counter] = collections.defaultdict(collections.Counter)
    for line in log.read_text().splitlines():
        token, pid, name = line.split()
        counts[token, int(pid)][name] += 1
    return counts


def counting_env(tmp_path: Path) -> dict[str, str]:
    write(tmp_path / "counter" / "sitecustomize.py", COUNTER)
    return {"PYTHONPATH": str(tmp_path / "counter"), "PARSE_LOG": str(tmp_path / "parses.log")}


def test_the_environment_is_parsed_once_per_process(ops_app, launch, tmp_path):
    write(ops_app / "prestart.sh", "echo migrations done\n")
    env = counting_env(tmp_path)
    server = launch(ops_app, WEB_CONCURRENCY="2", **env)
    server.wait_ready()
    worker_pids = {worker.pid for worker in server.wait_workers(2)}
    server.get("/items/1")
    server.signal(signal.SIGTERM)
    server.wait_exit()
    counts = parses(Path(env["PARSE_LOG"]))
    # The start, then the Gunicorn master it became (same pid); the workers parse nothing.
    assert len(counts) == 2, counts
    assert {pid for _, pid in counts} == {server.proc.pid}
    assert not worker_pids & {pid for _, pid in counts}
    for process, names in counts.items():
        assert max(names.values()) == 1, (process, names)
        assert names["WEB_CONCURRENCY"] == 1


def test_the_parse_counter_sees_a_second_parse(tmp_path):
    """The control: the same counter, on a process that parses twice."""
    env = counting_env(tmp_path)
    code = (
        "import os; from asgi_launcher.settings import Settings; from asgi_launcher.cgroups import Limits\n"
        "for _ in range(2): Settings.from_env(os.environ, Limits(1, None, None))\n"
    )
    subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin:/bin"}, check=True)
    (names,) = parses(Path(env["PARSE_LOG"])).values()
    assert names["WEB_CONCURRENCY"] == 2
