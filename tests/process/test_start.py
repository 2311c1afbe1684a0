"""scripts/start.sh as a real process: Gunicorn with real Uvicorn workers on loopback."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
import pytest
from support.apps import SEED_APP
from support.files import write
from support.proc import free_port, startup_json, wait_for

from asgi_launcher.settings import DEFAULT_WORKER_CLASS


def test_serves_the_seed_app_with_the_expected_log_lines(package_app, launch):
    server = launch(package_app)
    assert server.wait_ready("/").json() == {"Hello": "World"}
    assert server.get("/items/5?q=somequery").json() == {"item_id": 5, "q": "somequery"}
    for path in ("/docs", "/redoc", "/openapi.json", "/health"):
        assert server.get(path).status_code == 200, path
    assert server.get("/openapi.json").json()["paths"].keys() == {"/", "/items/{item_id}"}
    workers = server.wait_workers(2)  # 2 cores here, WORKERS_PER_CORE=1; see the affinity tests
    assert all("gunicorn" in " ".join(w.cmdline()) for w in workers)
    out = server.output
    expected_order = [
        f"Checking for script in {package_app}/prestart.sh",
        f"Running script {package_app}/prestart.sh",
        "you could add migrations to this file",
        '{"loglevel": "info", "workers": ',
        "Starting gunicorn",
        f"Using worker: {DEFAULT_WORKER_CLASS}",
        "Booting worker with pid",
        "Application startup complete.",
    ]
    positions = [out.find(text) for text in expected_order]
    assert -1 not in positions, out
    assert positions == sorted(positions), out
    assert re.search(r'"GET /items/5\?q=somequery HTTP/1.1" 200', out)
    assert "Traceback" not in out


def test_master_is_the_started_process(package_app, launch):
    """start.sh execs Gunicorn: the pid we started is the master that receives signals."""
    server = launch(package_app)
    server.wait_ready()
    workers = server.wait_workers(2)
    master = workers[0].parent()
    assert master.pid == server.proc.pid
    assert "gunicorn" in " ".join(master.cmdline())


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
@pytest.mark.parametrize(("cpus", "expected"), [({0}, 3), ({0, 1}, 6)])
def test_worker_count_follows_the_cpus_the_process_may_use(package_app, launch, cpus, expected):
    server = launch(package_app, affinity=cpus, WORKERS_PER_CORE="3")
    server.wait_ready()
    assert len(server.wait_workers(expected)) == expected
    data = startup_json(server.output)
    assert (data["workers"], data["cpu_affinity"], data["workers_rule"]) == (
        expected,
        len(cpus),
        "workers_per_core",
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WEB_CONCURRENCY": "3"}, 3),
        ({"WEB_CONCURRENCY": "3", "MAX_WORKERS": "1"}, 3),  # MAX_WORKERS does not cap WEB_CONCURRENCY
        ({"MAX_WORKERS": "1"}, 1),
        ({"WORKERS_PER_CORE": "0.5"}, 2),  # the floor of 2
        ({"WEB_CONCURRENCY": "", "MAX_WORKERS": ""}, 2),  # empty is unset, as compose passes it
        (
            {"WEB_CONCURRENCY": "3", "GUNICORN_CMD_ARGS": "--workers 1"},
            1,
        ),  # GUNICORN_CMD_ARGS beats the config
    ],
)
def test_worker_count_settings(package_app, launch, env, expected):
    server = launch(package_app, affinity={0}, **env)
    server.wait_ready()
    assert len(server.wait_workers(expected)) == expected
    # Stays there: nothing crashes and gets respawned.
    time.sleep(0.5)
    assert len(server.workers()) == expected


def test_bind_beats_host_and_port(package_app, launch):
    host_port = free_port()
    server = launch(package_app, HOST="127.0.0.1", PORT=str(host_port))  # BIND is 127.0.0.1:server.port
    assert server.wait_ready().status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{host_port}/", timeout=2)


def test_host_and_port_without_bind(package_app, launch):
    server = launch(package_app, BIND="")
    assert server.wait_ready().status_code == 200
    assert startup_json(server.output)["bind"] == f"127.0.0.1:{server.port}"


def test_empty_access_log_silences_access_lines(package_app, launch):
    server = launch(package_app, ACCESS_LOG="")
    server.wait_ready()
    server.get("/items/7")
    server.wait_workers(2)
    time.sleep(0.3)
    assert "GET /items/7" not in server.output
    assert startup_json(server.output)["accesslog"] is None


def test_empty_error_log_and_warning_level(package_app, launch):
    server = launch(package_app, ERROR_LOG="", LOG_LEVEL="warning")
    server.wait_ready()
    server.get("/items/8")
    wait_for(lambda: "GET /items/8" in server.output, 5, "the access line")
    assert "Booting worker" not in server.output
    assert "Application startup complete" not in server.output


def test_prestart_runs_once_before_workers_and_its_exports_reach_the_app(probe_app, launch):
    write(
        probe_app / "prestart.sh",
        """\
        # bash features must work: arrays and [[ ]]
        steps=(migrate seed)
        if [[ ${#steps[@]} -eq 2 ]]; then
          export FROM_PRESTART="ran ${steps[*]}"
        fi
        echo "prestart marker"
        """,
    )
    server = launch(probe_app, WEB_CONCURRENCY="3")
    server.wait_ready()
    server.wait_workers(3)
    out = server.output
    assert out.count("prestart marker") == 1
    assert out.index("prestart marker") < out.index("Booting worker")
    for _ in range(6):  # whichever worker answers
        assert server.get("/env/FROM_PRESTART").json() == {"value": "ran migrate seed"}


def test_failing_prestart_stops_the_start_with_its_status(probe_app, launch):
    write(probe_app / "prestart.sh", 'echo "migrating"\n(exit 7)\necho "never printed"\n')
    server = launch(probe_app)
    assert server.wait_exit() == 7
    out = server.output
    assert "migrating" in out
    assert "never printed" not in out
    assert (
        f"ERROR: pre-start script {probe_app}/prestart.sh exited with status 7; the server was not started"
        in out
    )
    assert "Starting gunicorn" not in out


def test_the_stop_signal_reaches_the_prestart_script(probe_app, launch):
    """docker stop during a long migration: the script gets the SIGTERM (its trap runs), and the start
    ends with the script's status, without starting the server."""
    write(
        probe_app / "prestart.sh",
        "trap 'echo \"pre-start got TERM\"; exit 9' TERM\necho waiting\nsleep 60 &\nwait $!\n",
    )
    server = launch(probe_app)
    wait_for(lambda: "waiting" in server.output, 20, lambda: f"the pre-start script to run\n{server.output}")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 9
    assert "pre-start got TERM" in server.output
    assert "Starting gunicorn" not in server.output


def test_what_the_prestart_script_unsets_is_gone_for_the_app(probe_app, launch):
    write(probe_app / "prestart.sh", "unset REMOVE_ME\n")
    server = launch(probe_app, REMOVE_ME="1", KEEP_ME="1")
    server.wait_ready()
    assert server.get("/env/REMOVE_ME").json() == {"value": None}
    assert server.get("/env/KEEP_ME").json() == {"value": "1"}  # the control


def test_custom_pre_start_path(probe_app, launch, tmp_path):
    custom = write(tmp_path / "elsewhere" / "custom-prestart.sh", "export FROM_PRESTART=custom\n")
    write(probe_app / "prestart.sh", "export FROM_PRESTART=default\n")
    server = launch(probe_app, PRE_START_PATH=str(custom))
    server.wait_ready()
    assert f"Running script {custom}" in server.output
    assert server.get("/env/FROM_PRESTART").json() == {"value": "custom"}


def test_missing_pre_start_script_is_reported(single_file_app, launch):
    server = launch(single_file_app)
    server.wait_ready()
    assert f"There is no script {single_file_app}/prestart.sh" in server.output


def test_single_file_layout(single_file_app, launch):
    server = launch(single_file_app)
    assert server.wait_ready().json() == {"Hello": "single file"}


def test_package_layout_wins_over_a_single_file(package_app, launch):
    write(package_app / "main.py", SEED_APP.replace('{"Hello": "World"}', '{"Hello": "single file"}'))
    server = launch(package_app)
    assert server.wait_ready().json() == {"Hello": "World"}


def test_module_and_variable_name(tmp_path, launch):
    root = tmp_path / "custom"
    write(root / "custom_app" / "__init__.py", "")
    write(
        root / "custom_app" / "custom_main.py",
        SEED_APP.replace("app = FastAPI()", "custom_var = FastAPI()").replace("@app.", "@custom_var."),
    )
    server = launch(root, MODULE_NAME="custom_app.custom_main", VARIABLE_NAME="custom_var")
    assert server.wait_ready().json() == {"Hello": "World"}


def test_app_module_beats_module_and_variable_name(tmp_path, launch):
    root = tmp_path / "custom"
    write(root / "other.py", SEED_APP.replace("app = FastAPI()", "api = FastAPI()").replace("@app.", "@api."))
    write(root / "main.py", "raise SystemExit('the detected module must not be imported')\n")
    server = launch(root, APP_MODULE="other:api", MODULE_NAME="main", VARIABLE_NAME="app")
    assert server.wait_ready().json() == {"Hello": "World"}


CUSTOM_CONF = """\
import os

print("custom config loaded from {where}")
bind = os.environ["BIND"]
workers = 1
"""


@pytest.mark.parametrize("where", ["root", "package", "explicit"])
def test_gunicorn_conf_search_order(package_app, launch, tmp_path, where):
    # Every candidate exists; the one that must win says so.
    write(package_app / "gunicorn_conf.py", CUSTOM_CONF.format(where="root"))
    write(package_app / "app" / "gunicorn_conf.py", CUSTOM_CONF.format(where="package"))
    explicit = write(tmp_path / "explicit.py", CUSTOM_CONF.format(where="explicit"))
    env = {}
    if where == "package":
        (package_app / "gunicorn_conf.py").unlink()
    if where == "explicit":
        env["GUNICORN_CONF"] = str(explicit)
    server = launch(package_app, **env)
    server.wait_ready()
    assert f"custom config loaded from {where}" in server.output
    assert len(server.wait_workers(1)) == 1
    # That config sets no worker_class: start.sh's default (same as the base config's), not Gunicorn's sync.
    assert f"Using worker: {DEFAULT_WORKER_CLASS}" in server.output


def test_without_a_custom_config_the_base_config_is_used(package_app, launch):
    server = launch(package_app)
    server.wait_ready()
    assert "custom config loaded" not in server.output
    assert startup_json(server.output)["bind"] == f"127.0.0.1:{server.port}"


def test_worker_class_in_a_custom_config_is_honoured(package_app, launch):
    write(
        package_app / "gunicorn_conf.py",
        CUSTOM_CONF.format(where="root") + 'worker_class = "uvicorn_worker.UvicornH11Worker"\n',
    )
    server = launch(package_app)
    server.wait_ready()
    assert "Using worker: uvicorn_worker.UvicornH11Worker" in server.output


def test_worker_class_variable_beats_the_config(package_app, launch):
    write(
        package_app / "gunicorn_conf.py",
        CUSTOM_CONF.format(where="root") + 'worker_class = "uvicorn_worker.UvicornH11Worker"\n',
    )
    server = launch(package_app, WORKER_CLASS="uvicorn_worker.UvicornWorker")
    server.wait_ready()
    assert "Using worker: uvicorn_worker.UvicornWorker" in server.output


def test_worker_class_variable_with_the_base_config(package_app, launch):
    server = launch(package_app, WORKER_CLASS="uvicorn_worker.UvicornH11Worker")
    assert server.wait_ready().json() == {"Hello": "World"}
    assert "Using worker: uvicorn_worker.UvicornH11Worker" in server.output
    assert startup_json(server.output)["worker_class"] == "uvicorn_worker.UvicornH11Worker"
