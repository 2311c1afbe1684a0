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


def test_the_workers_server_wakes_on_a_stop_signal(monkeypatch):
    """Our worker's server ends its main loop when the stop signal comes, not at its next tick (here an
    hour away), and, idle, shuts down without Uvicorn's pause; requests in flight are
    test_sigterm_lets_an_in_flight_request_finish's."""
    from support.asgifakes import plain
    from support.proc import free_port
    from uvicorn.config import Config

    from asgi_launcher.workers import AwakeServer

    monkeypatch.setattr(AwakeServer, "tick", 3600)
    server = AwakeServer(Config(plain(), port=free_port(), lifespan="off", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server._tick is not None, 10, "the server's main loop to wait for its tick")
    server.handle_exit(signal.SIGTERM, None)  # what the signal handler calls, from another thread here
    thread.join(30)
    assert not thread.is_alive(), "the stop waited for the main loop's next tick"


def test_sigterm_ends_each_worker_through_its_exit_handlers(single_file_app, launch):
    """Uvicorn raises the stop signal again once its server has shut down, which killed the worker
    before Python's exit: the app's atexit handlers never ran. Our worker ends with status 0 after them."""
    main = single_file_app / "main.py"
    main.write_text(
        "import atexit, os\n"
        "atexit.register(lambda: print(f'atexit ran in {os.getpid()}', flush=True))\n" + main.read_text()
    )
    server = launch(single_file_app)
    server.wait_ready()
    pids = [worker.pid for worker in server.wait_workers(2)]
    # A worker still importing the app is killed by SIGTERM, as Gunicorn's are: both have to be serving.
    wait_for(lambda: server.output.count("Application startup complete") == 2, 20, "both workers serving")
    assert stop_time(server, signal.SIGTERM, timeout=30) < 30
    for pid in pids:
        assert f"atexit ran in {pid}" in server.output, server.output
    assert "was sent SIGTERM" not in server.output


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
