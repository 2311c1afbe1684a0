"""The real image on a real Docker engine: this repo's app, the tiangolo environment matrix, limits."""

from __future__ import annotations

import json
import threading

import pytest
from support.dockerutil import APP_UID, HARDENED, docker
from support.proc import startup_json, wait_for


def test_default_image_serves_the_seed_app_and_turns_healthy(images, run_container):
    c = run_container(images["app"], args=["--health-interval", "1s"])
    assert c.wait_ready("/").json() == {"Hello": "World"}
    assert c.get("/items/5?q=somequery").json() == {"item_id": 5, "q": "somequery"}
    assert c.get("/docs").status_code == 200
    assert c.get("/redoc").status_code == 200
    logs = c.logs()
    assert "Checking for script in /app/prestart.sh" in logs
    assert "Running script /app/prestart.sh" in logs
    assert "Running inside /app/prestart.sh, you could add migrations to this file" in logs
    data = startup_json(logs)
    assert (data["bind"], data["port"], data["loglevel"]) == ("0.0.0.0:80", "80", "info")
    c.wait_healthy()
    assert c.inspect()["Config"]["Healthcheck"]["Test"] == ["CMD", "healthcheck"]


def test_image_metadata(images):
    config = json.loads(docker("image", "inspect", images["app"]).stdout)[0]["Config"]
    assert config["User"] == ""  # derived images build as root, as on tiangolo's; /start.sh switches
    assert config["Cmd"] == ["/start.sh"]
    assert config["WorkingDir"] == "/app"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONPATH"] == "/app"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "org.opencontainers.image.title" in config["Labels"]
    assert "80/tcp" in config["ExposedPorts"]


def test_survives_docker_restart(images, run_container):
    c = run_container(images["app"])
    c.wait_ready()
    docker("restart", "-t", "10", c.name)
    assert c.wait_ready().json() == {"Hello": "World"}
    assert c.logs().count("Running script /app/prestart.sh") == 2  # once per container start


def test_started_as_root_every_process_runs_as_the_app_user(images, run_container):
    c = run_container(images["app"])
    c.wait_ready()
    c.wait_workers(2)
    assert {row["uid"] for row in c.processes()} == {APP_UID}
    # As in tiangolo's image, the master and the workers go by Gunicorn's name (`pgrep gunicorn`).
    names = docker("exec", c.name, "sh", "-c", "cat /proc/[0-9]*/comm").stdout.split()
    assert names.count("gunicorn") == 3, names


def test_hardened_run_still_serves(images, run_container):
    c = run_container(images["app"], args=[*HARDENED, "--health-interval", "1s"])
    assert c.wait_ready("/items/1").json() == {"item_id": 1, "q": None}
    c.wait_workers(2)
    c.wait_healthy()
    assert "Read-only file system" not in c.logs()
    assert {row["uid"] for row in c.processes()} == {APP_UID}


def test_root_without_the_capabilities_to_switch_refuses_to_start(images, run_container):
    """`--cap-drop ALL` as root: one line naming the fix, never a server running as root."""
    c = run_container(images["app"], args=["--cap-drop", "ALL"])
    assert c.wait_exit() == 2
    assert c.logs() == (
        "ERROR: the container started as root without the SETUID and SETGID capabilities (--cap-drop ALL), "
        f"so the app cannot switch to UID {APP_UID}: start it as that user (--user {APP_UID}:{APP_UID}; "
        "compose user:, Kubernetes runAsUser), or add those two capabilities, or set APP_USER=root\n"
    )
    # The positive control through the same run: the two capabilities are all the switch needs.
    c = run_container(images["app"], args=["--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID"])
    c.wait_ready()
    c.wait_workers(2)
    assert {row["uid"] for row in c.processes()} == {APP_UID}


def test_app_user_root_keeps_tiangolos_root_run_time(images, run_container):
    c = run_container(images["app"], env={"APP_USER": "root"})
    c.wait_ready()
    c.wait_workers(2)
    assert {row["uid"] for row in c.processes()} == {0}


@pytest.mark.parametrize(
    ("args", "env", "workers", "cores"),
    [
        ([], {"WORKERS_PER_CORE": "3"}, 6, 2),
        (["--cpus", "1"], {"WORKERS_PER_CORE": "3"}, 3, 1),
        (["--cpus", "0.5"], {"WORKERS_PER_CORE": "3"}, 3, 1),
        (["--cpuset-cpus", "0"], {"WORKERS_PER_CORE": "3"}, 3, 1),
        (["--memory", "300m"], {"WORKERS_PER_CORE": "4", "MEMORY_PER_WORKER": "100M"}, 3, 2),
        (["--memory", "300m"], {"WORKERS_PER_CORE": "1"}, 2, 2),  # no MEMORY_PER_WORKER: no cap
    ],
)
def test_worker_count_follows_container_limits(images, run_container, args, env, workers, cores):
    c = run_container(images["app"], args=args, env=env)
    c.wait_ready()
    assert len(c.wait_workers(workers)) == workers
    data = startup_json(c.logs())
    assert (data["workers"], data["cores"]) == (workers, cores)


def test_web_concurrency_above_the_memory_budget_is_kept_and_warned(images, run_container):
    c = run_container(
        images["app"], args=["--memory", "300m"], env={"WEB_CONCURRENCY": "4", "MEMORY_PER_WORKER": "100M"}
    )
    c.wait_ready()
    c.wait_workers(4)
    assert "WARNING: WEB_CONCURRENCY=4 exceeds the memory budget of 3 workers" in c.logs()


def test_env_matrix_1(images, run_container):
    """tiangolo's test_env_vars_1: port, levels, timeouts, both logs off."""
    env = {
        "WORKERS_PER_CORE": "2",
        "PORT": "8000",
        "LOG_LEVEL": "warning",
        "GRACEFUL_TIMEOUT": "20",
        "TIMEOUT": "20",
        "KEEP_ALIVE": "20",
        "ACCESS_LOG": "",
        "ERROR_LOG": "",
    }
    c = run_container(images["app"], env=env, container_port=8000)
    assert c.wait_ready().json() == {"Hello": "World"}
    data = startup_json(c.logs())
    assert data["workers_per_core"] == 2
    assert (data["host"], data["port"], data["bind"], data["loglevel"]) == (
        "0.0.0.0",
        "8000",
        "0.0.0.0:8000",
        "warning",
    )
    assert (data["graceful_timeout"], data["timeout"], data["keepalive"]) == (20, 20, 20)
    assert (data["errorlog"], data["accesslog"]) == (None, None)
    assert len(c.wait_workers(4)) == 4
    logs = c.logs()
    assert '"GET / HTTP/1.1" 200' not in logs
    assert "[INFO] Application startup complete." not in logs


def test_env_matrix_2(images, run_container):
    """tiangolo's test_env_vars_2: WEB_CONCURRENCY and HOST; access log on."""
    c = run_container(images["app"], env={"WEB_CONCURRENCY": "1", "HOST": "127.0.0.1"}, publish=False)
    wait_for(lambda: "Booting worker" in c.logs(), 30, "boot")
    assert len(c.wait_workers(1)) == 1
    data = startup_json(c.logs())
    assert (data["workers"], data["host"], data["bind"]) == (1, "127.0.0.1", "127.0.0.1:80")
    # Bound to the container's loopback only: reachable from inside, via the healthcheck.
    wait_for(lambda: docker("exec", c.name, "healthcheck", check=False).returncode == 0, 30, "the server")


def test_env_matrix_3_bind_and_cmd_args(images, run_container):
    """tiangolo's test_env_vars_3: BIND beats HOST/PORT; GUNICORN_CMD_ARGS beats the config file."""
    env = {"HOST": "127.0.0.1", "PORT": "9000", "BIND": "0.0.0.0:8080", "GUNICORN_CMD_ARGS": "--workers 1"}
    c = run_container(images["app"], env=env, container_port=8080)
    assert c.wait_ready().json() == {"Hello": "World"}
    assert startup_json(c.logs())["bind"] == "0.0.0.0:8080"
    assert len(c.wait_workers(1)) == 1
    assert "Listening at: http://0.0.0.0:8080" in c.logs()


def test_worker_class_variable(images, run_container):
    c = run_container(images["app"], env={"WORKER_CLASS": "uvicorn_worker.UvicornH11Worker"})
    assert c.wait_ready().json() == {"Hello": "World"}
    assert "Using worker: uvicorn_worker.UvicornH11Worker" in c.logs()


def test_bad_variable_exits_with_one_line(images, run_container):
    c = run_container(images["app"], env={"WEB_CONCURRENCY": "lots"})
    assert c.wait_exit() == 2
    assert c.logs() == "ERROR: WEB_CONCURRENCY='lots' is not valid: expected a whole number >= 1\n"


def test_failing_prestart_stops_the_container(images, run_container):
    c = run_container(
        images["app"],
        env={"PRE_START_PATH": "/tmp/fail.sh"},
        command=["bash", "-c", "printf 'echo migrating\\nexit 4\\n' > /tmp/fail.sh; exec /start.sh"],
    )
    assert c.wait_exit() == 4
    logs = c.logs()
    assert "migrating" in logs
    assert "ERROR: pre-start script /tmp/fail.sh exited with status 4; the server was not started" in logs
    assert "Traceback" not in logs
    assert "Starting gunicorn" not in logs


def test_docker_stop_when_idle_is_prompt(images, run_container):
    c = run_container(images["app"])
    c.wait_ready()
    c.wait_workers(2)
    elapsed = c.stop(timeout=10)
    assert elapsed < 5, elapsed  # bound only; the measured figure is in the README
    assert c.inspect()["State"]["ExitCode"] == 0


def test_docker_stop_lets_an_in_flight_request_finish(probe_image, run_container):
    c = run_container(probe_image)
    c.wait_ready()
    result = {}
    client = threading.Thread(target=lambda: result.update(r=c.get("/slow?seconds=3", timeout=30)))
    client.start()
    wait_for(lambda: "slow request started" in c.logs(), 20, "the slow request")
    c.stop(timeout=20)
    client.join(30)
    assert result["r"].status_code == 200
    assert result["r"].json() == {"slept": 3.0}
    assert c.inspect()["State"]["ExitCode"] == 0
