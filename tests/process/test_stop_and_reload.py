"""Signals to the real processes: graceful and fast stops, and the reloading development server."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from support.apps import SEED_APP
from support.proc import START_RELOAD, wait_for


def stop_time(server, sig: int, timeout: float) -> float:
    started = time.monotonic()
    server.signal(sig)
    code = server.wait_exit(timeout)
    assert code == 0, server.output
    return time.monotonic() - started


def test_sigterm_lets_an_in_flight_request_finish(probe_app, launch):
    server = launch(probe_app)
    server.wait_ready()
    result = {}

    def request():
        result["response"] = server.get("/slow?seconds=3", timeout=30)

    client = threading.Thread(target=request)
    client.start()
    wait_for(lambda: "slow request started" in server.output, 10, "the slow request to start")
    elapsed = stop_time(server, signal.SIGTERM, timeout=30)
    client.join(30)
    assert result["response"].status_code == 200
    assert result["response"].json() == {"slept": 3.0}
    assert elapsed >= 2  # it waited for the request rather than cutting it off
    assert "Shutting down: Master" in server.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_idle_master_stops_promptly(package_app, launch, sig):
    server = launch(package_app)
    server.wait_ready()
    server.wait_workers(2)
    # Generous bound for a loaded CI machine; the measured figure is in the README.
    assert stop_time(server, sig, timeout=10) < 5
    assert server.workers() == []


def test_reload_server_follows_source_changes(single_file_app, launch):
    server = launch(single_file_app, script=START_RELOAD)
    assert server.wait_ready().json() == {"Hello": "single file"}
    out = server.output
    assert out.index(f"There is no script {single_file_app}/prestart.sh") < out.index(
        "Will watch for changes"
    )
    (single_file_app / "main.py").write_text(SEED_APP.replace('{"Hello": "World"}', '{"Hello": "reloaded"}'))

    def reloaded():
        try:
            return server.get("/", timeout=2).json() == {"Hello": "reloaded"}
        except Exception:  # the server is restarting
            return False

    wait_for(reloaded, 20, "the edited app to be served")


@pytest.mark.parametrize(
    ("env", "logged"), [({}, True), ({"ACCESS_LOG": "", "LOG_LEVEL": "WARNING"}, False)], ids=["on", "off"]
)
def test_reload_server_honours_the_access_log_switch(single_file_app, launch, env, logged):
    server = launch(single_file_app, script=START_RELOAD, **env)
    server.wait_ready()
    assert server.get("/items/3").status_code == 200
    stop_time(server, signal.SIGTERM, timeout=10)  # once it has exited, its output is final
    assert ('"GET /items/3 HTTP/1.1" 200' in server.output) is logged, server.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_reload_server_stops_promptly(single_file_app, launch, sig):
    server = launch(single_file_app, script=START_RELOAD)
    server.wait_ready()
    assert stop_time(server, sig, timeout=10) < 5


def test_reload_server_validates_settings_too(single_file_app, launch):
    server = launch(single_file_app, script=START_RELOAD, PORT="eighty", BIND="")
    assert server.wait_exit() == 2
    assert server.output.startswith("ERROR: PORT='eighty' is not valid")
