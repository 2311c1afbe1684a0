"""LOG_FORMAT=json: every line of a whole lifecycle is a JSON object, also what never went through logging."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from support.files import write
from support.logs import json_lines
from support.proc import wait_for

APP = """\
import asyncio, subprocess, sys, time, warnings

from fastapi import FastAPI

print("printed at import")
warnings.warn("a deprecated thing")
app = FastAPI()


@app.get("/")
def root():
    return {"ok": True}


@app.get("/print")
def noisy():
    print("printed by a request")
    print("written to stderr", file=sys.stderr)
    subprocess.run(["echo", "written by a child process"], check=True)
    return {"printed": True}


@app.get("/block")
async def block(seconds: float = 2.0):
    time.sleep(seconds)
    return {"blocked": seconds}
"""


@pytest.fixture
def noisy_app(tmp_path):
    root = tmp_path / "noisy"
    write(root / "app" / "__init__.py", "")
    write(root / "app" / "main.py", APP)
    write(
        root / "prestart.sh",
        'echo "INFO  [alembic.runtime.migration] Running upgrade" >&2\necho "something odd" >&2\necho done\n',
    )
    return root


def test_every_line_of_a_lifecycle_is_json(noisy_app, launch):
    server = launch(noisy_app, LOG_FORMAT="json", WEB_CONCURRENCY="2", TIMEOUT="2", GRACEFUL_TIMEOUT="5")
    server.wait_ready()
    assert server.get("/print").json() == {"printed": True}
    old = {worker.pid for worker in server.wait_workers(2)}
    server.signal(signal.SIGHUP)
    wait_for(lambda: len(now := {w.pid for w in server.workers()}) == 2 and not now & old, 30, "HUP")
    server.wait_ready()
    os.kill(next(iter(w.pid for w in server.workers())), signal.SIGKILL)
    server.wait_workers(2)
    server.wait_ready()
    with pytest.raises(httpx.HTTPError):  # the worker is killed for TIMEOUT before it answers
        server.get("/block?seconds=8", timeout=20)
    wait_for(lambda: "timed out: no heartbeat" in server.output, 20, "the timeout line")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0

    logged = json_lines(server.output)
    by_message = {entry.get("message"): entry for entry in logged}
    assert by_message["printed at import"]["logger"] == "stdout"
    assert by_message["printed by a request"]["level"] == "info"
    assert by_message["written to stderr"]["logger"] == "stderr"
    assert by_message["written by a child process"]["logger"] == "stdout"
    assert any("UserWarning: a deprecated thing" in entry.get("message", "") for entry in logged)
    assert by_message["INFO  [alembic.runtime.migration] Running upgrade"]["level"] == "info"
    assert by_message["something odd"]["level"] == "warning"
    assert by_message["done"]["logger"] == "prestart"
    assert any(entry.get("loglevel") == "info" for entry in logged)  # tiangolo's startup line, unchanged
    assert any("Handling signal: hup" in entry.get("message", "") for entry in logged)
    assert any(entry.get("message", "").startswith("Shutting down: Master") for entry in logged)


def test_the_same_run_in_text_has_raw_lines(noisy_app, launch):
    """The positive control of json_lines: without json, those lines are not JSON."""
    server = launch(noisy_app, WEB_CONCURRENCY="1")
    server.wait_ready()
    server.get("/print")
    server.signal(signal.SIGTERM)
    server.wait_exit(30)
    with pytest.raises(AssertionError, match="is not JSON"):
        json_lines(server.output)
    assert "printed by a request\n" in server.output


BROKEN = "import warnings\nprint('importing')\nwarnings.warn('soon gone')\nimport no_such_module_here\n"


@pytest.mark.parametrize("attempt", range(3))  # the HaltServer race showed in 4 of 12 runs
def test_an_app_that_fails_to_import_under_gunicorn(tmp_path, launch, attempt):
    write(tmp_path / "app" / "__init__.py", "")
    write(tmp_path / "app" / "main.py", BROKEN)
    server = launch(tmp_path, LOG_FORMAT="json", WEB_CONCURRENCY="2")
    assert server.wait_exit(30) == 3  # Gunicorn's "worker failed to boot", not 1 from a traceback
    logged = json_lines(server.output)
    failures = [e for e in logged if e.get("message", "").startswith("Exception in worker process")]
    assert failures, server.output
    assert "HINT: 'no_such_module_here' is not installed" in failures[0]["message"]
    assert "ModuleNotFoundError" in failures[0]["exception"]


def test_an_app_that_fails_to_import_in_one_process(tmp_path, launch):
    write(tmp_path / "app" / "__init__.py", "")
    write(tmp_path / "app" / "main.py", BROKEN)
    server = launch(tmp_path, LOG_FORMAT="json", PROCESS_MANAGER="uvicorn")
    assert server.wait_exit(30) == 4  # Gunicorn's status for an app that does not load
    logged = json_lines(server.output)
    (failure,) = [entry for entry in logged if "failed to load" in entry.get("message", "")]
    assert failure["level"] == "error"
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in failure["exception"]
